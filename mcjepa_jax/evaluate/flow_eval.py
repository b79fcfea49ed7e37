"""Flow evaluation: EPE of predicted flow against ground truth (DESIGN.md 6).

Frames are padded (edge replicate) to a multiple of the encoder stride, the
flow is predicted there and cropped back, so it is already at the original
resolution and no value rescaling is needed.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mcjepa_jax.evaluate.defaults import OCCLUSION_FILL_COLOR_SIGMA
from mcjepa_jax.ops.occlusion import fill_occluded_flow
from mcjepa_jax.ops.warp import warp_edge


def endpoint_error(flow, gt, valid=None):
  """Mean ||flow - gt||_2 over valid pixels: [H, W, 2] x [H, W, 2] (x [H, W] bool) -> float."""
  error = np.linalg.norm(np.asarray(flow, np.float64) - np.asarray(gt, np.float64), axis=-1)
  if valid is None:
    return float(error.mean())
  valid = np.asarray(valid, bool)
  return float(error[valid].mean()) if valid.any() else float("nan")


def flow_outliers(flow, gt, valid=None, abs_threshold=3.0, rel_threshold=0.05):
  """KITTI Fl: fraction of valid pixels whose EPE exceeds 3 px *and* 5 % of |gt| -> float in [0, 1]."""
  flow, gt = np.asarray(flow, np.float64), np.asarray(gt, np.float64)
  error = np.linalg.norm(flow - gt, axis=-1)
  outlier = (error > abs_threshold) & (error > rel_threshold * np.linalg.norm(gt, axis=-1))
  valid = np.ones(error.shape, bool) if valid is None else np.asarray(valid, bool)
  return float(outlier[valid].mean()) if valid.any() else float("nan")


def resize_flow_field(flow, size):
  """Bilinear resize of [H, W, 2] flow to `size` = (H', W') with u, v rescaled to the new pixel units."""
  height, width = flow.shape[:2]
  out = np.asarray(jax.image.resize(np.asarray(flow, np.float32), (*size, 2), "bilinear"))
  return out * np.asarray([size[1] / width, size[0] / height], np.float32)


def pad_to_multiple(images, multiple):
  """Edge-pads [B, H, W, C] at the bottom/right to multiples of `multiple`; returns (padded, (H, W))."""
  height, width = images.shape[1:3]
  pad_h, pad_w = -height % multiple, -width % multiple
  padded = np.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
  return padded, (height, width)


def make_flow_predictor(model, fill_radius=0, fill_color_sigma=OCCLUSION_FILL_COLOR_SIGMA):
  """jitted (variables, frames1, frames2) -> forward flow [B, H, W, 2] (H, W multiples of the stride).

  fill_radius > 0: occluded pixels get the colour-weighted flow of their visible
  neighbours (`ops.fill_occluded_flow`, from the backward flow the model
  computes anyway), a post-process on top of what the network predicts.
  """

  def predict(variables, frames1, frames2):
    video = model.apply(variables, frames1, frames2, method=model.video)
    flow, flow_back = jnp.split(video["flow"], 2)
    return fill_occluded_flow(flow, flow_back, frames1, fill_radius, fill_color_sigma)

  return jax.jit(predict)


def to_stride_grid(frames, multiple, mode, margin=0):
  """Frames [B, H, W, 3] -> (frames on a multiple of `multiple`, undo(flow [B, h, w, 2]) -> [B, H, W, 2]).

  margin: pixels of edge replication added on every side first (undo crops
  them). The network's zero-padded convolutions and cost volumes see no
  texture past the frame, and its flow shrinks towards the border; with the
  replicated margin the frame's own border pixels get that context (measured
  on the demo: held-out slope 0.752 -> 0.784 over 512 pairs with 4 pixels,
  docs/benchmarks.md table 12).
  mode "pad": edge-pad bottom/right, undo crops (flow values unchanged). mode
  "resize": resize to the nearest multiple, undo resizes the flow back with u
  and v rescaled exactly (W/W', H/H').
  """
  if margin < 0:
    raise ValueError(f"margin must be >= 0 pixels, got {margin}")
  if margin:
    frames = np.pad(np.asarray(frames), ((0, 0), (margin, margin), (margin, margin), (0, 0)), mode="edge")
  height, width = frames.shape[1:3]
  if mode == "pad":
    padded, _ = pad_to_multiple(frames, multiple)
    to_frames = lambda flow: np.asarray(flow)[:, :height, :width]
  elif mode == "resize":
    size = tuple(max(multiple, int(round(n / multiple)) * multiple) for n in (height, width))
    padded = np.asarray(jax.image.resize(np.asarray(frames, np.float32), (frames.shape[0], *size, 3), "bilinear"))
    to_frames = lambda flow: np.stack([resize_flow_field(f, (height, width)) for f in np.asarray(flow)])
  else:
    raise ValueError(f"mode: unknown {mode!r} (known: 'pad', 'resize')")
  return padded, lambda flow: to_frames(flow)[:, margin:height - margin, margin:width - margin]


def coarse_to_fine(predict, frames1, frames2, factor):
  """Flow [B, H, W, 2] of frames [B, H, W, 3] whose motion is longer than the network has learned.

  The network runs first on the frames downscaled by `factor` (antialiased),
  where every motion is `factor` times shorter; that flow c, upsampled, warps
  frame 2 towards frame 1 (edge-clamped, `ops.warp_edge`), and the network's
  flow r on that pair is the full-resolution residual: the result is
  r(x) + c(x + r(x)). The classical image-pyramid answer to motion beyond a
  matcher's range: a model trained on 64-px crops with ~3 px of motion is
  shrunk to a tenth of FlyingChairs' ~10 px at 384 x 512, but not at 1/4
  size (docs/benchmarks.md, table 14).

  Args:
    predict: (frames1, frames2) -> [B, h, w, 2] flow at the frames' own size h x w (any size).
    frames1, frames2: [B, H, W, 3] float frames.
    factor: integer >= 1; 1 predicts once, at full resolution.

  Returns:
    numpy [B, H, W, 2] flow in pixels of the frames.
  """
  if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
    raise ValueError(f"coarse factor must be an integer >= 1 (1 = full resolution only), got {factor!r}")
  if factor == 1:
    return np.asarray(predict(frames1, frames2))
  batch, height, width, channels = frames1.shape
  size = (batch, max(1, round(height / factor)), max(1, round(width / factor)), channels)
  small = lambda frames: np.asarray(jax.image.resize(jnp.asarray(frames, jnp.float32), size, "linear"))
  coarse = np.stack([resize_flow_field(f, (height, width)) for f in np.asarray(predict(small(frames1), small(frames2)))])
  warped = np.asarray(warp_edge(jnp.asarray(frames2, jnp.float32), jnp.asarray(coarse)))
  residual = np.asarray(predict(frames1, warped), np.float32)
  return residual + np.asarray(warp_edge(jnp.asarray(coarse), jnp.asarray(residual)))


def predict_flows(predictor, variables, frames1, frames2, multiple, mode="pad", margin=0, coarse_factor=1):
  """Forward flows [B, H, W, 2] of [B, H, W, 3] frame pairs of any size: the network on the stride grid
  (`to_stride_grid` modes and margin), `coarse_to_fine` from frames downscaled by `coarse_factor`."""

  def at_own_size(firsts, seconds):
    grid, undo = to_stride_grid(np.concatenate([firsts, seconds]), multiple, mode, margin)
    return undo(predictor(variables, grid[:len(firsts)], grid[len(firsts):]))

  return coarse_to_fine(at_own_size, np.asarray(frames1), np.asarray(frames2), coarse_factor)


def predict_flow(predictor, variables, frame1, frame2, multiple, mode="pad", margin=0, coarse_factor=1):
  """Forward flow [H, W, 2] of one pair of [H, W, 3] frames (`predict_flows`)."""
  return predict_flows(predictor, variables, np.asarray(frame1)[None], np.asarray(frame2)[None], multiple, mode,
                       margin, coarse_factor)[0]


def _slope_sums(flow, gt, valid=None):
  """(sum flow . gt, sum gt . gt) over (valid) pixels: the sufficient statistics of `flow_slope`."""
  flow, gt = np.asarray(flow, np.float64), np.asarray(gt, np.float64)
  if valid is not None:
    flow, gt = flow[np.asarray(valid, bool)], gt[np.asarray(valid, bool)]
  return float(np.sum(flow * gt)), float(np.sum(gt * gt))


def flow_slope(flow, gt, valid=None):
  """Least-squares slope s of `flow` ~ s * `gt` over (valid) pixels and both components: 1 = not shrunk."""
  dot, norm = _slope_sums(flow, gt, valid)
  return dot / max(norm, 1e-12)


def flow_metrics(flow, gt, valid=None):
  """{"epe", "fl"} of one predicted flow against ground truth."""
  return {"epe": endpoint_error(flow, gt, valid), "fl": flow_outliers(flow, gt, valid)}


def evaluate_pairs(predictor, variables, pairs, multiple, mode="pad", margin=0, fill_predictor=None, coarse_factor=1):
  """EPE and Fl-all over an iterable of (frame1, frame2, gt_flow, valid[, regions]), with the zero-flow baseline.

  `regions` (optional) is {name: [H, W] bool}: EPE restricted to each region is
  reported as "epe_<name>" (e.g. Sintel's matched / unmatched pixels).
  `predictor=None` evaluates the zero flow only (for baselines).
  `fill_predictor` (optional, `make_flow_predictor` with a fill radius): the
  row also gets "epe_filled" and "slope_filled" of its flow.
  `coarse_factor` > 1: every flow is predicted `coarse_to_fine` from frames
  downscaled by that factor.

  Returns:
    (row, first): row is a dict with "epe", "fl" (means over pairs of the
    per-pair values; NaN-skipping for regions absent from a pair), "zero_epe",
    "zero_fl", the region EPEs, "slope" (least-squares slope of the prediction
    against the truth over all pairs' valid pixels, `flow_slope`) and "pairs"; first is (frame1, frame2, predicted
    flow, gt_flow) of the first pair, for pictures.
  """
  rows, first = [], None
  sums = {"slope": [0.0, 0.0], "slope_filled": [0.0, 0.0]}
  for frame1, frame2, gt, valid, *regions in pairs:
    flow = (np.zeros_like(gt) if predictor is None
            else predict_flow(predictor, variables, frame1, frame2, multiple, mode, margin, coarse_factor))
    zero = flow_metrics(np.zeros_like(gt), gt, valid)
    row = {**flow_metrics(flow, gt, valid), "zero_epe": zero["epe"], "zero_fl": zero["fl"]}
    for name, region in (regions[0] if regions else {}).items():
      row[f"epe_{name}"] = endpoint_error(flow, gt, region if valid is None else region & valid)
    predictions = {"slope": flow}
    if fill_predictor is not None and predictor is not None:
      predictions["slope_filled"] = predict_flow(fill_predictor, variables, frame1, frame2, multiple, mode, margin,
                                                 coarse_factor)
      row["epe_filled"] = endpoint_error(predictions["slope_filled"], gt, valid)
    for name, prediction in predictions.items():
      pair_dot, pair_norm = _slope_sums(prediction, gt, valid)
      sums[name][0] += pair_dot
      sums[name][1] += pair_norm
    rows.append(row)
    if first is None:
      first = (frame1, frame2, flow, gt)
  if not rows:
    raise ValueError("no pairs to evaluate")
  keys = dict.fromkeys(k for r in rows for k in r)
  summary = {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}
  for name, (dot, norm) in sums.items():
    if name == "slope" or "epe_filled" in summary:
      summary[name] = dot / max(norm, 1e-12)
  summary["pairs"] = len(rows)
  return summary, first
