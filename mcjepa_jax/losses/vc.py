"""Variance-covariance regularisation of the pyramid features (L_vc), DESIGN.md 4.

Without it, feature reconstruction is solved by constant features; VC keeps
every channel of every level spread out and decorrelated over batch and space.
"""

from mcjepa_jax.losses.vicreg import covariance_loss, variance_loss


def vc_term(features, var_weight, cov_weight, eps):
  """var_weight * variance_loss + cov_weight * covariance_loss over all positions.

  Args:
    features: [B, H, W, C] or [B, C]; every batch and spatial position is a sample.
    var_weight, cov_weight: weights of the two parts (a zero weight skips the work).
    eps: variance floor.

  Returns:
    scalar.
  """
  samples = features.reshape(-1, features.shape[-1])
  loss = 0.0
  if var_weight:
    loss = loss + var_weight * variance_loss(samples, eps)
  if cov_weight:
    loss = loss + cov_weight * covariance_loss(samples)
  return loss


def pyramid_vc_loss(pyramid, pooled, level_weights, pooled_weights, eps):
  """sum_l vc_term(X^(l)) + vc_term(pooled).

  Args:
    pyramid: sequence of [B, H_l, W_l, C_l], level l at index l - 1.
    pooled: [B, D] global representation.
    level_weights: per level (var_weight, cov_weight), same length as pyramid.
    pooled_weights: (var_weight, cov_weight) of the pooled representation.
    eps: variance floor.

  Returns:
    scalar.
  """
  if len(level_weights) != len(pyramid):
    raise ValueError(f"loss.vc.level_weights has {len(level_weights)} entries for "
                     f"{len(pyramid)} pyramid levels")
  loss = sum(vc_term(x, w_var, w_cov, eps) for x, (w_var, w_cov) in zip(pyramid, level_weights))
  return loss + vc_term(pooled, *pooled_weights, eps)
