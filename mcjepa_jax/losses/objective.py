"""The MC-JEPA objective: flow_weight * L_flow + content_weight * L_content (DESIGN.md 1, 4)."""

import jax.numpy as jnp

from mcjepa_jax.losses.flow import (cycle_loss, feature_regression_loss, photometric_loss, pyramid_photometric_loss,
                                    smoothness_loss)
from mcjepa_jax.losses.vc import pyramid_vc_loss
from mcjepa_jax.losses.vicreg import vicreg_loss


def flow_loss(video, frames1, frames2, cfg, vc_scale=1.0, occlusion_strength=1.0):
  """L_flow = reg + rec + smooth + cycle + vc [+ rec_pyramid], each with its weight from `cfg`.

  Args:
    video: output of `MCJEPA.video` (stacked pyramid, flows, pooled).
    frames1, frames2: [B, H, W, 3] the frames in [0, 1].
    cfg: `config.loss`.
    vc_scale: warm-up factor in [0, 1] multiplying the VC weight.
    occlusion_strength: how fully occlusion masks apply (0 before they switch on).

  Returns:
    (L_flow, terms) with every unweighted term.
  """
  images = jnp.concatenate([frames1, frames2], axis=0)
  occ = cfg.occlusion
  terms = {
      "reg": feature_regression_loss(video["pyramid"], video["flows"], cfg.reg.norm, occ.alpha1, occ.alpha2,
                                     occlusion_strength),
      "rec": photometric_loss(images, video["flow"], cfg.rec.l1, cfg.rec.l2, cfg.rec.ssim, cfg.rec.census,
                              cfg.rec.census_patch, occ.alpha1, occ.alpha2, occlusion_strength),
      "smooth": smoothness_loss(video["flow"], images, cfg.smooth.order, cfg.smooth.edge_weight,
                                cfg.smooth.flow_scale),
      "cycle": cycle_loss(video["pyramid"], video["flows"]),
      "vc": pyramid_vc_loss(video["pyramid"], video["pooled"], cfg.vc.level_weights, cfg.vc.pooled_weights,
                            cfg.vc.eps),
  }
  total = (cfg.reg.weight * terms["reg"] + cfg.rec.weight * terms["rec"] + cfg.smooth.weight * terms["smooth"]
           + cfg.cycle.weight * terms["cycle"] + cfg.vc.weight * vc_scale * terms["vc"])
  if cfg.rec.pyramid_weight:
    terms["rec_pyramid"] = pyramid_photometric_loss(images, video["flows"], cfg.rec.l1, cfg.rec.l2, cfg.rec.ssim,
                                                    occ.alpha1, occ.alpha2, occlusion_strength)
    total = total + cfg.rec.pyramid_weight * terms["rec_pyramid"]
  return total, terms


def content_loss(content, cfg):
  """L_content = VICReg(z1, z2) with `cfg.vicreg` weights; returns (loss, terms)."""
  z1, z2 = content["embeddings"]
  v = cfg.vicreg
  return vicreg_loss(z1, z2, v.sim_weight, v.std_weight, v.cov_weight, v.eps)


def mcjepa_loss(outputs, batch, cfg, flow_scale=1.0, vc_scale=1.0, occlusion_strength=1.0):
  """Total loss and every term for logging.

  Args:
    outputs: `MCJEPA.__call__` output ({"video": ..., "content": ...}).
    batch: dict with "frames1", "frames2" [B, H, W, 3] (views are only used by the model).
    cfg: `config.loss`.
    flow_scale: 0 before the flow loss switches on, 1 after (a traced value: no recompile).
    vc_scale: VC warm-up factor.
    occlusion_strength: 0 before occlusion masking switches on, 1 after.

  Returns:
    (total, terms): terms has "flow/<name>", "content/<name>", "flow", "content", "total".
  """
  l_flow, flow_terms = flow_loss(outputs["video"], batch["frames1"], batch["frames2"], cfg, vc_scale,
                                 occlusion_strength)
  l_content, content_terms = content_loss(outputs["content"], cfg)
  total = cfg.flow_weight * flow_scale * l_flow + cfg.content_weight * l_content
  terms = {f"flow/{k}": v for k, v in flow_terms.items()}
  terms.update({f"content/{k}": v for k, v in content_terms.items()})
  terms.update({"flow": l_flow, "content": l_content, "total": total})
  return total, terms
