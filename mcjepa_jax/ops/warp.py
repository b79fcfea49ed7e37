"""Backward bilinear warping and flow resizing, DESIGN.md section 3.

Flow is in pixels, channel order (u, v) = (dx, dy), pixel centres at integer
coordinates. `warp` samples exactly like PyTorch's
`grid_sample(align_corners=True, padding_mode="zeros")` once the sampling grid
is normalised by (W-1), (H-1).
"""

import jax
import jax.numpy as jnp
import numpy as np

# A pixel counts as validly warped when at least this fraction of its bilinear
# weight falls inside the source image (DESIGN.md 3: warped ones > 0.999).
VALID_FRACTION = 0.999


def _bilinear_corners(flow, source_size, origin=(0, 0)):
  """Corner indices and weights of bilinear sampling at (x + u, y + v) + origin.

  Args:
    flow: [B, H, W, 2] flow in pixels.
    source_size: (H_s, W_s) of the image sampled from.
    origin: (row, col) of the flow grid's pixel (0, 0) in the sampled image.

  Returns:
    A list of four (row, col, weight, inside) tuples, each [B, H, W]; row/col
    are int32 and clipped into the image, `inside` is 1.0 where the unclipped
    corner lies in the image.
  """
  _, height, width, _ = flow.shape
  source_height, source_width = source_size
  origin_y, origin_x = origin
  sample_x = jnp.arange(width, dtype=flow.dtype)[None, None, :] + (flow[..., 0] + origin_x)
  sample_y = jnp.arange(height, dtype=flow.dtype)[None, :, None] + (flow[..., 1] + origin_y)
  x0 = jnp.floor(sample_x)
  y0 = jnp.floor(sample_y)
  # floor() has zero gradient, so d(weight)/d(flow) comes from these two only.
  frac_x = sample_x - x0
  frac_y = sample_y - y0
  corners = []
  for off_y, weight_y in ((0, 1.0 - frac_y), (1, frac_y)):
    for off_x, weight_x in ((0, 1.0 - frac_x), (1, frac_x)):
      col = x0 + off_x
      row = y0 + off_y
      inside = ((col >= 0) & (col <= source_width - 1) & (row >= 0) & (row <= source_height - 1))
      corners.append((
          jnp.clip(row, 0, source_height - 1).astype(jnp.int32),
          jnp.clip(col, 0, source_width - 1).astype(jnp.int32),
          weight_x * weight_y,
          inside.astype(flow.dtype),
      ))
  return corners


def warp_with_mask(x, flow, origin=None):
  """Backward-warps `x` by `flow` and reports where the warp is valid.

  `out[n, y, x] = bilinear sample of x[n] at (x + u, y + v)`, zero outside.

  Args:
    x: [B, H, W, C] features or image to sample from; with `origin`, any
      [B, H_s, W_s, C] that contains the flow's grid.
    flow: [B, H, W, 2] flow (u, v) in pixels, defined on the output grid.
    origin: None (x is on the flow's grid) or static (row, col) of the flow
      grid's pixel (0, 0) inside x: SMURF's full-image warping, where the flow
      of a crop samples the uncropped frame.

  Returns:
    (warped [B, H, W, C], valid [B, H, W, 1]) where `valid` is 1.0 where the
    warp of an all-ones image exceeds 0.999 and 0.0 elsewhere.
  """
  same_grid = origin is None and x.shape[:3] == flow.shape[:3]
  inside_grid = (origin is not None and x.shape[0] == flow.shape[0]
                 and origin[0] + flow.shape[1] <= x.shape[1] and origin[1] + flow.shape[2] <= x.shape[2])
  if not (same_grid or inside_grid) or flow.shape[-1] != 2:
    raise ValueError(f"warp needs x [B,H,W,C] and flow [B,H,W,2] on the same grid (or, with an origin, x "
                     f"containing the flow's grid), got {x.shape} and {flow.shape} (origin {origin})")
  batch, height, width, channels = x.shape
  corners = _bilinear_corners(flow, (height, width), origin or (0, 0))
  # One gather of all four corners: half the compile time of four gathers on
  # XLA:CPU, and its transpose is a single scatter-add.
  index = jnp.stack([row * width + col for row, col, _, _ in corners], axis=-1)
  weights = jnp.stack([weight * inside for _, _, weight, inside in corners], axis=-1)
  out_height, out_width = flow.shape[1:3]
  values = jnp.take_along_axis(x.reshape(batch, height * width, channels),
                               index.reshape(batch, out_height * out_width * 4, 1), axis=1)
  values = values.reshape(batch, out_height, out_width, 4, channels)
  warped = jnp.sum(values * weights[..., None].astype(x.dtype), axis=3)
  coverage = jnp.sum(weights, axis=-1)
  valid = jax.lax.stop_gradient((coverage > VALID_FRACTION).astype(x.dtype))
  return warped, valid[..., None]


def warp(x, flow):
  """`warp_with_mask(x, flow)[0]`: backward bilinear warp, zero outside."""
  return warp_with_mask(x, flow)[0]


def warp_edge(x, flow):
  """Backward bilinear warp that reads the nearest border pixel outside the image.

  Like PyTorch's `grid_sample(align_corners=True, padding_mode="border")`: the
  sampling position (x + u, y + v) is clamped into the image. For frames
  handed back to the network (`evaluate.flow_eval.coarse_to_fine`), which has
  never seen the black band a zero-padded warp leaves.

  Args:
    x: [B, H, W, C]; flow: [B, H, W, 2] in pixels on the same grid.

  Returns:
    [B, H, W, C].
  """
  _, height, width, _ = flow.shape
  xs = jnp.arange(width, dtype=flow.dtype)[None, None, :]
  ys = jnp.arange(height, dtype=flow.dtype)[None, :, None]
  clamped = jnp.stack([jnp.clip(xs + flow[..., 0], 0, width - 1) - xs,
                       jnp.clip(ys + flow[..., 1], 0, height - 1) - ys], axis=-1)
  return warp(x, clamped)


def resize_flow(flow, size):
  """Bilinearly resizes a flow field and rescales its values to the new grid.

  Args:
    flow: [B, h, w, 2] flow in pixels of the h x w grid.
    size: (H, W) target size.

  Returns:
    [B, H, W, 2] flow in pixels of the H x W grid (u scaled by W/w, v by H/h).
  """
  batch, height, width, _ = flow.shape
  new_height, new_width = size
  if (new_height, new_width) == (height, width):
    return flow
  resized = jax.image.resize(flow, (batch, new_height, new_width, 2), method="bilinear")
  scale = jnp.asarray([new_width / width, new_height / height], flow.dtype)
  return resized * scale


def upsample_flow(flow, factor):
  """`factor * resize_bilinear(flow, x factor)`: [B, h, w, 2] -> [B, h*f, w*f, 2]."""
  _, height, width, _ = flow.shape
  return resize_flow(flow, (height * factor, width * factor))


def bilinear_upsample_weights(factor):
  """The weights that `upsample_flow` gives each fine pixel's 3 x 3 coarse neighbours.

  Fine pixel (f*i + a, f*j + b) lies at coarse position (i + (a + 1/2)/f - 1/2, ...)
  under half-pixel centres, always within half a cell of coarse pixel (i, j), so
  its bilinear weights fall on the 3 x 3 neighbours of (i, j).

  Returns:
    numpy [factor, factor, 9]: weights of neighbours (dy, dx) in row-major order
    of dy, dx in (-1, 0, 1), for each fine offset (a, b); each row sums to 1.
  """
  centres = (np.arange(factor) + 0.5) / factor - 0.5
  taps = np.maximum(0.0, 1.0 - np.abs(centres[:, None] - np.arange(-1, 2)[None, :]))  # [f, 3]
  return np.einsum("ay,bx->abyx", taps, taps).reshape(factor, factor, 9)


def convex_upsample(flow, logits, factor):
  """Upsamples flow by `factor`, each fine pixel a learned convex combination of 3 x 3 coarse flows.

  RAFT's convex upsampling: fine pixel (f*i + a, f*j + b) takes
  sum_k softmax(logits)_k * flow[i + dy_k, j + dx_k] * f, so a mask computed from
  fine-resolution features can take a boundary pixel's flow from the surface it
  belongs to instead of blending both sides. Borders repeat the edge flow, so
  logits = log(`bilinear_upsample_weights`) give `upsample_flow` exactly.

  Args:
    flow: [B, h, w, 2] flow in pixels of the h x w grid.
    logits: [B, h*f, w*f, 9] unnormalised weights of the neighbours (dy, dx),
      row-major over dy, dx in (-1, 0, 1).
    factor: integer f.

  Returns:
    [B, h*f, w*f, 2] flow in pixels of the fine grid.
  """
  batch, height, width, _ = flow.shape
  if logits.shape != (batch, height * factor, width * factor, 9):
    raise ValueError(f"convex_upsample: logits must be {(batch, height * factor, width * factor, 9)} "
                     f"for flow {flow.shape} and factor {factor}, got {logits.shape}")
  padded = jnp.pad(flow, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  neighbours = jnp.stack([padded[:, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)], axis=3)
  # Each fine pixel reads the neighbours of its parent cell: [B, H, W, 9, 2].
  neighbours = jnp.repeat(jnp.repeat(neighbours, factor, axis=1), factor, axis=2)
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.sum(weights[..., None] * neighbours, axis=3) * factor


def zoom_crop(x, offset, scale):
  """Crops a window of each image and resizes it back to the full grid (bilinear).

  Output pixel p of row n samples x[n] at offset[n] + scale[n] * p, so the
  window starts at `offset` and spans `scale` of the image (scale < 1 zooms in).

  Args:
    x: [B, H, W, C] images, features or flows (flow values are not rescaled;
      divide by `scale` for a flow on the cropped grid).
    offset: [B, 2] window origin (x, y) in pixels.
    scale: [B] window size as a fraction of the image.

  Returns:
    [B, H, W, C].
  """
  _, height, width, _ = x.shape
  grid = jnp.stack(jnp.meshgrid(jnp.arange(width, dtype=x.dtype), jnp.arange(height, dtype=x.dtype)), axis=-1)
  sample_at = offset[:, None, None, :].astype(x.dtype) + scale[:, None, None, None].astype(x.dtype) * grid
  return warp(x, sample_at - grid)
