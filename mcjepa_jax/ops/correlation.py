"""Local correlation (cost) volume, DESIGN.md section 3 step 3.

Formulations of the same sum (`correlation(..., impl=...)`), measured by
`benchmarks/correlation.py` (docs/benchmarks.md): "slices" ((2r+1)^2 shifted
multiply-adds, each summed over channels) and "banded" (per row offset, blocks of
up to 32 pixels of a row against their 32 + 2r neighbours in one matmul, of which
the 2r+1 diagonals are kept). Both share one backward pass: the gradients are
(2r+1)^2 shifted multiply-adds over whole feature vectors with no channel sum
(`_shifted_backward`), 2.7x faster on XLA:CPU than differentiating the slices and
10x faster than differentiating the banded matmuls. On XLA:CPU the slices' channel
sums are memory-bound passes (one per offset), so the banded forward is 3-4x
faster there at every PWC level with enough channels; "auto" takes it on the CPU
from `_BANDED_MIN_CHANNELS` channels, the slices otherwise and elsewhere. "pallas"
(`ops.correlation_pallas`) is a Pallas kernel pair for GPUs/TPUs, tested on the
CPU in the Pallas interpreter; "auto" does not take it until a lent accelerator
has timed it against the slices (no GPU or TPU timing yet).
"""

import functools

import jax
import jax.numpy as jnp

from mcjepa_jax.ops.correlation_pallas import correlation_pallas

CORRELATION_IMPLS = ("auto", "slices", "banded", "pallas")
# "auto" uses the banded form on the CPU from this many channels (matmuls of few channels run below
# the shifted multiply-adds).
_BANDED_MIN_CHANNELS = 32
# Pixels of a row per banded matmul: each block is matched against block + 2r columns, so narrower
# blocks waste fewer multiply-adds ((block + 2r) / (2r + 1) times the needed ones) in smaller matmuls.
_BANDED_BLOCK = 32


def correlation(a, b, radius, impl="slices"):
  """Local correlation between two feature maps.

  `out[n, y, x, k] = (1/C) * sum_c a[n, y, x, c] * b[n, y + dy_k, x + dx_k, c]`
  for the (2r+1)^2 offsets in row-major order (dy outer, dx inner); `b` reads
  as zero outside the image.

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
  if impl == "auto":
    suited = a.shape[-1] >= _BANDED_MIN_CHANNELS
    impl = "banded" if suited and jax.default_backend() == "cpu" else "slices"
  if impl == "pallas":
    return correlation_pallas(a, b, radius)
  return _correlation(a, b, radius, impl)


def _padded(b, radius):
  return jnp.pad(b, ((0, 0), (radius, radius), (radius, radius), (0, 0)))


def _slices(a, b, radius):
  """A static loop over shifted slices of a zero-padded `b` (UFlow's `compute_cost_volume`)."""
  _, height, width, channels = a.shape
  padded = _padded(b, radius)
  side = 2 * radius + 1
  costs = [jnp.sum(a * padded[:, dy:dy + height, dx:dx + width], axis=-1) for dy in range(side) for dx in range(side)]
  return jnp.stack(costs, axis=-1) / channels


def _banded(a, b, radius):
  """Per row offset dy, each block of `_BANDED_BLOCK` pixels of a row of `a` against the block + 2r
  pixels of the shifted row of `b` around it in one matmul; the 2r+1 diagonals dx = 0..2r are kept."""
  batch, height, width, channels = a.shape
  side = 2 * radius + 1
  block = min(width, _BANDED_BLOCK)
  blocks = -(-width // block)
  extra = blocks * block - width  # zero columns that complete the last block; their costs are dropped
  a = jnp.pad(a, ((0, 0), (0, 0), (0, extra), (0, 0))).reshape(batch, height, blocks, block, channels)
  padded = jnp.pad(b, ((0, 0), (radius, radius), (radius, radius + extra), (0, 0)))
  windows = jnp.stack([padded[:, :, i * block:(i + 1) * block + 2 * radius] for i in range(blocks)], axis=2)
  columns = jnp.arange(block)[:, None] + jnp.arange(side)[None, :]   # [block, 2r+1] in 0..block+2r-1
  costs = []
  for dy in range(side):
    products = jnp.einsum("bhnwc,bhnvc->bhnwv", a, windows[:, dy:dy + height])  # [B, H, n, block, block + 2r]
    costs.append(jnp.take_along_axis(products, jnp.broadcast_to(columns, products.shape[:3] + columns.shape),
                                     axis=-1))
  costs = jnp.concatenate(costs, axis=-1).reshape(batch, height, blocks * block, side * side)
  return costs[:, :, :width] / channels


_FORWARDS = {"slices": _slices, "banded": _banded}


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _correlation(a, b, radius, impl):
  return _FORWARDS[impl](a, b, radius)


def _forward(a, b, radius, impl):
  return _FORWARDS[impl](a, b, radius), (a, b)


def _shifted_backward(radius, impl, residuals, cotangent):
  """d a[p] = (1/C) sum_k g[p, k] b[p + s_k];  d b[q] = (1/C) sum_k g[q - s_k, k] a[q - s_k].

  Both are (2r+1)^2 shifted slices multiplied by a broadcast cost channel and summed: elementwise
  work over whole feature vectors that XLA fuses into one pass, with no sum over channels and no
  scatter (what differentiating the forward passes gives).
  """
  del impl
  a, b = residuals
  _, height, width, channels = a.shape
  side = 2 * radius + 1
  g = cotangent / channels
  padded_b, padded_a, padded_g = _padded(b, radius), _padded(a, radius), _padded(g, radius)
  grad_a = 0.0
  grad_b = 0.0
  for dy in range(side):
    for dx in range(side):
      k = dy * side + dx
      grad_a = grad_a + g[..., k, None] * padded_b[:, dy:dy + height, dx:dx + width]
      # q - s_k in padded coordinates: offset (2r - dy, 2r - dx).
      rows, cols = slice(2 * radius - dy, 2 * radius - dy + height), slice(2 * radius - dx, 2 * radius - dx + width)
      grad_b = grad_b + padded_g[:, rows, cols, k, None] * padded_a[:, rows, cols]
  return grad_a.astype(a.dtype), grad_b.astype(b.dtype)


_correlation.defvjp(_forward, _shifted_backward)
