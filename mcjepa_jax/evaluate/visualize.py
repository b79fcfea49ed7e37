"""Flow pictures with the standard Middlebury colour wheel (Baker et al. 2011)."""

import numpy as np
from etils import epath
from PIL import Image

# The Middlebury wheel's hue segments: (steps, channel held at 255, channel
# ramped, ramp rising?) for red-yellow, yellow-green, green-cyan, cyan-blue,
# blue-magenta, magenta-red.
_SEGMENTS = ((15, 0, 1, True), (6, 1, 0, False), (4, 1, 2, True), (11, 2, 1, False), (13, 2, 0, True),
             (6, 0, 2, False))


def _colour_wheel():
  rows = []
  for steps, held, ramped, rising in _SEGMENTS:
    segment = np.zeros((steps, 3))
    ramp = np.floor(255 * np.arange(steps) / steps)
    segment[:, held] = 255
    segment[:, ramped] = ramp if rising else 255 - ramp
    rows.append(segment)
  return np.concatenate(rows)


def flow_to_rgb(flow, max_magnitude=None):
  """[H, W, 2] flow -> [H, W, 3] uint8: hue = direction, saturation = magnitude / max_magnitude.

  Args:
    flow: (u, v) in pixels.
    max_magnitude: magnitude shown fully saturated; defaults to the largest in `flow`.
  """
  flow = np.asarray(flow, np.float64)
  u, v = flow[..., 0], flow[..., 1]
  magnitude = np.hypot(u, v)
  scale = max_magnitude if max_magnitude else max(float(magnitude.max()), 1e-6)
  u, v, magnitude = u / scale, v / scale, magnitude / scale
  wheel = _colour_wheel()
  n = wheel.shape[0]
  angle = np.arctan2(-v, -u) / np.pi
  position = (angle + 1) / 2 * (n - 1)
  k0 = np.floor(position).astype(int)
  k1 = (k0 + 1) % n
  frac = (position - k0)[..., None]
  colour = ((1 - frac) * wheel[k0] + frac * wheel[k1]) / 255.0
  saturation = np.clip(magnitude, 0, 1)[..., None]
  colour = 1 - saturation * (1 - colour)
  colour = np.where(magnitude[..., None] > 1, colour * 0.75, colour)  # out of range: darker
  return (255 * colour).round().astype(np.uint8)


def save_png(path, image):
  """Writes [H, W, 3] uint8 or float-in-[0, 1] image as PNG to a local or bucket (gs://) path."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
  with epath.Path(path).open("wb") as f:
    Image.fromarray(image).save(f, format="PNG")


def flow_panel(frame1, frame2, flow, gt_flow=None):
  """Side-by-side [frame1 | frame2 | predicted flow (| ground truth)] as uint8, one colour scale."""
  scale = float(np.hypot(*np.moveaxis(gt_flow if gt_flow is not None else flow, -1, 0)).max()) or 1.0
  tiles = [(np.clip(frame1, 0, 1) * 255).astype(np.uint8), (np.clip(frame2, 0, 1) * 255).astype(np.uint8),
           flow_to_rgb(flow, scale)]
  if gt_flow is not None:
    tiles.append(flow_to_rgb(gt_flow, scale))
  return np.concatenate(tiles, axis=1)


def enlarge_for_display(image, min_height=256):
  """Nearest-neighbour upsampling by an integer factor until `image` [H, W, C] is at least `min_height` tall."""
  factor = max(1, -(-min_height // image.shape[0]))
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image
