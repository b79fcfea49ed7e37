"""Local correlation (cost) volume, DESIGN.md section 3 step 3."""

import jax.numpy as jnp


def correlation(a, b, radius):
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

  Returns:
    [B, H, W, (2r+1)^2] correlation volume.
  """
  if a.shape != b.shape:
    raise ValueError(f"correlation needs equal shapes, got {a.shape} and {b.shape}")
  _, height, width, channels = a.shape
  padded = jnp.pad(b, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
  costs = []
  for dy in range(2 * radius + 1):
    for dx in range(2 * radius + 1):
      shifted = padded[:, dy:dy + height, dx:dx + width, :]
      costs.append(jnp.sum(a * shifted, axis=-1))
  return jnp.stack(costs, axis=-1) / channels
