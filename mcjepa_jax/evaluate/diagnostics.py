"""Diagnostics of what the flow network has learned, on pairs with ground truth.

- `true_offset_share`: how often the cost volume of a pyramid level already
  points at the true displacement (features good for matching score high;
  features trained away from matching score lower than random ones).
- `level_contributions`: how much flow each estimator level adds, in input
  pixels (a level that adds nothing is dead weight).
- the least-squares slope of each level's flow against the truth (after
  upsampling to the input grid): where a shrunk flow is shrunk, and whether the
  finer levels take back what the coarser ones left.
Both are used by the regression tests of issue 12 and by `benchmarks/diagnose.py`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mcjepa_jax.evaluate.flow_eval import flow_slope
from mcjepa_jax.ops.correlation import correlation
from mcjepa_jax.ops.image import area_downsample
from mcjepa_jax.ops.warp import resize_flow


def flow_at_level(flow, level):
  """Ground-truth flow [B, H, W, 2] (input pixels) -> [B, H/2^l, W/2^l, 2] in pixels of level l (block mean)."""
  height, width = flow.shape[1:3]
  size = (height // 2**level, width // 2**level)
  return area_downsample(jnp.asarray(flow), size) / 2**level


def true_offset_share(source, target, flow, visible, radius):
  """Share of visible pixels whose rounded true offset has the largest correlation.

  Args:
    source, target: [B, h, w, C] features of frames t and t+1 at one level (target not warped).
    flow: [B, h, w, 2] true flow in pixels of that level.
    visible: [B, h, w] bool, pixels to count (visible and within `radius`).
    radius: correlation radius.

  Returns:
    (share in [0, 1], number of pixels counted).
  """
  cost = np.asarray(correlation(jnp.asarray(source), jnp.asarray(target), radius))
  best = np.argmax(cost, axis=-1)
  offset = np.rint(np.asarray(flow)).astype(int)
  in_range = np.all(np.abs(offset) <= radius, axis=-1)
  index = (offset[..., 1] + radius) * (2 * radius + 1) + offset[..., 0] + radius
  keep = np.asarray(visible, bool) & in_range
  if not keep.any():
    return float("nan"), 0
  return float(np.mean(best[keep] == index[keep])), int(keep.sum())


def level_contributions(level_flows, levels, output_size):
  """Mean |flow added| by each estimator level, in input pixels.

  Args:
    level_flows: {level: [B, h, w, 2]} the head's per-level flows (pixels of their grid).
    levels: the head's levels, coarse to fine.
    output_size: (H, W) of the input.

  Returns:
    {level: mean Euclidean norm of f_l - upsample(f_{l+1}), after upsampling both to the input grid}.
  """
  out, previous = {}, None
  for level in levels:
    flow = resize_flow(jnp.asarray(level_flows[level]), output_size)
    added = flow if previous is None else flow - previous
    out[level] = float(jnp.mean(jnp.linalg.norm(added, axis=-1)))
    previous = flow
  return out


def diagnose(model, variables, samples, radius):
  """Per-level true-offset shares of the encoder's pyramid (what the shared features offer for
  matching, before any head option transforms them) and per-level flow contributions.

  Args:
    model: `MCJEPA`.
    variables: its variables.
    samples: dicts with "frame1", "frame2", "flow", "visible".
    radius: correlation radius for the shares.

  Returns:
    {"share": {level: float}, "contribution": {level: float}, "slope": {level: float}} (forward
    flows against the true flow, at the input resolution).
  """
  frames1 = jnp.asarray(np.stack([s["frame1"] for s in samples]))
  frames2 = jnp.asarray(np.stack([s["frame2"] for s in samples]))
  flow = np.stack([s["flow"] for s in samples])
  visible = np.stack([s["visible"] for s in samples])
  video = jax.jit(lambda v, a, b: model.apply(v, a, b, method=model.video))(variables, frames1, frames2)
  batch = frames1.shape[0]
  levels = tuple(model.flow_head.levels)
  shares = {}
  for level in levels:
    features = video["pyramid"][level - 1]
    level_visible = np.asarray(area_downsample(jnp.asarray(visible[..., None]), features.shape[1:3]))[..., 0] > 0.99
    shares[level], _ = true_offset_share(features[:batch], features[batch:], flow_at_level(flow, level),
                                         level_visible, radius)
  contributions = level_contributions(video["flows"], levels, frames1.shape[1:3])
  slopes = {level: flow_slope(np.asarray(resize_flow(video["flows"][level][:batch], frames1.shape[1:3])), flow)
            for level in levels}
  return {"share": shares, "contribution": contributions, "slope": slopes}
