"""VICReg statistics and loss, DESIGN.md section 4 (Bardes, Ponce, LeCun 2022).

The statistics are plain reductions over the leading axis. Under `jax.jit` on
a sharded global array they are therefore global-batch statistics: XLA inserts
the cross-device reductions, and the result equals one device holding the
whole batch.
"""

import jax.numpy as jnp


def variance_loss(z, eps):
  """mean_d relu(1 - sqrt(Var_d(z) + eps)), Var unbiased over rows.

  Args:
    z: [N, D] samples.
    eps: numerical floor inside the square root (VICReg: 1e-4).

  Returns:
    scalar; 1.0 for a constant z, 0 when every dimension has std >= 1.
  """
  std = jnp.sqrt(jnp.var(z, axis=0, ddof=1) + eps)
  return jnp.mean(jnp.maximum(1.0 - std, 0.0))


def covariance_loss(z):
  """sum of squared off-diagonal covariances / D, covariance unbiased over rows.

  With fewer samples than dimensions (VICReg's expander: a batch of N rows of
  D = 8192; N <= D / 2) the D x D covariance is never formed: the sum of its squares is the
  sum of the squares of the N x N Gram matrix of the centred rows
  (tr((X^T X)^2) = tr((X X^T)^2)), and the diagonal is the per-dimension sum of
  squares. Same value (float32 rounding), N^2 D instead of N D^2 work, and no
  D x D buffers in the step; with many samples per dimension (pyramid levels:
  B H W rows of C) the covariance is the smaller matrix and is used.

  Args:
    z: [N, D] samples.

  Returns:
    scalar; 0 for decorrelated dimensions.
  """
  num, dim = z.shape
  centred = z - jnp.mean(z, axis=0)
  # Only well below D: the difference of the two sums of squares then keeps its precision (the
  # off-diagonal part is at least D / (N - 1) - 1 times the diagonal one).
  if 2 * num <= dim:
    gram = centred @ centred.T
    diagonal = jnp.sum(centred**2, axis=0)
    squares = jnp.sum(gram**2) - jnp.sum(diagonal**2)
    return squares / (num - 1)**2 / dim
  cov = centred.T @ centred / (num - 1)
  off_diagonal = cov - jnp.diag(jnp.diag(cov))
  return jnp.sum(off_diagonal**2) / dim


def vicreg_loss(z1, z2, sim_weight, std_weight, cov_weight, eps):
  """VICReg loss of two embedding batches, as in the official implementation.

  Args:
    z1: [N, D] embeddings of view 1.
    z2: [N, D] embeddings of view 2 (row i is the same image as z1[i]).
    sim_weight, std_weight, cov_weight: paper 25, 25, 1.
    eps: variance floor (1e-4).

  Returns:
    (loss, terms) where terms holds the unweighted "invariance", "variance"
    and "covariance" values.
  """
  invariance = jnp.mean((z1 - z2)**2)
  variance = (variance_loss(z1, eps) + variance_loss(z2, eps)) / 2
  covariance = covariance_loss(z1) + covariance_loss(z2)
  loss = sim_weight * invariance + std_weight * variance + cov_weight * covariance
  return loss, {"invariance": invariance, "variance": variance, "covariance": covariance}
