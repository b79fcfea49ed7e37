"""The local correlation (cost) volume as Pallas kernels, forward and backward (DESIGN.md 3 step 3).

`correlation_pallas(a, b, radius)` computes the same sum as `ops.correlation.correlation`:
`out[n, y, x, k] = (1/C) sum_c a[n, y, x, c] * b[n, y + dy_k, x + dx_k, c]`, `b` zero outside the
image, offsets row-major (dy outer). One program per (image, row): it reads the row of `a` and the
2r+1 rows of the zero-padded `b` it needs and writes the (2r+1)^2 costs of the row: each input is
read from the kernel's own window and the volume written once, with the (2r+1)^2 multiply-adds per
channel that the sum needs (the banded formulation does W / (2r+1) times more).

The gradient is two more kernels of the same shape (`jax.custom_vjp`):
  d a[y, x]  = (1/C) sum_k g[y, x, k] b[y + dy_k, x + dx_k]
  d b[y, x]  = (1/C) sum_k g[y - dy_k, x - dx_k, k] a[y - dy_k, x - dx_k]
the second written, with g and a padded by r, as a sum over the same (2r+1)^2 window.

Triton (the GPU backend of Pallas) wants power-of-two block sides, so W and C are zero-padded
to powers of two around the kernels (zeros add nothing to the sums) and cropped after; the cost
volume is produced as [B, H, K, W] (one contiguous row of W per offset) and transposed once.
`interpret=True` runs the same kernels through the Pallas interpreter: that is how the tests check
them on the CPU (values against a brute-force loop, gradients against finite differences).
Which backend runs it by default is decided by measurement (`ops.correlation`, docs/benchmarks.md).
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl


def _power_of_two(n):
  return 1 << max(int(n) - 1, 0).bit_length()


def _forward_kernel(a_ref, padded_ref, out_ref, *, radius, width, scale):
  """a_ref [Wp, Cp] (row y of image n), padded_ref [H + 2r, Wp + 2r, Cp] (image n of b), out_ref [K, Wp]."""
  y = pl.program_id(1)
  row = a_ref[...]
  side = 2 * radius + 1
  for dy in range(side):
    for dx in range(side):
      window = padded_ref[y + dy, pl.ds(dx, width), :]
      out_ref[dy * side + dx, :] = jnp.sum(row * window, axis=-1) * scale


def _backward_kernel(grad_ref, features_ref, out_ref, *, radius, width, scale, shifted):
  """One row of d a (shifted=False) or d b (shifted=True): out_ref [Wp, Cp].

  d a: grad_ref [H, K, Wp] is the cost volume's cotangent, features_ref [H + 2r, Wp + 2r, Cp] is
  the padded b, read at (y + dy, x + dx) for offset k = (dy, dx).
  d b: grad_ref [H + 2r, K, Wp + 2r] and features_ref [H + 2r, Wp + 2r, Cp] are the cotangent and
  a, both padded by r: window (e, f) holds the pixels whose offset (2r - e, 2r - f) lands on (y, x).
  """
  y = pl.program_id(1)
  side = 2 * radius + 1
  acc = jnp.zeros(out_ref.shape, out_ref.dtype)
  for e in range(side):
    for f in range(side):
      if shifted:
        weights = grad_ref[y + e, (2 * radius - e) * side + (2 * radius - f), pl.ds(f, width)]
      else:
        weights = grad_ref[y, e * side + f, :]
      acc = acc + weights[:, None] * features_ref[y + e, pl.ds(f, width), :]
  out_ref[...] = acc * scale


def _pad_to(x, height_pad, width_pad, channels):
  """Zero-pads [B, H, W, C] by height_pad rows on both sides, width_pad = (left, right) columns and
  channels up to `channels`."""
  return jnp.pad(x, ((0, 0), (height_pad, height_pad), width_pad, (0, channels - x.shape[-1])))


def _interpreted(interpret):
  return jax.default_backend() == "cpu" if interpret is None else interpret


def _forward(a, b, radius, interpret):
  batch, height, width, channels = a.shape
  dtype = jnp.result_type(a, b)
  side = 2 * radius + 1
  wp, cp = _power_of_two(width), _power_of_two(channels)
  a_p = _pad_to(a, 0, (0, wp - width), cp)
  b_p = _pad_to(b, radius, (radius, radius + wp - width), cp)
  kernel = functools.partial(_forward_kernel, radius=radius, width=wp, scale=1.0 / channels)
  volume = pl.pallas_call(
      kernel,
      grid=(batch, height),
      in_specs=[pl.BlockSpec((None, None, wp, cp), lambda n, y: (n, y, 0, 0)),
                pl.BlockSpec((None, height + 2 * radius, wp + 2 * radius, cp), lambda n, y: (n, 0, 0, 0))],
      out_specs=pl.BlockSpec((None, None, side * side, wp), lambda n, y: (n, y, 0, 0)),
      out_shape=jax.ShapeDtypeStruct((batch, height, side * side, wp), dtype),
      interpret=_interpreted(interpret),
  )(a_p, b_p)
  return jnp.transpose(volume[..., :width], (0, 1, 3, 2))


def _backward_call(grad, features, radius, width, out_shape, shifted, interpret, scale):
  """d a (shifted=False) or d b (shifted=True) as [B, H, Wp, Cp] from one program per (image, row)."""
  batch, height = out_shape[:2]
  kernel = functools.partial(_backward_kernel, radius=radius, width=width, scale=scale, shifted=shifted)
  return pl.pallas_call(
      kernel,
      grid=(batch, height),
      in_specs=[pl.BlockSpec((None,) + grad.shape[1:], lambda n, y: (n, 0, 0, 0)),
                pl.BlockSpec((None,) + features.shape[1:], lambda n, y: (n, 0, 0, 0))],
      out_specs=pl.BlockSpec((None, None) + out_shape[2:], lambda n, y: (n, y, 0, 0)),
      out_shape=jax.ShapeDtypeStruct(out_shape, features.dtype),
      interpret=_interpreted(interpret),
  )(grad, features)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def correlation_pallas(a, b, radius, interpret=None):
  """Correlation volume [B, H, W, (2r+1)^2] of a, b [B, H, W, C], as Pallas kernels.

  Computed in the inputs' dtype (the flow head passes float32; the gradient tests float64).

  interpret: run the kernels in the Pallas interpreter (any backend, slowly); None: on the CPU
  backend only, which has no Pallas compiler (the CPU tests).
  """
  if a.shape != b.shape:
    raise ValueError(f"correlation needs equal shapes, got {a.shape} and {b.shape}")
  return _forward(a, b, radius, interpret)


def _vjp_forward(a, b, radius, interpret):
  return correlation_pallas(a, b, radius, interpret), (a, b)


def _vjp_backward(radius, interpret, residuals, grad):
  a, b = residuals
  batch, height, width, channels = a.shape
  wp, cp = _power_of_two(width), _power_of_two(channels)
  scale = 1.0 / channels
  # The cotangent as [B, H, K, Wp]: one contiguous row per offset, zero beyond the image.
  grad_rows = jnp.pad(jnp.transpose(grad.astype(jnp.result_type(a, b)), (0, 1, 3, 2)),
                      ((0, 0), (0, 0), (0, 0), (0, wp - width)))
  b_p = _pad_to(b.astype(grad_rows.dtype), radius, (radius, radius + wp - width), cp)
  grad_a = _backward_call(grad_rows, b_p, radius, wp, (batch, height, wp, cp), False, interpret, scale)
  grad_padded = jnp.pad(grad_rows, ((0, 0), (radius, radius), (0, 0), (radius, radius)))
  a_p = _pad_to(a.astype(grad_rows.dtype), radius, (radius, radius + wp - width), cp)
  grad_b = _backward_call(grad_padded, a_p, radius, wp, (batch, height, wp, cp), True, interpret, scale)
  crop = lambda g, like: g[:, :, :width, :channels].astype(like.dtype)
  return crop(grad_a, a), crop(grad_b, b)


correlation_pallas.defvjp(_vjp_forward, _vjp_backward)
