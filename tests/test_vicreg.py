"""VICReg and the pyramid VC regulariser against direct transcriptions (DESIGN.md 4)."""

import jax
import jax.numpy as jnp
import numpy as np

from mcjepa_jax.losses import covariance_loss, pyramid_vc_loss, vc_term, vicreg_loss


def numpy_vicreg(x, y, sim=25.0, std=25.0, cov=1.0, eps=1e-4):
  """The VICReg paper's algorithm 1, written out in float64 numpy."""
  x, y = x.astype(np.float64), y.astype(np.float64)
  n, d = x.shape
  repr_loss = np.mean((x - y)**2)
  x = x - x.mean(axis=0)
  y = y - y.mean(axis=0)
  std_x = np.sqrt(x.var(axis=0, ddof=1) + eps)
  std_y = np.sqrt(y.var(axis=0, ddof=1) + eps)
  std_loss = np.mean(np.maximum(1 - std_x, 0)) / 2 + np.mean(np.maximum(1 - std_y, 0)) / 2
  cov_x = x.T @ x / (n - 1)
  cov_y = y.T @ y / (n - 1)
  off = lambda m: m[~np.eye(d, dtype=bool)]
  cov_loss = np.sum(off(cov_x)**2) / d + np.sum(off(cov_y)**2) / d
  return sim * repr_loss + std * std_loss + cov * cov_loss


def test_matches_numpy_transcription():
  rng = np.random.default_rng(0)
  for scale in (0.3, 1.0, 2.0):
    x = (rng.normal(size=(32, 16)) * scale).astype(np.float32)
    y = (x + rng.normal(size=x.shape) * 0.5).astype(np.float32)
    loss, _ = vicreg_loss(jnp.asarray(x), jnp.asarray(y), 25.0, 25.0, 1.0, 1e-4)
    np.testing.assert_allclose(float(loss), numpy_vicreg(x, y), rtol=1e-5)


def test_constant_embedding_gets_full_variance_penalty():
  z = jnp.ones((16, 8)) * 3.0
  loss, terms = vicreg_loss(z, z, 25.0, 25.0, 1.0, 1e-4)
  np.testing.assert_allclose(float(terms["variance"]), 1.0 - np.sqrt(1e-4), rtol=1e-6)
  assert float(terms["invariance"]) == 0.0 and float(terms["covariance"]) == 0.0
  np.testing.assert_allclose(float(loss), 25.0 * (1.0 - np.sqrt(1e-4)), rtol=1e-6)


def test_decorrelated_unit_variance_embedding_has_no_penalty():
  n, d = 64, 8
  q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(n, d)))
  # Orthonormal columns orthogonal to the constant vector, scaled to unit (n-1) variance.
  q = q - q.mean(axis=0)
  q, _ = np.linalg.qr(q)
  z = (q * np.sqrt(n - 1)).astype(np.float32)
  _, terms = vicreg_loss(jnp.asarray(z), jnp.asarray(z), 25.0, 25.0, 1.0, 1e-4)
  assert float(terms["covariance"]) < 1e-8
  assert float(terms["variance"]) == 0.0


def test_vc_term_uses_every_position_as_a_sample():
  rng = np.random.default_rng(2)
  features = rng.normal(size=(2, 3, 4, 5)).astype(np.float32) * 0.5
  samples = features.reshape(-1, 5).astype(np.float64)
  std = np.sqrt(samples.var(axis=0, ddof=1) + 1e-4)
  cov = np.cov(samples, rowvar=False)
  want = 0.7 * np.mean(np.maximum(1 - std, 0)) + 0.2 * np.sum(cov[~np.eye(5, dtype=bool)]**2) / 5
  np.testing.assert_allclose(float(vc_term(jnp.asarray(features), 0.7, 0.2, 1e-4)), want, rtol=1e-5)


def test_pyramid_vc_loss_sums_levels_and_pooled():
  rng = np.random.default_rng(3)
  pyramid = [jnp.asarray(rng.normal(size=(2, 4, 4, c)).astype(np.float32)) for c in (3, 4)]
  pooled = jnp.asarray(rng.normal(size=(6, 5)).astype(np.float32))
  weights = ((0.1, 0.2), (0.3, 0.0))
  got = pyramid_vc_loss(pyramid, pooled, weights, (0.5, 0.5), 1e-4)
  want = vc_term(pyramid[0], 0.1, 0.2, 1e-4) + vc_term(pyramid[1], 0.3, 0.0, 1e-4) + vc_term(pooled, 0.5, 0.5, 1e-4)
  np.testing.assert_allclose(float(got), float(want), rtol=1e-6)


def test_covariance_of_few_wide_rows_matches_the_covariance_matrix_with_gradient():
  """N <= D/2 takes the N x N Gram form: value and gradient equal the D x D covariance's (float64 numpy)."""
  rng = np.random.default_rng(4)
  for n, d, scale in ((8, 512, 1.0), (16, 64, 0.1), (32, 64, 3.0)):
    z = (rng.normal(size=(n, d)) * scale + rng.normal(size=(1, d))).astype(np.float32)
    # Correlated dimensions too, so the off-diagonal part is not only sampling noise.
    z[:, 1] = z[:, 0] * 0.5 + z[:, 1] * 0.1
    x = z.astype(np.float64) - z.mean(axis=0)
    cov = x.T @ x / (n - 1)
    off = cov * (1 - np.eye(d))
    want = np.sum(off**2) / d
    # d/dz of sum(off^2)/d = 4 x off / ((n - 1) d); the centring's term vanishes (columns of x sum to 0).
    want_grad = 4 * x @ off / ((n - 1) * d)
    got, grad = jax.value_and_grad(covariance_loss)(jnp.asarray(z))
    np.testing.assert_allclose(float(got), want, rtol=2e-5)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=2e-4, atol=2e-4 * np.abs(want_grad).max())
