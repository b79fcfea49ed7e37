"""Augmentation self-supervision (ARFlow, Liu et al. 2020): an option beyond the paper.

The flow predicted on a frame pair, stopped from the gradient, supervises the
flow predicted on a zoomed crop of the same pair. Pixels near the crop's
border move out of the cropped frames, where the photometric loss says
nothing; the teacher, which saw them inside the full frames, does. ARFlow's
occlusion transform goes one step further: shapes pasted into the student's
second frame hide where some first-frame pixels go, so the student learns the
teacher's flow for pixels it cannot match, as at real occlusions.
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


def paste_occluders(rng, frames, count, radius):
  """Pastes `count` random ellipses into each frame, filled with the next frame of the batch.

  The donor content is another image's texture at the same place, so an
  occluder is not told apart by its colour statistics.

  Args:
    rng: PRNG key.
    frames: [B, H, W, 3] (the student's second frames).
    count: ellipses per frame (0 returns the frames unchanged).
    radius: (smallest, largest) semi-axis as a fraction of min(H, W).

  Returns:
    (frames with the occluders [B, H, W, 3], occluder mask [B, H, W, 1] in {0, 1}).
  """
  batch, height, width, _ = frames.shape
  if not count:
    return frames, jnp.zeros((batch, height, width, 1), frames.dtype)
  centre_key, axes_key, angle_key = jax.random.split(rng, 3)
  centre = jax.random.uniform(centre_key, (batch, count, 2)) * jnp.asarray([width - 1, height - 1], jnp.float32)
  axes = jax.random.uniform(axes_key, (batch, count, 2), minval=radius[0], maxval=radius[1]) * min(height, width)
  angle = jax.random.uniform(angle_key, (batch, count), maxval=jnp.pi)
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij")
  dx = xs[None, None] - centre[..., 0, None, None]
  dy = ys[None, None] - centre[..., 1, None, None]
  cos, sin = jnp.cos(angle)[..., None, None], jnp.sin(angle)[..., None, None]
  along = (cos * dx + sin * dy) / axes[..., 0, None, None]
  across = (-sin * dx + cos * dy) / axes[..., 1, None, None]
  inside = jnp.any(along**2 + across**2 <= 1.0, axis=1)[..., None].astype(frames.dtype)
  donor = jnp.roll(frames, 1, axis=0)
  return frames * (1 - inside) + donor * inside, inside


def occluded_targets(mask, occluders):
  """The teacher mask with the pasted pixels of frame 2 dropped from the backward rows.

  A forward-row pixel whose target lies under an occluder keeps its teacher
  flow (that is the lesson); a backward-row pixel on an occluder shows content
  frame 1 never had, so no teacher flow applies to it.

  Args:
    mask: [2B, H, W, 1] teacher mask (`zoomed_targets`, forward rows first).
    occluders: [B, H, W, 1] from `paste_occluders`.

  Returns:
    [2B, H, W, 1].
  """
  keep = jnp.concatenate([jnp.ones_like(occluders), 1 - occluders], axis=0)
  return mask * keep


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
