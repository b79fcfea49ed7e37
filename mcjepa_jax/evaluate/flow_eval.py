"""Flow evaluation: EPE of predicted flow against ground truth (DESIGN.md 6).

Frames are padded (edge replicate) to a multiple of the encoder stride, the
flow is predicted there and cropped back, so it is already at the original
resolution and no value rescaling is needed.
"""

import jax
import numpy as np


def endpoint_error(flow, gt, valid=None):
  """Mean ||flow - gt||_2 over valid pixels: [H, W, 2] x [H, W, 2] (x [H, W] bool) -> float."""
  error = np.linalg.norm(np.asarray(flow, np.float64) - np.asarray(gt, np.float64), axis=-1)
  if valid is None:
    return float(error.mean())
  valid = np.asarray(valid, bool)
  return float(error[valid].mean()) if valid.any() else float("nan")


def pad_to_multiple(images, multiple):
  """Edge-pads [B, H, W, C] at the bottom/right to multiples of `multiple`; returns (padded, (H, W))."""
  height, width = images.shape[1:3]
  pad_h, pad_w = -height % multiple, -width % multiple
  padded = np.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
  return padded, (height, width)


def make_flow_predictor(model):
  """jitted (variables, frames1, frames2) -> forward flow [B, H, W, 2] (H, W multiples of the stride)."""

  def predict(variables, frames1, frames2):
    video = model.apply(variables, frames1, frames2, method=model.video)
    return video["flow"][:frames1.shape[0]]

  return jax.jit(predict)


def predict_flow(predictor, variables, frame1, frame2, multiple):
  """Forward flow [H, W, 2] of one pair of [H, W, 3] frames of any size."""
  frames, (height, width) = pad_to_multiple(np.stack([frame1, frame2]), multiple)
  flow = predictor(variables, frames[:1], frames[1:])
  return np.asarray(flow)[0, :height, :width]


def evaluate_pairs(predictor, variables, pairs, multiple):
  """EPE over an iterable of (frame1, frame2, gt_flow, valid) with the zero-flow baseline.

  Returns:
    (row, first): row is a dict with "epe", "zero_epe" (means over pairs of
    per-pair EPE) and "pairs"; first is (frame1, frame2, predicted flow, gt_flow)
    of the first pair, for pictures.
  """
  epes, zeros, first = [], [], None
  for frame1, frame2, gt, valid in pairs:
    flow = predict_flow(predictor, variables, frame1, frame2, multiple)
    epes.append(endpoint_error(flow, gt, valid))
    zeros.append(endpoint_error(np.zeros_like(gt), gt, valid))
    if first is None:
      first = (frame1, frame2, flow, gt)
  return {"epe": float(np.mean(epes)), "zero_epe": float(np.mean(zeros)), "pairs": len(epes)}, first
