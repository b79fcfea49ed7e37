"""Local correlation (cost) volume, DESIGN.md section 3 step 3.

Two formulations of the same sum (`correlation(..., impl=...)`), measured by
`benchmarks/correlation.py` (docs/benchmarks.md): "slices" ((2r+1)^2 shifted
multiply-adds) and "banded" (one dense matmul per row offset, then its 2r+1
diagonals). On XLA:CPU, with the gradient, the banded form is 3-6x faster on
narrow rows of many channels (paper levels 4-6: W <= 32, C >= 192 at r = 4), even
at level 3 (W 64, C 96) and 1.5x slower at level 2 (W 128), and slower on the
demo's few-channel levels; "auto" takes it on the CPU for rows up to 4 (2r+1)
wide with at least 64 channels, the slices otherwise and elsewhere. "pallas"
(`ops.correlation_pallas`) is a Pallas kernel pair for GPUs/TPUs, tested on the
CPU in the Pallas interpreter; "auto" does not take it until a lent accelerator
has timed it against the slices (no GPU or TPU timing yet).
"""

import jax
import jax.numpy as jnp

from mcjepa_jax.ops.correlation_pallas import correlation_pallas

CORRELATION_IMPLS = ("auto", "slices", "banded", "pallas")
# "auto" uses the banded form on the CPU up to this row width, in units of the window side 2r+1,
# and from this many channels (matmuls of few channels run below the shifted multiply-adds).
_BANDED_MAX_WIDTH = 4
_BANDED_MIN_CHANNELS = 64


def correlation(a, b, radius, impl="slices"):
  """Local correlation between two feature maps.

  `out[n, y, x, k] = (1/C) * sum_c a[n, y, x, c] * b[n, y + dy_k, x + dx_k, c]`
  for the (2r+1)^2 offsets in row-major order (dy outer, dx inner); `b` reads
  as zero outside the image.

  A static loop over shifted slices of a zero-padded `b` (as in UFlow's
  `compute_cost_volume`): no gather, so the gradient is a plain sum of slices.

  Args:
    a: [B, H, W, C] features of the reference frame.
    b: [B, H, W, C] features of the other frame (usually already warped).
    radius: r, the largest displacement in pixels along each axis.
    impl: "slices", "banded", "pallas" (`ops.correlation_pallas`: Pallas kernels forward and
      backward; on the CPU through the Pallas interpreter, for tests only) or "auto" (module
      docstring); the same values.

  Returns:
    [B, H, W, (2r+1)^2] correlation volume.
  """
  if a.shape != b.shape:
    raise ValueError(f"correlation needs equal shapes, got {a.shape} and {b.shape}")
  if impl not in CORRELATION_IMPLS:
    raise ValueError(f"config.model.flow_head.corr_impl={impl!r}: known {', '.join(CORRELATION_IMPLS)}")
  _, height, width, channels = a.shape
  if impl == "auto":
    suited = width <= _BANDED_MAX_WIDTH * (2 * radius + 1) and channels >= _BANDED_MIN_CHANNELS
    impl = "banded" if suited and jax.default_backend() == "cpu" else "slices"
  if impl == "banded":
    return _banded(a, b, radius)
  if impl == "pallas":
    return correlation_pallas(a, b, radius)
  padded = jnp.pad(b, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
  costs = []
  for dy in range(2 * radius + 1):
    for dx in range(2 * radius + 1):
      shifted = padded[:, dy:dy + height, dx:dx + width, :]
      costs.append(jnp.sum(a * shifted, axis=-1))
  return jnp.stack(costs, axis=-1) / channels


def _banded(a, b, radius):
  """`correlation` as, per row offset dy, a [W, C] x [C, W + 2r] matmul of each image row with the
  shifted row of `b`, of which the 2r+1 diagonals dx = 0..2r are kept (offset order dy, dx as above)."""
  _, height, width, channels = a.shape
  padded = jnp.pad(b, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
  columns = jnp.arange(width)[:, None] + jnp.arange(2 * radius + 1)[None, :]   # [W, 2r+1] in 0..W+2r-1
  costs = []
  for dy in range(2 * radius + 1):
    products = jnp.einsum("bhwc,bhvc->bhwv", a, padded[:, dy:dy + height])      # [B, H, W, W + 2r]
    costs.append(jnp.take_along_axis(products, jnp.broadcast_to(columns, products.shape[:2] + columns.shape),
                                     axis=-1))
  return jnp.concatenate(costs, axis=-1) / channels
