"""The real sample pairs with ground truth that ship beside the project (`shared/data`, see its README)."""

import os

import numpy as np

from mcjepa_jax.data.formats import read_flo, read_pair


def real_sample_sets(root):
  """{name: [(frame1 path, frame2 path, .flo path), ...]} for the samples present under `root`."""
  sets = {}
  for render in ("clean", "final"):
    folder = os.path.join(root, "Sintel", "training", render, "alley_1")
    flo = os.path.join(root, "Sintel", "training", "flow", "alley_1", "frame_0002.flo")
    if os.path.isdir(folder) and os.path.exists(flo):
      sets[f"sintel_{render}_alley_1"] = [(os.path.join(folder, "frame_0002.png"),
                                           os.path.join(folder, "frame_0003.png"), flo)]
  chairs = os.path.join(root, "FlyingChairs_release", "data")
  if os.path.isdir(chairs):
    ids = sorted(f[:5] for f in os.listdir(chairs) if f.endswith("_flow.flo"))
    sets["flyingchairs"] = [(os.path.join(chairs, f"{i}_img1.ppm"), os.path.join(chairs, f"{i}_img2.ppm"),
                             os.path.join(chairs, f"{i}_flow.flo")) for i in ids]
  whale = os.path.join(root, "middlebury", "other-data", "RubberWhale")
  whale_flo = os.path.join(root, "middlebury", "other-gt-flow", "RubberWhale", "flow10.flo")
  if os.path.isdir(whale) and os.path.exists(whale_flo):
    sets["middlebury_rubberwhale"] = [(os.path.join(whale, "frame10.png"), os.path.join(whale, "frame11.png"),
                                       whale_flo)]
  return sets


def load_pairs(paths):
  """Yields (frame1, frame2, flow, valid) for a list of (frame1, frame2, .flo) paths."""
  for path1, path2, flo in paths:
    frame1, frame2 = read_pair(path1, path2)
    flow, valid = read_flo(flo)
    if flow.shape[:2] != frame1.shape[:2]:
      raise ValueError(f"{flo}: flow is {flow.shape[:2]} but {path1} is {frame1.shape[:2]}")
    yield frame1, frame2, flow, valid


def default_data_root():
  """`$MCJEPA_SHARED_DATA`, else `shared/data` beside the repository checkout (None if absent)."""
  env = os.environ.get("MCJEPA_SHARED_DATA")
  if env:
    return env
  here = os.path.dirname(os.path.abspath(__file__))
  candidate = os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "data"))
  return candidate if os.path.isdir(candidate) else None


def reduce_pair(frame1, frame2, flow, valid, reduction):
  """A flow pair block-averaged by `reduction`: what a model trained on small frames sees at its scale.

  Frames are averaged over each reduction x reduction block; the flow over the
  block's valid pixels, divided by `reduction` (pixels of the smaller grid); a
  block is valid where at least half its pixels are. Sizes are cut down to
  multiples of `reduction`.

  Args:
    frame1, frame2: [H, W, 3]; flow: [H, W, 2] (may be non-finite where invalid); valid: [H, W] bool.
    reduction: block side.

  Returns:
    (frame1, frame2, flow, valid) at [H // reduction, W // reduction].
  """
  height, width = (n // reduction * reduction for n in flow.shape[:2])

  def blocks(x):
    x = np.asarray(x)[:height, :width]
    return x.reshape(height // reduction, reduction, width // reduction, reduction, *x.shape[2:])

  valid = np.asarray(valid, bool) & np.all(np.isfinite(flow), axis=-1)
  counts = blocks(valid).sum(axis=(1, 3))
  total = blocks(np.where(valid[..., None], flow, 0.0)).sum(axis=(1, 3))
  small_flow = (total / np.maximum(counts, 1)[..., None] / reduction).astype(np.float32)
  small_valid = blocks(valid).mean(axis=(1, 3)) >= 0.5
  frames = [blocks(np.asarray(f, np.float32)).mean(axis=(1, 3)) for f in (frame1, frame2)]
  return frames[0], frames[1], small_flow, small_valid


def motorcycle_pair(reduction=8):
  """scikit-image's bundled Middlebury 2014 `motorcycle` stereo pair as a flow pair with ground truth.

  Every install has it (no `shared/data` needed). Left -> right is a purely
  horizontal flow u = -disparity, v = 0. The full pair (500 x 741, disparities
  7-60 px) is block-averaged by `reduction` (`reduce_pair`) so that its motions
  match what a small demo model trains on (1/8: 62 x 92, median 4.8 px); a
  block counts as valid where at least half its disparities are (the rest are
  NaN/inf).

  Returns:
    (frame1, frame2, flow, valid): [h, w, 3] float32 in [0, 1] twice,
    [h, w, 2] float32 and [h, w] bool.
  """
  from skimage import data  # pylint: disable=g-import-not-at-top
  left, right, disparity = data.stereo_motorcycle()
  flow = np.stack([-disparity, np.zeros_like(disparity)], axis=-1)
  return reduce_pair(left.astype(np.float32) / 255.0, right.astype(np.float32) / 255.0, flow,
                     np.isfinite(disparity), reduction)
