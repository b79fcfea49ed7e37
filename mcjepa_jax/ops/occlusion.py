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
