"""Image measures used by the photometric and smoothness losses (DESIGN.md 4).

All functions take channels-last arrays [B, H, W, C] with intensities in [0, 1].
"""

import jax
import jax.numpy as jnp

# ITU-R BT.601 luma weights, the grey conversion used by census transforms in
# UFlow/SMURF.
_LUMA = (0.2989, 0.5870, 0.1140)


def _box_mean(x, size):
  """Mean over a size x size window, stride 1, VALID: [B,H,W,C] -> [B,H-s+1,W-s+1,C]."""
  summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, size, size, 1), (1, 1, 1, 1), "VALID")
  return summed / (size * size)


def area_downsample(x, size):
  """Average-pools [B, H, W, C] to `size` (h, w); H and W must be multiples of h and w.

  Area pooling is the exact image of a pyramid level: each level-l pixel
  covers a (H/h) x (W/w) block of input pixels.
  """
  batch, height, width, channels = x.shape
  out_h, out_w = size
  if height % out_h or width % out_w:
    raise ValueError(f"area_downsample: {height}x{width} is not a multiple of {out_h}x{out_w}")
  blocks = x.reshape(batch, out_h, height // out_h, out_w, width // out_w, channels)
  return blocks.mean(axis=(2, 4))


def ssim_dissimilarity(x, y, window=3, c1=0.01**2, c2=0.03**2):
  """Per-pixel structural dissimilarity (1 - SSIM) / 2 over a window x window box.

  Borders are reflect-padded so the output keeps the input size (as in
  monodepth2 and ARFlow), which lets occlusion masks multiply it directly.
  c1, c2 are the standard SSIM constants for intensities in [0, 1].

  Args:
    x: [B, H, W, C] image.
    y: [B, H, W, C] image.
    window: odd side of the box window (DESIGN.md 4: 3).

  Returns:
    [B, H, W, C] values in [0, 1]; 0 where x and y agree.
  """
  pad = window // 2
  reflect = lambda a: jnp.pad(a, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
  x = reflect(x)
  y = reflect(y)
  mu_x = _box_mean(x, window)
  mu_y = _box_mean(y, window)
  var_x = _box_mean(x * x, window) - mu_x**2
  var_y = _box_mean(y * y, window) - mu_y**2
  cov_xy = _box_mean(x * y, window) - mu_x * mu_y
  numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
  denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
  return jnp.clip((1.0 - numerator / denominator) / 2.0, 0.0, 1.0)


def rgb_to_gray(image):
  """[B, H, W, 3] -> [B, H, W, 1] luma; single-channel input is returned as is."""
  if image.shape[-1] == 1:
    return image
  return jnp.sum(image * jnp.asarray(_LUMA, image.dtype), axis=-1, keepdims=True)


def census_transform(image, patch_size=7, scale=255.0, softness=0.81):
  """Soft census transform (UFlow): signed, squashed differences to each neighbour.

  Args:
    image: [B, H, W, C] image in [0, 1]; converted to grey first.
    patch_size: odd side of the neighbourhood.
    scale: intensity scale the softness constant is expressed in.
    softness: `d / sqrt(softness + d^2)` squashing of each difference.

  Returns:
    [B, H, W, patch_size^2] census descriptor (neighbours outside read as 0).
  """
  gray = rgb_to_gray(image) * scale
  radius = patch_size // 2
  _, height, width, _ = gray.shape
  padded = jnp.pad(gray, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
  neighbours = jnp.concatenate([
      padded[:, dy:dy + height, dx:dx + width, :]
      for dy in range(patch_size) for dx in range(patch_size)
  ], axis=-1)
  diff = neighbours - gray
  return diff / jnp.sqrt(softness + diff**2)


def soft_hamming(a, b, threshold=0.1):
  """Soft Hamming distance between census descriptors.

  Args:
    a: [B, H, W, K] census descriptor.
    b: [B, H, W, K] census descriptor.
    threshold: distance at which one neighbour counts as half a bit.

  Returns:
    [B, H, W, 1] sum over K of (a-b)^2 / (threshold + (a-b)^2).
  """
  squared = (a - b)**2
  return jnp.sum(squared / (threshold + squared), axis=-1, keepdims=True)


def image_gradients(x, stride=1):
  """Finite differences along width and height.

  Args:
    x: [B, H, W, C].
    stride: distance between the differenced pixels.

  Returns:
    (d/dx [B, H, W - stride, C], d/dy [B, H - stride, W, C]).
  """
  grad_x = x[:, :, stride:] - x[:, :, :-stride]
  grad_y = x[:, stride:] - x[:, :-stride]
  return grad_x, grad_y
