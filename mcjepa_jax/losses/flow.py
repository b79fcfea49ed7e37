"""Self-supervised flow losses, DESIGN.md section 4.

Every function works on "stacked" batches: rows :B go from frame t to t+1 and
rows B: from t+1 to t, so `swap_halves` turns a source into its target and a
flow into the opposite-direction flow. Each loss is thereby applied to both
directions at once.
"""

import jax.numpy as jnp

from mcjepa_jax.ops.directions import swap_halves
from mcjepa_jax.ops.image import area_downsample, census_transform, image_gradients, soft_hamming, ssim_dissimilarity
from mcjepa_jax.ops.occlusion import forward_backward_occlusion
from mcjepa_jax.ops.warp import warp


def visibility_mask(flow, alpha1, alpha2, strength=1.0):
  """Forward-backward visibility of each source pixel for stacked flows.

  Args:
    flow: [2B, H, W, 2] stacked flows (forward rows first).
    alpha1, alpha2: occlusion check tolerances.
    strength: 0 treats every pixel as visible, 1 applies the check fully.
      Masking from the first step lets an untrained head push all flow off
      the image, mark everything occluded and zero the loss (UFlow and ARFlow
      also switch occlusion masking on late), so training ramps this.

  Returns:
    [2B, H, W, 1] mask, 1 = visible (stop-gradient).
  """
  visible = forward_backward_occlusion(flow, swap_halves(flow), alpha1, alpha2)
  return 1.0 - strength * (1.0 - visible)


def _distance(diff, norm):
  if norm == "l1":
    return jnp.abs(diff)
  if norm == "l2":
    return diff**2
  raise ValueError(f"config.loss.reg.norm: unknown norm {norm!r} (known: 'l1', 'l2')")


def feature_regression_loss(pyramid, flows, norm, alpha1, alpha2, occlusion_strength=1.0):
  """L_reg = sum_l mean(O * |X_t^(l) - w(X_t+1^(l), f^(l))|).

  Args:
    pyramid: sequence of stacked [2B, H_l, W_l, C_l], level l at index l - 1.
    flows: {level: stacked [2B, H_l, W_l, 2]}.
    norm: "l1" (public reimplementation) or "l2" (paper).
    alpha1, alpha2: occlusion check tolerances.
    occlusion_strength: see `visibility_mask`.

  Returns:
    scalar.
  """
  loss = 0.0
  for level, flow in flows.items():
    source = pyramid[level - 1]
    warped = warp(swap_halves(source), flow)
    mask = visibility_mask(flow, alpha1, alpha2, occlusion_strength)
    loss = loss + jnp.mean(mask * _distance(source - warped, norm))
  return loss


def photometric_loss(images, flow, l1_weight, l2_weight, ssim_weight, census_weight, census_patch,
                     alpha1, alpha2, occlusion_strength=1.0):
  """L_rec = mean(O * d(I_t, w(I_t+1, f))), d = a*L1 + b*L2 + c*(1-SSIM)/2 [+ census].

  Args:
    images: stacked [2B, H, W, 3] frames in [0, 1] ([I_t; I_t+1]).
    flow: stacked [2B, H, W, 2] full-resolution flows.
    l1_weight, l2_weight, ssim_weight: mixing weights a, b, c.
    census_weight: weight of the UFlow census term (0 disables it).
    census_patch: census neighbourhood side.
    alpha1, alpha2, occlusion_strength: see `visibility_mask`.

  Returns:
    scalar.
  """
  warped = warp(swap_halves(images), flow)
  mask = visibility_mask(flow, alpha1, alpha2, occlusion_strength)
  diff = images - warped
  distance = 0.0
  if l1_weight:
    distance = distance + l1_weight * jnp.abs(diff)
  if l2_weight:
    distance = distance + l2_weight * diff**2
  if ssim_weight:
    distance = distance + ssim_weight * ssim_dissimilarity(images, warped)
  loss = jnp.mean(mask * distance)
  if census_weight:
    hamming = soft_hamming(census_transform(images, census_patch),
                           census_transform(warped, census_patch))
    # UFlow's robust penalty (|x| + 0.01)^0.4 of the soft Hamming distance.
    loss = loss + census_weight * jnp.mean(mask * (jnp.abs(hamming) + 0.01)**0.4)
  return loss


def pyramid_photometric_loss(images, flows, l1_weight, l2_weight, ssim_weight, alpha1, alpha2,
                              occlusion_strength=1.0):
  """Sum over estimated levels of `photometric_loss` on images area-pooled to each level's grid.

  The full-resolution photometric gradient only sees a few pixels around each
  pixel, so it says little about displacements larger than the texture scale.
  On pooled images the same motion is a fraction of a pixel, which gives the
  coarse estimators a direct, well-posed signal (the multi-scale photometric
  losses of DSTFlow / ARFlow). Our choice, not the paper's; off by default.

  Args:
    images: stacked [2B, H, W, 3] frames in [0, 1].
    flows: {level: stacked [2B, H_l, W_l, 2]} in pixels of each level's grid.
    other args: see `photometric_loss` (no census: pooled images are too small for its patch).

  Returns:
    scalar.
  """
  loss = 0.0
  for flow in flows.values():
    pooled = area_downsample(images, flow.shape[1:3])
    loss = loss + photometric_loss(pooled, flow, l1_weight, l2_weight, ssim_weight, 0.0, 0, alpha1, alpha2,
                                   occlusion_strength)
  return loss


def smoothness_loss(flow, images, order, edge_weight, flow_scale=1.0):
  """Edge-aware smoothness: exp(-edge_weight * |grad I|) * |grad^order (f / flow_scale)|.

  Args:
    flow: [N, H, W, 2] in pixels.
    images: [N, H, W, 3] images the flow is defined on, in [0, 1].
    order: 1 (first differences) or 2 (second differences).
    edge_weight: how fast image edges switch the penalty off.
    flow_scale: the flow unit the smoothness weight was tuned for (PWC-Net
      style networks predict flow in units of 20 px).

  Returns:
    scalar, mean of the x and y parts.
  """
  if order not in (1, 2):
    raise ValueError(f"config.loss.smooth.order must be 1 or 2, got {order!r}")
  # Image gradients at stride `order` cover the same pixels as the flow derivative.
  image_dx, image_dy = image_gradients(images, stride=order)
  weight_x = jnp.exp(-edge_weight * jnp.mean(jnp.abs(image_dx), axis=-1, keepdims=True))
  weight_y = jnp.exp(-edge_weight * jnp.mean(jnp.abs(image_dy), axis=-1, keepdims=True))
  flow_dx, flow_dy = image_gradients(flow / flow_scale)
  if order == 2:
    flow_dx, _ = image_gradients(flow_dx)
    _, flow_dy = image_gradients(flow_dy)
  return (jnp.mean(weight_x * jnp.abs(flow_dx)) + jnp.mean(weight_y * jnp.abs(flow_dy))) / 2


def cycle_loss(pyramid, flows):
  """L_cycle = sum_l mean(|X_t - w(w(X_t, f_t+1->t), f_t->t+1)|^2).

  Warping X_t by the backward flow approximates X_t+1; warping that back by
  the forward flow must give X_t again.

  Args:
    pyramid: sequence of stacked [2B, H_l, W_l, C_l].
    flows: {level: stacked [2B, H_l, W_l, 2]}.

  Returns:
    scalar.
  """
  loss = 0.0
  for level, flow in flows.items():
    source = pyramid[level - 1]
    there = warp(source, swap_halves(flow))
    back = warp(there, flow)
    loss = loss + jnp.mean((source - back)**2)
  return loss
