"""The cost volume three ways: values against `ops.correlation`, and time forward and with the gradient.

  python benchmarks/correlation.py [--repeats 5]

  slices   `correlation(impl="slices")`: (2r+1)^2 shifted slices of the padded frame, multiply, sum
  patches  every (2r+1)^2 window gathered at once (`lax.conv_general_dilated_patches`), one einsum
  banded   `correlation(impl="banded")`: per row offset dy, a [W, C] x [C, W + 2r] matmul per image
           row, then the 2r+1 diagonals (W / (2r+1) times the needed multiply-adds, as one dense matmul)
  pallas   `correlation(impl="pallas")`: the Pallas kernels of ops/correlation_pallas.py, forward and
           backward (GPU/TPU only: on the CPU they run in the Pallas interpreter, so the column is
           left out there)

Shapes are the PWC levels of the paper's 384 x 512 pairs (forward and backward flow of 2 pairs:
batch 4) with radius 4. Prints a table (ms, median of --repeats after one warm-up).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from mcjepa_jax.ops.correlation import correlation
from timing import call_ms  # benchmarks/timing.py, beside this script


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
if jax.default_backend() != "cpu":
  IMPLEMENTATIONS["pallas"] = lambda a, b, radius: correlation(a, b, radius, impl="pallas")
LEVELS = {2: (96, 128, 48), 3: (48, 64, 96), 4: (24, 32, 192), 5: (12, 16, 384), 6: (6, 8, 768)}


# HBM bandwidth per chip (bytes/s, vendors' data sheets) for the forward pass's roofline.
HBM_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12, "V100": 0.9e12, "TPU v4": 1.2e12,
                 "TPU v5 lite": 0.82e12, "TPU v5e": 0.82e12}


def roofline_ms(shape, radius, device_kind):
  """The forward pass's memory floor: read a and b once, write the volume once (float32), at HBM speed."""
  bandwidth = next((v for k, v in HBM_BANDWIDTH.items() if k in device_kind), None)
  if bandwidth is None:
    return None
  batch, height, width, channels = shape
  moved = 4 * batch * height * width * (2 * channels + (2 * radius + 1)**2)
  return 1e3 * moved / bandwidth


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--radius", type=int, default=4)
  parser.add_argument("--batch", type=int, default=4)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  print(f"device: {jax.devices()[0].device_kind}; radius {args.radius}, batch {args.batch}; ms forward / "
        "forward+gradient (max |difference| from slices)")
  columns = list(IMPLEMENTATIONS)
  if roofline_ms((1, 1, 1, 1), args.radius, jax.devices()[0].device_kind) is not None:
    columns.append("HBM roofline, forward (ms)")
  print("| level (H x W x C) | " + " | ".join(columns) + " |")
  print("|---|" + "---|" * len(columns))
  for level, (height, width, channels) in LEVELS.items():
    a, b = (jnp.asarray(rng.normal(size=(args.batch, height, width, channels)), jnp.float32) for _ in range(2))
    reference = correlation(a, b, args.radius)
    cells = []
    for fn in IMPLEMENTATIONS.values():
      forward = jax.jit(lambda x, y, fn=fn: fn(x, y, args.radius))
      gradient = jax.jit(jax.grad(lambda x, y, fn=fn: jnp.sum(fn(x, y, args.radius)**2), argnums=(0, 1)))
      error = float(jnp.max(jnp.abs(forward(a, b) - reference)))
      try:
        cells.append(f"{call_ms(forward, a, b, repeats=args.repeats):.1f} / "
                     f"{call_ms(gradient, a, b, repeats=args.repeats):.1f} ({error:.0e})")
      except jax.errors.JaxRuntimeError as e:  # a backend that cannot run a formulation says so in the table
        cells.append(f"fails ({str(e).splitlines()[0][:40]})")
    floor = roofline_ms(a.shape, args.radius, jax.devices()[0].device_kind)
    if floor is not None:
      cells.append(f"{floor:.3f}")
    print(f"| {level} ({height} x {width} x {channels}) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  main()
