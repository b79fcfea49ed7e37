"""Self-supervised flow losses, DESIGN.md section 4.

Every function works on "stacked" batches: rows :B go from frame t to t+1 and
rows B: from t+1 to t, so `swap_halves` turns a source into its target and a
flow into the opposite-direction flow. Each loss is thereby applied to both
directions at once.
"""

import jax
import jax.numpy as jnp

from mcjepa_jax.ops.directions import swap_halves
from mcjepa_jax.ops.image import area_downsample, census_transform, image_gradients, soft_hamming, ssim_dissimilarity
from mcjepa_jax.ops.occlusion import forward_backward_occlusion
from mcjepa_jax.ops.warp import VALID_FRACTION, warp, warp_with_mask


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


def photometric_mask(flow, alpha1, alpha2, occlusion_strength=1.0, in_frame=None):
  """Which source pixels the photometric loss may compare, for stacked flows.

  Args:
    flow: [2B, H, W, 2] stacked flows.
    alpha1, alpha2, occlusion_strength: see `visibility_mask`.
    in_frame: optional [2B, H, W, 1] validity of the warp (`warp_with_mask`):
      pixels whose flow leaves the other frame are dropped too (their warp
      reads zeros, so no flow can explain them; UFlow and ARFlow drop them).
      Always applied in full, from the first step.

  Returns:
    [2B, H, W, 1] weights in [0, 1] (stop-gradient).
  """
  mask = visibility_mask(flow, alpha1, alpha2, occlusion_strength)
  return mask if in_frame is None else mask * in_frame


def masked_mean(values, mask, normalize):
  """Mean of `values` [N, H, W, C] weighted by `mask` [N, H, W, 1].

  normalize=False: mean(mask * values) over every element (the paper's
  mean(O * d)): masked pixels count as zeros, so the loss shrinks as more
  pixels are masked. normalize=True: divided by the mask's sum instead (UFlow,
  ARFlow), so the loss is the mean over the pixels that count and masking a
  pixel neither rewards nor penalises the flow there.
  """
  if not normalize:
    return jnp.mean(mask * values)
  total = jnp.sum(mask * values)
  count = jnp.sum(jnp.broadcast_to(mask, values.shape))
  return total / jnp.maximum(jax.lax.stop_gradient(count), 1.0)


def photometric_loss(images, flow, l1_weight, l2_weight, ssim_weight, census_weight, census_patch,
                     alpha1, alpha2, occlusion_strength=1.0, exclude_out_of_frame=False, normalize=False,
                     wide=None):
  """L_rec = mean(O * d(I_t, w(I_t+1, f))), d = a*L1 + b*L2 + c*(1-SSIM)/2 [+ census].

  Args:
    images: stacked [2B, H, W, 3] frames in [0, 1] ([I_t; I_t+1]).
    flow: stacked [2B, H, W, 2] full-resolution flows.
    l1_weight, l2_weight, ssim_weight: mixing weights a, b, c.
    census_weight: weight of the UFlow census term (0 disables it).
    census_patch: census neighbourhood side.
    alpha1, alpha2, occlusion_strength: see `photometric_mask`.
    exclude_out_of_frame: drop pixels whose flow leaves the other frame.
    normalize: average over the unmasked pixels (`masked_mean`).
    wide: optional (frames [2B, H + 2m, W + 2m, 3], valid [2B, H + 2m, W + 2m, 1]):
      the stacked frames around the crop that `images` is (`augment_pair`'s
      "wide" keys). SMURF's full-image warping: the target is sampled from
      them, so a pixel that moves out of the crop but stays in the image is
      still compared. The forward-backward check needs the other direction's
      flow at the target, known only inside the crop, so it applies there.

  Returns:
    scalar.
  """
  if wide is None:
    warped, in_frame = warp_with_mask(swap_halves(images), flow)
    mask = photometric_mask(flow, alpha1, alpha2, occlusion_strength, in_frame if exclude_out_of_frame else None)
  else:
    wide_images, wide_valid = wide
    margin = (wide_images.shape[1] - images.shape[1]) // 2
    if wide_images.shape[1:3] != (images.shape[1] + 2 * margin, images.shape[2] + 2 * margin):
      raise ValueError(f"photometric_loss: wide frames {wide_images.shape} must extend the frames "
                       f"{images.shape} by the same margin on every side")
    # One gather samples the frames, their validity and the crop's own extent (its bilinear
    # weight inside the crop: the crop warp's validity).
    pad = ((0, 0), (margin, margin), (margin, margin), (0, 0))
    crop = jnp.pad(jnp.ones(images.shape[:3] + (1,), images.dtype), pad)
    sampled, _ = warp_with_mask(jnp.concatenate([swap_halves(wide_images), swap_halves(wide_valid), crop], axis=-1),
                                flow, origin=(margin, margin))
    channels = images.shape[-1]
    warped = sampled[..., :channels]
    in_frame, in_crop = (jax.lax.stop_gradient((sampled[..., i:i + 1] > VALID_FRACTION).astype(flow.dtype))
                         for i in (channels, channels + 1))
    checked = 1.0 - in_crop * (1.0 - visibility_mask(flow, alpha1, alpha2, occlusion_strength))
    mask = checked * in_frame if exclude_out_of_frame else checked
  diff = images - warped
  distance = 0.0
  if l1_weight:
    distance = distance + l1_weight * jnp.abs(diff)
  if l2_weight:
    distance = distance + l2_weight * diff**2
  if ssim_weight:
    distance = distance + ssim_weight * ssim_dissimilarity(images, warped)
  loss = masked_mean(distance, mask, normalize) if (l1_weight or l2_weight or ssim_weight) else 0.0
  if census_weight:
    hamming = soft_hamming(census_transform(images, census_patch),
                           census_transform(warped, census_patch))
    # UFlow's robust penalty (|x| + 0.01)^0.4 of the soft Hamming distance.
    loss = loss + census_weight * masked_mean((jnp.abs(hamming) + 0.01)**0.4, mask, normalize)
  return loss


def pyramid_photometric_loss(images, flows, l1_weight, l2_weight, ssim_weight, alpha1, alpha2,
                              occlusion_strength=1.0, exclude_out_of_frame=False, normalize=False):
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
                                   occlusion_strength, exclude_out_of_frame, normalize)
  return loss


SMOOTHNESS_UNITS = ("image", "pixel", "pwc")


def smoothness_loss(flow, images, order, edge_weight, units="image"):
  """Edge-aware smoothness: exp(-edge_weight * |grad I|) * |d^order f / dx^order|.

  Args:
    flow: [N, H, W, 2] in pixels.
    images: [N, H, W, 3] images the flow is defined on, in [0, 1].
    order: 1 (first differences) or 2 (second differences).
    edge_weight: how fast image edges switch the penalty off.
    units: what the derivative is measured in.
      "image": flow and positions both in units of the image's shorter side
        min(H, W), so the loss of a motion field does not change when the
        frames (or a pyramid level) are resized: first order is pixels of
        flow per pixel, second order is that per min(H, W)-th of the image.
      "pixel": pixel differences of pixel flow (UFlow's first order).
      "pwc": pixel differences of flow in PWC-Net's units of 20 px (the
        public MC-JEPA reimplementation).

  Returns:
    scalar, mean of the x and y parts.
  """
  if order not in (1, 2):
    raise ValueError(f"config.loss.smooth.order must be 1 or 2, got {order!r}")
  if units not in SMOOTHNESS_UNITS:
    raise ValueError(f"config.loss.smooth.units: unknown units {units!r} (known: {', '.join(SMOOTHNESS_UNITS)})")
  # Image gradients at stride `order` cover the same pixels as the flow derivative.
  image_dx, image_dy = image_gradients(images, stride=order)
  weight_x = jnp.exp(-edge_weight * jnp.mean(jnp.abs(image_dx), axis=-1, keepdims=True))
  weight_y = jnp.exp(-edge_weight * jnp.mean(jnp.abs(image_dy), axis=-1, keepdims=True))
  flow_dx, flow_dy = image_gradients(flow)
  if order == 2:
    flow_dx, _ = image_gradients(flow_dx)
    _, flow_dy = image_gradients(flow_dy)
  scale = {"image": float(min(flow.shape[1:3]))**(order - 1), "pixel": 1.0, "pwc": 1.0 / 20.0}[units]
  return scale * (jnp.mean(weight_x * jnp.abs(flow_dx)) + jnp.mean(weight_y * jnp.abs(flow_dy))) / 2


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
