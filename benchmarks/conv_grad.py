"""The flow head's 3 x 3 convolutions with both gradients: XLA's kernel gradient against the matmul one.

  python benchmarks/conv_grad.py [--size 64] [--batch 4] [--repeats 7]

  conv         `HeadConv(impl="conv")`: nn.Conv, XLA's gradients
  matmul_grad  `HeadConv(impl="matmul_grad")`: the same forward pass and input gradient, the kernel
               gradient as one [C, B H W] x [B H W, 9 O] matmul against 9 shifted copies of the output
               gradient (models/flow_head.py)

Shapes are the paper head's undilated convolutions (the estimators' dense layers and the context
network's first) at one level: --size 64 is level 2 of the issue-14 step (256 px pairs), 96 x 128 that
of the paper's 384 x 512 pairs (--size 96,128). Prints a table (ms, median of --repeats after one
warm-up) and which form `conv_impl="auto"` takes on this backend.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from mcjepa_jax.models.flow_head import _MATMUL_GRAD_MIN_RATIO, HeadConv
from timing import call_ms  # benchmarks/timing.py, beside this script

# (inputs, outputs): the dense estimator at corr radius 4 (81 + 2 -> 128, 211 -> 128, 339 -> 96,
# 435 -> 64, 499 -> 32) and the context network's first convolution (533 -> 128).
SHAPES = ((83, 128), (211, 128), (339, 96), (435, 64), (499, 32), (533, 128))


def step_fn(impl, features, weights):
  conv = HeadConv(features, (3, 3), padding="SAME", impl=impl)
  loss = lambda v, x: jnp.sum(conv.apply(v, x) * weights)
  return conv, jax.jit(jax.grad(loss, argnums=(0, 1)))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--size", default="64", help="H,W of the level (one number: square)")
  parser.add_argument("--batch", type=int, default=4, help="forward and backward flow of 2 pairs")
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  height, width = (int(v) for v in (args.size.split(",") * 2)[:2])
  rng = np.random.default_rng(0)
  print(f"backend {jax.default_backend()}, [{args.batch}, {height}, {width}, C] -> O, forward + both "
        f"gradients, ms (median of {args.repeats})")
  print("| C -> O | GFLOP | conv | matmul_grad | auto takes |")
  print("|---|---|---|---|---|")
  for channels, features in SHAPES:
    x = jnp.asarray(rng.normal(size=(args.batch, height, width, channels)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(args.batch, height, width, features)), jnp.float32)
    times, grads = {}, {}
    for impl in ("conv", "matmul_grad"):
      conv, fn = step_fn(impl, features, weights)
      variables = conv.init(jax.random.key(0), x)
      times[impl] = call_ms(fn, variables, x, repeats=args.repeats)
      grads[impl] = fn(variables, x)
    for a, b in zip(jax.tree_util.tree_leaves(grads["conv"]), jax.tree_util.tree_leaves(grads["matmul_grad"])):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * float(jnp.abs(b).max()))
    gflop = 3 * 2 * args.batch * height * width * 9 * channels * features / 1e9
    auto = "matmul_grad" if (jax.default_backend() == "cpu"
                             and channels >= _MATMUL_GRAD_MIN_RATIO * features) else "conv"
    print(f"| {channels} -> {features} | {gflop:.1f} | {times['conv']:.1f} | {times['matmul_grad']:.1f} | {auto} |")


if __name__ == "__main__":
  main()
