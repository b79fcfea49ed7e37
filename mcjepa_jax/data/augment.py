"""Augmentations (DESIGN.md 5), numpy on the host, randomness from a per-sample Generator.

Image views follow VICReg: random resized crop, flip, colour jitter, grey,
blur, solarise, with per-view probabilities. Flow pairs get the same crop and
the same photometric jitter on both frames (no flip: the loss is unsupervised
so nothing needs flipping).
"""

import numpy as np
from scipy import ndimage
from skimage import color


def _linear_taps(coords, size):
  """Linear interpolation at `coords` [n] along a line of `size` pixels, clamped to the edge pixels.

  Returns (low, high, frac): the two pixel indices [n] and the weight of `high` [n].
  """
  coords = np.clip(coords, 0, size - 1)
  low = np.floor(coords).astype(np.int64)
  high = np.minimum(low + 1, size - 1)
  return low, high, coords - low


def resized_crop(image, box, size):
  """Bilinear resample of `box` = (top, left, height, width) of [H, W, C] `image` to `size` (h, w).

  Sample points outside the image take the edge pixels (map_coordinates' mode="nearest").
  A box's bilinear resample is separable: rows, then columns, each a lerp of two
  gathered lines (about 3x faster than map_coordinates' per-pixel gather).
  """
  top, left, height, width = box
  out_h, out_w = size
  ys = top + (np.arange(out_h) + 0.5) * height / out_h - 0.5
  xs = left + (np.arange(out_w) + 0.5) * width / out_w - 0.5
  low, high, frac = _linear_taps(ys, image.shape[0])
  frac = frac.astype(image.dtype)[:, None, None]
  rows = image[low] * (1 - frac) + image[high] * frac  # [h, W, C]
  low, high, frac = _linear_taps(xs, image.shape[1])
  frac = frac.astype(image.dtype)[None, :, None]
  return rows[:, low] * (1 - frac) + rows[:, high] * frac


def random_resized_crop_box(rng, image_size, scale, ratio=(3 / 4, 4 / 3)):
  """torchvision's RandomResizedCrop box sampling: area fraction in `scale`, log-uniform aspect."""
  height, width = image_size
  area = height * width
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    w = int(round(np.sqrt(target * aspect)))
    h = int(round(np.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return rng.integers(0, height - h + 1), rng.integers(0, width - w + 1), h, w
  side = min(height, width)  # fallback: central square
  return (height - side) // 2, (width - side) // 2, side, side


def colour_jitter_params(rng, brightness, contrast, saturation, hue):
  """Random factors of one colour jitter, to apply identically to several images."""
  return (rng.uniform(1 - brightness, 1 + brightness), rng.uniform(1 - contrast, 1 + contrast),
          rng.uniform(1 - saturation, 1 + saturation), rng.uniform(-hue, hue))


def apply_colour_jitter(image, params):
  """Brightness, contrast, saturation, hue (torchvision's definitions, fixed order) on [H, W, 3] in [0, 1]."""
  b, c, s, h = params
  image = np.clip(image * b, 0, 1)
  grey = color.rgb2gray(image)[..., None]
  image = np.clip((image - grey.mean()) * c + grey.mean(), 0, 1)
  grey = color.rgb2gray(image)[..., None]
  image = np.clip((image - grey) * s + grey, 0, 1)
  if h:
    image = shift_hue(image, h)
  return image


def shift_hue(image, shift):
  """[H, W, 3] RGB in [0, 1] with its HSV hue turned by `shift` (a fraction of the circle): same shape.

  The same values as skimage's rgb2hsv -> hue + shift -> hsv2rgb, without the round
  trip: each channel is max - chroma * clip(min(k, 4 - k), 0, 1) with k = (n + 6 hue) mod 6, n = 5, 3, 1
  for red, green, blue. The round trip was half of the input pipeline's time.
  """
  red, green, blue = image[..., 0], image[..., 1], image[..., 2]
  value = image.max(axis=-1)
  chroma = value - image.min(axis=-1)
  safe = np.where(chroma > 0, chroma, 1)
  sextant = np.where(blue == value, 4 + (red - green) / safe,
                     np.where(green == value, 2 + (blue - red) / safe, (green - blue) / safe))
  sextant = (sextant + 6 * shift) % 6
  out = [value - chroma * np.clip(np.minimum(k, 4 - k), 0, 1) for k in ((n + sextant) % 6 for n in (5, 3, 1))]
  return np.stack(out, axis=-1)


def augment_view(rng, image, cfg, blur_prob, solarize_prob):
  """One VICReg view of [H, W, 3] `image`: [view_size, view_size, 3] float32.

  cfg: `config.data.views` (crop_scale, flip_prob, jitter, jitter_prob, grey_prob, blur_sigma).
  """
  box = random_resized_crop_box(rng, image.shape[:2], tuple(cfg.crop_scale))
  view = resized_crop(image, box, (cfg.size, cfg.size))
  if rng.uniform() < cfg.flip_prob:
    view = view[:, ::-1]
  if rng.uniform() < cfg.jitter_prob:
    view = apply_colour_jitter(view, colour_jitter_params(rng, *cfg.jitter))
  if rng.uniform() < cfg.grey_prob:
    view = np.repeat(color.rgb2gray(view)[..., None], 3, axis=-1)
  if rng.uniform() < blur_prob:
    sigma = rng.uniform(*cfg.blur_sigma)
    view = ndimage.gaussian_filter(view, sigma=(sigma, sigma, 0))
  if rng.uniform() < solarize_prob:
    view = np.where(view >= 0.5, 1.0 - view, view)
  return np.ascontiguousarray(view, dtype=np.float32)


def augment_pair(rng, sample, cfg):
  """Same random crop and photometric jitter on both frames of a flow sample.

  Args:
    sample: dict with "frame1", "frame2" [H, W, 3] and optionally "flow" [H, W, 2], "visible" [H, W].
    cfg: `config.data.pairs` (crop (h, w), jitter, jitter_prob, full_image_margin m).

  Returns:
    dict with the same keys cropped to cfg.crop; a crop is a translation of both
    frames, so the flow values are unchanged. With m > 0 also "wide1", "wide2"
    [h + 2m, w + 2m, 3]: the frames around the crop (the crop at (m, m)), zero
    where they leave the image, and "wide_valid" [h + 2m, w + 2m, 1], 1 inside
    it, for full-image warping (losses/flow.py: photometric_loss).
  """
  crop_h, crop_w = cfg.crop
  margin = cfg.get("full_image_margin", 0)
  height, width = sample["frame1"].shape[:2]
  if height < crop_h or width < crop_w:
    # Frames smaller than the crop (e.g. KITTI's 375 rows for a 384 crop) are upscaled
    # just enough; flow values scale with the image.
    scale = max(crop_h / height, crop_w / width)
    size = (int(np.ceil(height * scale)), int(np.ceil(width * scale)))
    box = (0, 0, height, width)
    sample = {k: resized_crop(v, box, size) if v.ndim == 3 else resized_crop(v[..., None], box, size)[..., 0]
              for k, v in sample.items()}
    if "flow" in sample:
      sample["flow"] = sample["flow"] * np.asarray([size[1] / width, size[0] / height], np.float32)
    height, width = size
  top = rng.integers(0, height - crop_h + 1)
  left = rng.integers(0, width - crop_w + 1)
  # The frames are jittered on the region around the crop, so that crop and wide frames agree.
  region_top, region_left = max(top - margin, 0), max(left - margin, 0)
  region_bottom, region_right = min(top + crop_h + margin, height), min(left + crop_w + margin, width)
  frames = {k: sample[k][region_top:region_bottom, region_left:region_right] for k in ("frame1", "frame2")}
  if rng.uniform() < cfg.jitter_prob:
    params = colour_jitter_params(rng, *cfg.jitter)
    frames = {k: apply_colour_jitter(v, params) for k, v in frames.items()}
  out = {k: v[top:top + crop_h, left:left + crop_w] for k, v in sample.items() if k not in frames}
  row, col = top - region_top, left - region_left
  out.update({k: v[row:row + crop_h, col:col + crop_w] for k, v in frames.items()})
  if margin:
    # Where the region was clipped by the image border, the wide frames are zero and invalid.
    pad = ((margin - row, top + crop_h + margin - region_bottom), (margin - col, left + crop_w + margin - region_right))
    out["wide1"], out["wide2"] = (np.pad(frames[k], pad + ((0, 0),)) for k in ("frame1", "frame2"))
    out["wide_valid"] = np.pad(np.ones(frames["frame1"].shape[:2] + (1,)), pad + ((0, 0),))
  return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
