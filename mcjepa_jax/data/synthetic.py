"""An embedded FlyingChairs-style dataset: textured shapes moving over a moving background.

Textures are crops of the real photographs bundled with scikit-image, so the
demo needs no download. Each layer (background, then foreground shapes)
moves by its own random affine map; the generator returns both frames, the
exact forward flow of frame 1 and the mask of frame-1 pixels that stay
visible in frame 2. Sample i is a pure function of (seed, i).
"""

import dataclasses
import functools

import numpy as np
from scipy import ndimage

# scikit-image's bundled photographs (no network needed); grey ones are tiled to RGB.
TEXTURE_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
                 "camera", "brick", "grass", "gravel", "moon", "coins", "horse", "retina")


@functools.lru_cache(maxsize=None)
def load_textures(max_side=512):
  """The bundled photographs as float32 RGB arrays in [0, 1], longest side <= max_side.

  Downscaling with anti-aliasing to a few times the frame size keeps texture
  detail at a scale the flow loss can lock onto; sampling a full-size photo
  into small frames aliases it into near-noise.
  """
  from skimage import data as skdata, transform
  textures = []
  for name in TEXTURE_NAMES:
    image = np.asarray(getattr(skdata, name)(), np.float32)
    if image.max() > 1.0:
      image = image / 255.0
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    scale = max_side / max(image.shape[:2])
    if scale < 1:
      image = transform.rescale(image, scale, channel_axis=-1, anti_aliasing=True).astype(np.float32)
    textures.append(image)
  return tuple(textures)


@dataclasses.dataclass(frozen=True)
class MotionRanges:
  """Largest random motion of one layer between the two frames (uniform in +-range)."""
  translate: float  # pixels
  rotate: float     # degrees
  scale: float      # relative, e.g. 0.05 = +-5 %


def _affine(rng, centre, ranges):
  """2x3 map from frame-1 to frame-2 coordinates (x, y) for one layer."""
  angle = np.deg2rad(rng.uniform(-ranges.rotate, ranges.rotate))
  scale = 1.0 + rng.uniform(-ranges.scale, ranges.scale)
  shift = rng.uniform(-ranges.translate, ranges.translate, size=2)
  linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  offset = centre + shift - linear @ centre
  return np.concatenate([linear, offset[:, None]], axis=1)


def _apply(affine, xs, ys):
  return (affine[0, 0] * xs + affine[0, 1] * ys + affine[0, 2],
          affine[1, 0] * xs + affine[1, 1] * ys + affine[1, 2])


def _invert(affine):
  linear_inv = np.linalg.inv(affine[:, :2])
  return np.concatenate([linear_inv, -(linear_inv @ affine[:, 2])[:, None]], axis=1)


def _random_shape(rng, centre, radius):
  """A random ellipse, rectangle or star-like blob: returns mask(xs, ys) -> bool in layer coordinates."""
  kind = rng.integers(3)
  theta = rng.uniform(0, np.pi)
  aspect = rng.uniform(0.5, 1.0)
  lobes = rng.integers(3, 7)

  def mask(xs, ys):
    dx, dy = xs - centre[0], ys - centre[1]
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    if kind == 0:
      return (u / radius)**2 + (v / (radius * aspect))**2 <= 1.0
    if kind == 1:
      return (np.abs(u) <= radius) & (np.abs(v) <= radius * aspect)
    return np.hypot(u, v) <= radius * (0.7 + 0.3 * np.cos(lobes * np.arctan2(v, u)))

  return mask


class SyntheticChairs:
  """Random-access source of generated flow pairs (a grain-compatible data source).

  Attributes:
    size: (H, W) of the frames.
    num_samples: length of the source.
    seed: samples of different seeds are independent (train vs held-out split).
    single_frame: render frame 1 only (content images need no motion).
    texture_scale: photographs are downscaled to this many frame sizes (longest side).
    with_backward: also return the exact backward flow of frame 2 (for tests
      of the objective, which needs both directions).
  """

  def __init__(self, size, num_samples, seed, num_shapes=(1, 3), background_motion=MotionRanges(3.0, 2.0, 0.03),
               foreground_motion=MotionRanges(6.0, 6.0, 0.06), single_frame=False, texture_scale=4,
               with_backward=False):
    self.single_frame = single_frame
    self.with_backward = with_backward
    self.texture_scale = texture_scale
    self.size = tuple(size)
    self.num_samples = num_samples
    self.seed = seed
    self.num_shapes = num_shapes
    self.background_motion = background_motion
    self.foreground_motion = foreground_motion

  def __len__(self):
    return self.num_samples

  def __getitem__(self, index):
    if not 0 <= index < self.num_samples:
      raise IndexError(f"sample {index} out of range [0, {self.num_samples})")
    return self.generate(np.random.default_rng([self.seed, index]))

  def _texture_sampler(self, rng):
    """A random crop of a random photograph: (function of layer coordinates (x, y), index in TEXTURE_NAMES)."""
    textures = load_textures(min(512, self.texture_scale * max(self.size)))
    index = int(rng.integers(len(textures)))
    texture = textures[index]
    height, width = self.size
    margin = 0.25 * max(height, width)
    # A random zoom so that textures show detail at several scales.
    zoom = rng.uniform(0.5, 1.5)
    span_y, span_x = (height + 2 * margin) * zoom, (width + 2 * margin) * zoom
    origin_y = rng.uniform(0, max(texture.shape[0] - span_y, 0))
    origin_x = rng.uniform(0, max(texture.shape[1] - span_x, 0))
    brightness = rng.uniform(0.8, 1.2)

    def sample(xs, ys):
      coords = [origin_y + (ys + margin) * zoom, origin_x + (xs + margin) * zoom]
      channels = [ndimage.map_coordinates(texture[..., c], coords, order=1, mode="reflect") for c in range(3)]
      return np.clip(np.stack(channels, axis=-1) * brightness, 0.0, 1.0)

    return sample, index

  def generate(self, rng):
    """One sample from a numpy Generator.

    Returns:
      dict: "frame1", "frame2" [H, W, 3] float32 in [0, 1] (only "frame1" when
      `single_frame`); "flow" [H, W, 2]
      float32 (u, v) from frame 1 to frame 2; "visible" [H, W] float32, 1 where
      the frame-1 pixel is still visible in frame 2; "background" int32, the
      index in TEXTURE_NAMES of the background's photograph (flat photographs
      leave the background's motion unobservable: `benchmarks/slope_regions.py`
      reports the flow per background); with `with_backward`, "flow_backward"
      [H, W, 2] from frame 2 to frame 1.
    """
    height, width = self.size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    centre = np.array([width / 2, height / 2])
    background, background_texture = self._texture_sampler(rng)
    layers = [(background, None, _affine(rng, centre, self.background_motion))]
    for _ in range(rng.integers(self.num_shapes[0], self.num_shapes[1] + 1)):
      shape_centre = rng.uniform([0.15 * width, 0.15 * height], [0.85 * width, 0.85 * height])
      radius = rng.uniform(0.15, 0.35) * min(height, width)
      mask_fn = _random_shape(rng, shape_centre, radius)
      layers.append((self._texture_sampler(rng)[0], mask_fn, _affine(rng, shape_centre, self.foreground_motion)))

    frames = []
    owners = []
    for frame_index in range(1 if self.single_frame else 2):
      owner = np.zeros((height, width), np.int32)
      for k, (texture, mask_fn, affine) in enumerate(layers):
        # Frame 1 shows each layer in its own coordinates; frame 2 shows it moved by `affine`.
        lx, ly = (xs, ys) if frame_index == 0 else _apply(_invert(affine), xs, ys)
        if mask_fn is None:  # the background, layer 0, covers the frame
          image = texture(lx, ly)
          continue
        covered = mask_fn(lx, ly)
        # Sampling only the covered pixels: most of the generation time is texture lookups.
        image[covered] = texture(lx[covered], ly[covered])
        owner[covered] = k
      frames.append(image)
      owners.append(owner)
    if self.single_frame:
      return {"frame1": frames[0].astype(np.float32)}

    flow = np.zeros((height, width, 2))
    for k, (_, _, affine) in enumerate(layers):
      tx, ty = _apply(affine, xs, ys)
      on_top = owners[0] == k
      flow[..., 0] = np.where(on_top, tx - xs, flow[..., 0])
      flow[..., 1] = np.where(on_top, ty - ys, flow[..., 1])

    # Visible: the target pixel lies inside frame 2 and the same layer is on top there.
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    inside = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
    owner_there = owners[1][np.clip(np.rint(ty), 0, height - 1).astype(int),
                            np.clip(np.rint(tx), 0, width - 1).astype(int)]
    visible = inside & (owner_there == owners[0])
    sample = {"frame1": frames[0].astype(np.float32), "frame2": frames[1].astype(np.float32),
              "flow": flow.astype(np.float32), "visible": visible.astype(np.float32),
              "background": np.int32(background_texture)}
    if self.with_backward:
      backward = np.zeros((height, width, 2))
      for k, (_, _, affine) in enumerate(layers):
        sx, sy = _apply(_invert(affine), xs, ys)
        on_top = owners[1] == k
        backward[..., 0] = np.where(on_top, sx - xs, backward[..., 0])
        backward[..., 1] = np.where(on_top, sy - ys, backward[..., 1])
      sample["flow_backward"] = backward.astype(np.float32)
    return sample
