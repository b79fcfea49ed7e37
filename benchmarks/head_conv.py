"""The flow head's largest convolution three ways, against the machine's matmul rate.

Usage: [XLA_FLAGS=...] python benchmarks/head_conv.py [--repeats 5]

The paper step's context network starts with a 3 x 3 convolution of 533 -> 128 channels on
4 images of 64 x 64 (level 2 of 256 px crops, both directions of 2 pairs); it and the estimators'
convolutions are most of the step's FLOPs (docs/benchmarks.md). Prints ms and GFLOP/s of its
forward pass and of forward + input and kernel gradients for XLA's convolution, a sum of 9 shifted
channel matmuls and an explicit im2col matmul, beside an N x N float32 matmul's rate. Run it
once per XLA_FLAGS setting (e.g. --xla_cpu_use_onednn=true, --xla_cpu_use_xnnpack=true) to
compare the CPU backends' convolution paths.
"""

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
from timing import call_ms  # benchmarks/timing.py, beside this script


def xla_conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _padded_taps(x):
  """The 9 shifted views of x [N, H, W, C] that a 3 x 3 SAME convolution reads, row-major."""
  _, height, width, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return [padded[:, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)]


def shifted_matmuls(x, w):
  taps = _padded_taps(x)
  return sum(jnp.einsum("nhwc,co->nhwo", tap, w[k // 3, k % 3]) for k, tap in enumerate(taps))


def im2col_matmul(x, w):
  batch, height, width, channels = x.shape
  columns = jnp.concatenate(_padded_taps(x), axis=-1).reshape(-1, 9 * channels)
  return (columns @ w.reshape(9 * channels, -1)).reshape(batch, height, width, -1)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--shape", type=int, nargs=4, default=(4, 64, 64, 533), help="N H W C_in")
  parser.add_argument("--out_channels", type=int, default=128)
  parser.add_argument("--matmul", type=int, default=4096, help="side of the reference matmul")
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=args.shape), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, args.shape[-1], args.out_channels)) * 0.01, jnp.float32)
  flops = 2 * int(np.prod(args.shape)) * 9 * args.out_channels
  square = jnp.asarray(rng.normal(size=(args.matmul, args.matmul)), jnp.float32)
  matmul_s = call_ms(jax.jit(lambda a: a @ a), square, repeats=args.repeats, reduce=min) / 1e3
  print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; {jax.devices()[0].device_kind}; conv {tuple(args.shape)} -> "
        f"{args.out_channels}, 3 x 3: {flops / 1e9:.2f} GFLOP forward")
  print(f"{args.matmul}^2 float32 matmul: {2 * args.matmul**3 / matmul_s / 1e9:.1f} GFLOP/s")
  print("| formulation | forward ms | GFLOP/s | forward + both gradients ms | GFLOP/s |")
  print("|---|---|---|---|---|")
  reference = np.asarray(jax.jit(xla_conv)(x, w))
  for name, fn in (("XLA convolution", xla_conv), ("9 shifted matmuls", shifted_matmuls),
                   ("im2col matmul", im2col_matmul)):
    # The same convolution: checked before it is timed.
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(x, w)), reference, rtol=1e-3, atol=1e-3)
    grad = jax.jit(jax.grad(lambda a, b, f=fn: jnp.sum(f(a, b) ** 2), argnums=(0, 1)))
    forward_s = call_ms(jax.jit(fn), x, w, repeats=args.repeats, reduce=min) / 1e3
    grad_s = call_ms(grad, x, w, repeats=args.repeats, reduce=min) / 1e3
    print(f"| {name} | {forward_s * 1e3:.1f} | {flops / forward_s / 1e9:.1f} | {grad_s * 1e3:.1f} | "
          f"{3 * flops / grad_s / 1e9:.1f} |")


if __name__ == "__main__":
  main()
