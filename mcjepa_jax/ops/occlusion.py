"""Forward-backward occlusion check (UnFlow), DESIGN.md section 4."""

import jax
import jax.numpy as jnp

from mcjepa_jax.ops.warp import warp


def forward_backward_occlusion(flow, flow_back, alpha1=0.01, alpha2=0.5):
  """Visibility mask of the frame that `flow` starts from.

  A pixel is visible (1) when following `flow` and then the backward flow found
  there brings it back: `|f + w(b, f)|^2 < alpha1 * (|f|^2 + |w(b, f)|^2) + alpha2`.
  Gradients are stopped: the mask weights losses, it is not learned through.

  Args:
    flow: [B, H, W, 2] flow from frame t to t+1.
    flow_back: [B, H, W, 2] flow from frame t+1 to t.
    alpha1: relative tolerance.
    alpha2: absolute tolerance in squared pixels.

  Returns:
    [B, H, W, 1] float mask, 1 = visible in both frames, 0 = occluded.
  """
  flow = jax.lax.stop_gradient(flow)
  back_at_target = warp(jax.lax.stop_gradient(flow_back), flow)
  mismatch = jnp.sum((flow + back_at_target)**2, axis=-1, keepdims=True)
  magnitude = jnp.sum(flow**2, axis=-1, keepdims=True) + jnp.sum(back_at_target**2, axis=-1, keepdims=True)
  return (mismatch < alpha1 * magnitude + alpha2).astype(flow.dtype)


def fill_occluded_flow(flow, flow_back, image, radius, color_sigma, alpha1=0.01, alpha2=0.5):
  """Replaces the flow of occluded pixels by a colour-weighted average of nearby visible flow.

  A pixel is filled when it fails `forward_backward_occlusion` and its flow
  still lands inside the frame (pixels that leave the frame fail the check
  too, but their flow is what the network saw them do). Its new flow is the
  average of the visible pixels' flow q within a (2r+1)^2 window, weighted by
  exp(-|I_p - I_q|^2 / color_sigma^2 - |p - q|^2 / (2 r^2)) on `image` (the
  frame the flow starts from): pixels that frame t+1 covers get the motion
  of the surface they belong to in frame t, not that of what covers them.
  Where no visible pixel is in the window the flow is kept. Windows do not
  wrap around the border.

  Args:
    flow: [B, H, W, 2] flow from frame t to t+1.
    flow_back: [B, H, W, 2] flow from frame t+1 to t.
    image: [B, H, W, C] frame t (the demo's frames: RGB in [0, 1]).
    radius: window radius r in pixels (0 returns `flow`).
    color_sigma: colour scale of the weights, in `image` units.
    alpha1, alpha2: the occlusion check's tolerances.

  Returns:
    [B, H, W, 2] flow, equal to `flow` at visible and out-of-frame pixels.
  """
  if radius <= 0:
    return flow
  flow, flow_back = jax.lax.stop_gradient(flow), jax.lax.stop_gradient(flow_back)
  _, height, width, _ = flow.shape
  visible = forward_backward_occlusion(flow, flow_back, alpha1, alpha2)
  target_x = jnp.arange(width, dtype=flow.dtype)[None, None, :] + flow[..., 0]
  target_y = jnp.arange(height, dtype=flow.dtype)[None, :, None] + flow[..., 1]
  lands_inside = (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
  to_fill = (visible[..., 0] == 0) & lands_inside

  pad = ((0, 0), (radius, radius), (radius, radius), (0, 0))
  # Padding carries zero visibility, so the padded cells never contribute.
  padded = jnp.pad(jnp.concatenate([flow * visible, visible, image.astype(flow.dtype)], axis=-1), pad)
  offsets = jnp.asarray([(dy, dx) for dy in range(2 * radius + 1) for dx in range(2 * radius + 1)], jnp.int32)

  def accumulate(sums, offset):
    window = jax.lax.dynamic_slice(padded, (0, offset[0], offset[1], 0), (flow.shape[0], height, width,
                                                                         padded.shape[-1]))
    distance2 = jnp.sum((window[..., 3:] - image) ** 2, axis=-1)
    spatial2 = jnp.sum((offset - radius).astype(flow.dtype) ** 2)
    weight = window[..., 2] * jnp.exp(-distance2 / color_sigma**2 - spatial2 / (2.0 * radius**2))
    return (sums[0] + weight[..., None] * window[..., :2], sums[1] + weight), None

  zeros = jnp.zeros(flow.shape[:3], flow.dtype)
  (numerator, denominator), _ = jax.lax.scan(accumulate, (jnp.zeros_like(flow), zeros), offsets)
  has_neighbours = denominator > 1e-12
  filled = numerator / jnp.where(has_neighbours, denominator, 1.0)[..., None]
  return jnp.where((to_fill & has_neighbours)[..., None], filled, flow)
