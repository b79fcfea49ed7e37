"""Losses of MC-JEPA: flow (reg, rec, smooth, cycle, vc), VICReg, and their sum."""

from mcjepa_jax.losses.flow import (cycle_loss, feature_regression_loss, photometric_loss, pyramid_photometric_loss,
                                    smoothness_loss, visibility_mask)
from mcjepa_jax.losses.objective import content_loss, flow_loss, mcjepa_loss
from mcjepa_jax.losses.vc import pyramid_vc_loss, vc_term
from mcjepa_jax.losses.vicreg import covariance_loss, variance_loss, vicreg_loss

__all__ = [
    "content_loss", "covariance_loss", "cycle_loss", "feature_regression_loss", "flow_loss", "mcjepa_loss",
    "photometric_loss", "pyramid_photometric_loss", "pyramid_vc_loss", "smoothness_loss", "variance_loss",
    "vc_term", "vicreg_loss", "visibility_mask",
]
