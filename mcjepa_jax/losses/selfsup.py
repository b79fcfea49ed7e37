"""Augmentation self-supervision (ARFlow, Liu et al. 2020): an option beyond the paper.

The flow predicted on a frame pair, stopped from the gradient, supervises the
flow predicted on a zoomed crop of the same pair. Pixels near the crop's
border move out of the cropped frames, where the photometric loss says
nothing; the teacher, which saw them inside the full frames, does. ARFlow's
occlusion transform goes one step further: shapes pasted into the student's
second frame hide where some first-frame pixels go, so the student learns the
teacher's flow for pixels it cannot match, as at real occlusions. A moving
layer (our option) pastes the shapes into both frames with a known translation.
"""

import math

import jax
import jax.numpy as jnp

from mcjepa_jax.losses.flow import masked_mean, visibility_mask
from mcjepa_jax.ops.warp import warp_with_mask, zoom_crop


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


def _sample_ellipses(rng, batch, size, count, radius):
  """`count` random ellipses per frame: centres [B, N, 2] (x, y), semi-axes [B, N, 2] in pixels, angles [B, N]."""
  height, width = size
  centre_key, axes_key, angle_key = jax.random.split(rng, 3)
  centre = jax.random.uniform(centre_key, (batch, count, 2)) * jnp.asarray([width - 1, height - 1], jnp.float32)
  axes = jax.random.uniform(axes_key, (batch, count, 2), minval=radius[0], maxval=radius[1]) * min(height, width)
  angle = jax.random.uniform(angle_key, (batch, count), maxval=jnp.pi)
  return centre, axes, angle


def _inside_ellipses(centre, axes, angle, size):
  """[B, H, W, 1] in {0, 1}: the pixels inside any of each frame's ellipses (`_sample_ellipses`)."""
  height, width = size
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij")
  dx = xs[None, None] - centre[..., 0, None, None]
  dy = ys[None, None] - centre[..., 1, None, None]
  cos, sin = jnp.cos(angle)[..., None, None], jnp.sin(angle)[..., None, None]
  along = (cos * dx + sin * dy) / axes[..., 0, None, None]
  across = (-sin * dx + cos * dy) / axes[..., 1, None, None]
  return jnp.any(along**2 + across**2 <= 1.0, axis=1)[..., None].astype(jnp.float32)


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
  inside = _inside_ellipses(*_sample_ellipses(rng, batch, (height, width), count, radius), (height, width))
  inside = inside.astype(frames.dtype)
  donor = jnp.roll(frames, 1, axis=0)
  return frames * (1 - inside) + donor * inside, inside


def paste_moving_layer(rng, frames1, frames2, count, radius, motion):
  """Pastes one rigidly moving layer of `count` ellipses into both frames of each pair.

  Beyond ARFlow, whose occluders appear in the second frame only: the layer is
  another pair's first frame seen through the ellipses, at their place in
  frame 1 and moved by a random translation in frame 2. So the student sees a
  moving shape whose flow is known exactly (the translation), a sharp motion
  boundary around it, and background pixels that it covers, whose flow the
  teacher still knows from the clean pair (`moving_layer_targets`).

  Args:
    rng: PRNG key.
    frames1, frames2: [B, H, W, 3] the student's frames.
    count: ellipses in the layer (at least 1).
    radius: (smallest, largest) semi-axis as a fraction of min(H, W).
    motion: largest translation per axis as a fraction of min(H, W).

  Returns:
    (frames1 [B, H, W, 3], frames2 [B, H, W, 3], layer in frame 1 [B, H, W, 1],
    layer in frame 2 [B, H, W, 1], translation [B, 2] (x, y) in pixels).
  """
  batch, height, width, _ = frames1.shape
  ellipse_key, shift_key = jax.random.split(rng)
  centre, axes, angle = _sample_ellipses(ellipse_key, batch, (height, width), count, radius)
  reach = motion * min(height, width)
  shift = jax.random.uniform(shift_key, (batch, 2), minval=-reach, maxval=reach)
  inside1 = _inside_ellipses(centre, axes, angle, (height, width)).astype(frames1.dtype)
  inside2 = _inside_ellipses(centre + shift[:, None], axes, angle, (height, width)).astype(frames1.dtype)
  donor1 = jnp.roll(frames1, 1, axis=0)
  # The layer's frame-2 texture at p is its frame-1 texture at p - shift; the donor is edge-padded
  # so that a layer entering from outside the frame is not filled with black.
  margin = int(math.ceil(reach)) + 1
  padded = jnp.pad(donor1, ((0, 0), (margin, margin), (margin, margin), (0, 0)), mode="edge")
  back = jnp.broadcast_to(-shift[:, None, None, :], (batch, height, width, 2)).astype(frames1.dtype)
  donor2 = warp_with_mask(padded, back, origin=(margin, margin))[0]
  return (frames1 * (1 - inside1) + donor1 * inside1, frames2 * (1 - inside2) + donor2 * inside2,
          inside1, inside2, shift)


def moving_layer_targets(target, mask, inside1, inside2, shift):
  """The teacher's targets with the pasted layer's own flow where it is (`paste_moving_layer`).

  Forward rows take the translation on the layer's frame-1 pixels, backward rows
  its negative on the layer's frame-2 pixels, both exact (mask 1). Every other
  pixel keeps the teacher's flow and mask, also where the layer now covers or
  uncovers it: that is the lesson.

  Args:
    target, mask: [2B, H, W, 2], [2B, H, W, 1] (`zoomed_targets`, forward rows first).
    inside1, inside2, shift: from `paste_moving_layer`.

  Returns:
    (target [2B, H, W, 2], mask [2B, H, W, 1]).
  """
  layer = jnp.concatenate([inside1, inside2], axis=0)
  flow = jnp.concatenate([shift, -shift], axis=0)[:, None, None, :].astype(target.dtype)
  return target * (1 - layer) + flow * layer, jnp.maximum(mask, layer)


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
