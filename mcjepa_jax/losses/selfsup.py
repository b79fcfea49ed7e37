"""Augmentation self-supervision (ARFlow, Liu et al. 2020): an option beyond the paper.

The flow predicted on a frame pair, stopped from the gradient, supervises the
flow predicted on a zoomed crop of the same pair. Pixels near the crop's
border move out of the cropped frames, where the photometric loss says
nothing; the teacher, which saw them inside the full frames, does.
"""

import jax
import jax.numpy as jnp

from mcjepa_jax.losses.flow import masked_mean, visibility_mask
from mcjepa_jax.ops.warp import zoom_crop


def sample_zoom(rng, batch, size, min_scale):
  """Random crop windows: a scale in [min_scale, 1] and an origin that keeps the window inside.

  Args:
    rng: PRNG key.
    batch: number of frame pairs B.
    size: (H, W) of the frames.
    min_scale: smallest window side as a fraction of the frame.

  Returns:
    (offset [B, 2] in pixels (x, y), scale [B]).
  """
  scale_key, offset_key = jax.random.split(rng)
  scale = jax.random.uniform(scale_key, (batch,), minval=min_scale, maxval=1.0)
  height, width = size
  room = (1.0 - scale)[:, None] * jnp.asarray([width - 1, height - 1], jnp.float32)
  offset = jax.random.uniform(offset_key, (batch, 2)) * room
  return offset, scale


def zoomed_pair(frames1, frames2, offset, scale):
  """Both frames of each pair cropped with the same window: ([B, H, W, 3], [B, H, W, 3])."""
  return zoom_crop(frames1, offset, scale), zoom_crop(frames2, offset, scale)


def zoomed_targets(flow, offset, scale, alpha1, alpha2):
  """The teacher's stacked flows and visibility carried onto the cropped grid.

  A pixel p of the crop is pixel q = offset + scale * p of the full frame; the
  same window crops both frames, so its flow is f(q) / scale.

  Args:
    flow: [2B, H, W, 2] stacked teacher flows (forward rows first).
    offset, scale: the B windows (`sample_zoom`), shared by both directions.
    alpha1, alpha2: forward-backward check tolerances for the teacher's mask.

  Returns:
    (target [2B, H, W, 2], mask [2B, H, W, 1]), both stop-gradient.
  """
  flow = jax.lax.stop_gradient(flow)
  visible = visibility_mask(flow, alpha1, alpha2)
  offset2 = jnp.concatenate([offset, offset], axis=0)
  scale2 = jnp.concatenate([scale, scale], axis=0)
  target = zoom_crop(flow, offset2, scale2) / scale2[:, None, None, None]
  mask = (zoom_crop(visible, offset2, scale2) > 0.5).astype(flow.dtype)
  return target, mask


def augmentation_loss(student, target, mask, eps, exponent):
  """Mean over the teacher-visible pixels of (|student - target| + eps)^exponent (ARFlow's robust L1).

  Args:
    student: [2B, H, W, 2] flows predicted on the cropped pair.
    target, mask: `zoomed_targets`.
    eps, exponent: robust penalty parameters.

  Returns:
    scalar.
  """
  penalty = (jnp.abs(student - target) + eps)**exponent
  return masked_mean(penalty, mask, normalize=True)
