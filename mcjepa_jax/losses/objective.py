"""The MC-JEPA objective: flow_weight * L_flow + content_weight * L_content (DESIGN.md 1, 4)."""

import jax
import jax.numpy as jnp

from mcjepa_jax.losses.flow import (cycle_loss, feature_regression_loss, photometric_loss, pyramid_photometric_loss,
                                    smoothness_loss)
from mcjepa_jax.losses.ijepa import ijepa_loss
from mcjepa_jax.losses.vc import pyramid_vc_loss
from mcjepa_jax.losses.vicreg import vicreg_loss


def photometric_objective(images, flow, cfg, occlusion_strength=1.0, wide=None):
  """The terms of L_flow that see only the images and the full-resolution flow: rec + smooth.

  This is what a flow field is judged by, network or not: `calibration.fit_free_flow`
  optimises a free flow field against it to check that the truth is a minimum.

  Args:
    images: stacked [2B, H, W, 3] frames in [0, 1] ([I_t; I_t+1]).
    flow: stacked [2B, H, W, 2] flows in pixels (forward rows first).
    cfg: `config.loss`.
    occlusion_strength: how fully occlusion masks apply.
    wide: optional stacked frames around the crop and their validity, for
      full-image warping (`photometric_loss`).

  Returns:
    (weighted sum, {"rec": ..., "smooth": ...} unweighted).
  """
  occ = cfg.occlusion
  terms = {
      "rec": photometric_loss(images, flow, cfg.rec.l1, cfg.rec.l2, cfg.rec.ssim, cfg.rec.census,
                              cfg.rec.census_patch, occ.alpha1, occ.alpha2, occlusion_strength,
                              cfg.rec.exclude_out_of_frame, cfg.rec.normalize, wide),
      "smooth": smoothness_loss(flow, images, cfg.smooth.order, cfg.smooth.edge_weight, cfg.smooth.units),
  }
  return cfg.rec.weight * terms["rec"] + cfg.smooth.weight * terms["smooth"], terms


def flow_loss(video, frames1, frames2, cfg, vc_scale=1.0, occlusion_strength=1.0, wide=None):
  """L_flow = reg + rec + smooth + cycle + vc [+ rec_pyramid], each with its weight from `cfg`.

  Args:
    video: output of `MCJEPA.video` (stacked pyramid, flows, pooled).
    frames1, frames2: [B, H, W, 3] the frames in [0, 1].
    cfg: `config.loss`.
    vc_scale: warm-up factor in [0, 1] multiplying the VC weight.
    occlusion_strength: how fully occlusion masks apply (0 before they switch on).
    wide: optional ([B, H + 2m, W + 2m, 3] x 2, [B, H + 2m, W + 2m, 1]): the frames
      around the crop and their validity (`augment_pair`), for full-image warping.

  Returns:
    (L_flow, terms) with every unweighted term.
  """
  images = jnp.concatenate([frames1, frames2], axis=0)
  occ = cfg.occlusion
  if wide is not None:
    wide1, wide2, valid = wide
    wide = (jnp.concatenate([wide1, wide2], axis=0), jnp.concatenate([valid, valid], axis=0))
  total, terms = photometric_objective(images, video["flow"], cfg, occlusion_strength, wide)
  # Without train_features the feature terms judge the flow only: the encoder gets no gradient
  # from them, so they cannot lower themselves by making the features flat (our choice).
  features = lambda train: video["pyramid"] if train else jax.lax.stop_gradient(video["pyramid"])
  terms.update({
      "reg": feature_regression_loss(features(cfg.reg.train_features), video["flows"], cfg.reg.norm, occ.alpha1,
                                     occ.alpha2, occlusion_strength),
      "cycle": cycle_loss(features(cfg.cycle.train_features), video["flows"]),
      "vc": pyramid_vc_loss(video["pyramid"], video["pooled"], cfg.vc.level_weights, cfg.vc.pooled_weights,
                            cfg.vc.eps),
  })
  total = (total + cfg.reg.weight * terms["reg"] + cfg.cycle.weight * terms["cycle"]
           + cfg.vc.weight * vc_scale * terms["vc"])
  if cfg.rec.pyramid_weight:
    terms["rec_pyramid"] = pyramid_photometric_loss(images, video["flows"], cfg.rec.l1, cfg.rec.l2, cfg.rec.ssim,
                                                    occ.alpha1, occ.alpha2, occlusion_strength,
                                                    cfg.rec.exclude_out_of_frame, cfg.rec.normalize)
    total = total + cfg.rec.pyramid_weight * terms["rec_pyramid"]
  return total, terms


def content_loss(content, cfg):
  """L_content: VICReg(z1, z2) with `cfg.vicreg` weights, or the I-JEPA prediction error
  (`cfg.content.name`); returns (loss, terms)."""
  if cfg.get("content", {}).get("name", "vicreg") == "ijepa":
    return ijepa_loss(content["predictions"], content["targets"])
  z1, z2 = content["embeddings"]
  v = cfg.vicreg
  return vicreg_loss(z1, z2, v.sim_weight, v.std_weight, v.cov_weight, v.eps)


def mcjepa_loss(outputs, batch, cfg, flow_on=1.0, vc_scale=1.0, occlusion_strength=1.0):
  """Total loss and every term for logging.

  Args:
    outputs: `MCJEPA.__call__` output ({"video": ..., "content": ...}).
    batch: dict with "frames1", "frames2" [B, H, W, 3] (views are only used by the model) and,
      for full-image warping, "wide1", "wide2", "wide_valid" (`augment_pair`).
    cfg: `config.loss`.
    flow_on: 0 before the flow loss switches on, 1 after (a traced value: no recompile).
    vc_scale: VC warm-up factor.
    occlusion_strength: 0 before occlusion masking switches on, ramping to 1.

  Returns:
    (total, terms): terms has "flow/<name>", "content/<name>", "flow", "content", "total".
  """
  wide = (batch["wide1"], batch["wide2"], batch["wide_valid"]) if "wide1" in batch else None
  l_flow, flow_terms = flow_loss(outputs["video"], batch["frames1"], batch["frames2"], cfg, vc_scale,
                                 occlusion_strength, wide)
  l_content, content_terms = content_loss(outputs["content"], cfg)
  total = cfg.flow_weight * flow_on * l_flow + cfg.content_weight * l_content
  terms = {f"flow/{k}": v for k, v in flow_terms.items()}
  terms.update({f"content/{k}": v for k, v in content_terms.items()})
  terms.update({"flow": l_flow, "content": l_content, "total": total})
  return total, terms
