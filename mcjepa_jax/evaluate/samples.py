"""The real sample pairs with ground truth that ship beside the project (`shared/data`, see its README)."""

import os

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
