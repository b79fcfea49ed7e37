"""The cost volume three ways: values against `ops.correlation`, and time forward and with the gradient.

  python benchmarks/correlation.py [--repeats 5]

  slices   `correlation(impl="slices")`: (2r+1)^2 shifted slices of the padded frame, multiply, sum
  patches  every (2r+1)^2 window gathered at once (`lax.conv_general_dilated_patches`), one einsum
  banded   `correlation(impl="banded")`: per row offset dy, a [W, C] x [C, W + 2r] matmul per image
           row, then the 2r+1 diagonals (W / (2r+1) times the needed multiply-adds, as one dense matmul)

Shapes are the PWC levels of the paper's 384 x 512 pairs (forward and backward flow of 2 pairs:
batch 4) with radius 4. Prints a table (ms, median of --repeats after one warm-up).
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from mcjepa_jax.ops.correlation import correlation


def correlation_patches(a, b, radius):
  side = 2 * radius + 1
  channels = a.shape[-1]
  windows = jax.lax.conv_general_dilated_patches(b, (side, side), (1, 1), [(radius, radius)] * 2,
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
  # Patches come out channel-major: [B, H, W, C * side * side].
  windows = windows.reshape(*b.shape[:3], channels, side * side)
  return jnp.einsum("bhwc,bhwck->bhwk", a, windows) / channels


IMPLEMENTATIONS = {"slices": correlation, "patches": correlation_patches,
                   "banded": lambda a, b, radius: correlation(a, b, radius, impl="banded")}
LEVELS = {2: (96, 128, 48), 3: (48, 64, 96), 4: (24, 32, 192), 5: (12, 16, 384), 6: (6, 8, 768)}


def _time(fn, *args, repeats):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - started)
  return 1e3 * statistics.median(times)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--radius", type=int, default=4)
  parser.add_argument("--batch", type=int, default=4)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  print(f"device: {jax.devices()[0].device_kind}; radius {args.radius}, batch {args.batch}; ms forward / "
        "forward+gradient (max |difference| from slices)")
  print("| level (H x W x C) | " + " | ".join(IMPLEMENTATIONS) + " |")
  print("|---|" + "---|" * len(IMPLEMENTATIONS))
  for level, (height, width, channels) in LEVELS.items():
    a, b = (jnp.asarray(rng.normal(size=(args.batch, height, width, channels)), jnp.float32) for _ in range(2))
    reference = correlation(a, b, args.radius)
    cells = []
    for fn in IMPLEMENTATIONS.values():
      forward = jax.jit(lambda x, y, fn=fn: fn(x, y, args.radius))
      gradient = jax.jit(jax.grad(lambda x, y, fn=fn: jnp.sum(fn(x, y, args.radius)**2), argnums=(0, 1)))
      error = float(jnp.max(jnp.abs(forward(a, b) - reference)))
      try:
        cells.append(f"{_time(forward, a, b, repeats=args.repeats):.1f} / "
                     f"{_time(gradient, a, b, repeats=args.repeats):.1f} ({error:.0e})")
      except jax.errors.JaxRuntimeError as e:  # a backend that cannot run a formulation says so in the table
        cells.append(f"fails ({str(e).splitlines()[0][:40]})")
    print(f"| {level} ({height} x {width} x {channels}) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  main()
