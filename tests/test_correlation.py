"""Correlation volume against a brute-force loop (DESIGN.md 3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from mcjepa_jax.ops import correlation


def brute_force_correlation(a, b, radius):
  batch, height, width, channels = a.shape
  side = 2 * radius + 1
  out = np.zeros((batch, height, width, side * side), np.float64)
  for n in range(batch):
    for y in range(height):
      for x in range(width):
        k = 0
        for dy in range(-radius, radius + 1):
          for dx in range(-radius, radius + 1):
            yy, xx = y + dy, x + dx
            if 0 <= yy < height and 0 <= xx < width:
              out[n, y, x, k] = np.dot(a[n, y, x], b[n, yy, xx]) / channels
            k += 1
  return out


# "pallas" runs the Pallas kernels in the interpreter here (the CPU backend has no Pallas compiler).
@pytest.mark.parametrize("impl", ["slices", "banded", "auto", "pallas"])
# Width 37: the banded form's 32-pixel blocks plus a last block completed by zero columns.
@pytest.mark.parametrize("shape,radius", [((2, 7, 9, 5), 2), ((1, 5, 4, 3), 4), ((1, 1, 3, 2), 1), ((1, 3, 37, 4), 2)])
def test_matches_brute_force_including_borders(shape, radius, impl):
  rng = np.random.default_rng(0)
  a = rng.normal(size=shape).astype(np.float32)
  b = rng.normal(size=shape).astype(np.float32)
  got = np.asarray(correlation(jnp.asarray(a), jnp.asarray(b), radius, impl))
  assert got.shape == shape[:3] + ((2 * radius + 1)**2,)
  np.testing.assert_allclose(got, brute_force_correlation(a, b, radius), rtol=1e-5, atol=1e-5)


def test_centre_channel_is_mean_of_product():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(1, 4, 4, 6)).astype(np.float32)
  got = np.asarray(correlation(jnp.asarray(a), jnp.asarray(a), 3))
  np.testing.assert_allclose(got[..., 24], np.mean(a * a, axis=-1), rtol=1e-6)


@pytest.mark.parametrize("impl", ["slices", "banded", "pallas"])
def test_gradient_matches_finite_differences(impl):
  rng = np.random.default_rng(2)
  with jax.enable_x64(True):
    a = jnp.asarray(rng.normal(size=(1, 5, 6, 3)))
    b = jnp.asarray(rng.normal(size=(1, 5, 6, 3)))
    weights = jnp.asarray(rng.normal(size=(1, 5, 6, 25)))
    loss = lambda a, b: jnp.sum(correlation(a, b, 2, impl) * weights)
    # check_grads raises AssertionError when reverse-mode and finite differences disagree.
    jtu.check_grads(loss, (a, b), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)
    # And one directional derivative by hand, as an explicit check.
    direction = jnp.asarray(rng.normal(size=a.shape))
    grad_a = jax.grad(loss)(a, b)
    numeric = (loss(a + 1e-6 * direction, b) - loss(a - 1e-6 * direction, b)) / 2e-6
    np.testing.assert_allclose(float(jnp.sum(grad_a * direction)), float(numeric), rtol=1e-6)


def autodiff_reference(a, b, radius):
  """The cost volume as plain jnp slices, differentiated by JAX (no custom backward pass)."""
  _, height, width, channels = a.shape
  padded = jnp.pad(b, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
  side = 2 * radius + 1
  return jnp.stack([jnp.sum(a * padded[:, dy:dy + height, dx:dx + width], axis=-1)
                    for dy in range(side) for dx in range(side)], axis=-1) / channels


@pytest.mark.parametrize("impl", ["slices", "banded"])
def test_shared_backward_matches_autodiff_of_the_slices(impl):
  # The written-out backward pass against JAX's own derivative of the plain formula, on a row wider
  # than one banded block and not a multiple of it.
  rng = np.random.default_rng(3)
  a, b = (jnp.asarray(rng.normal(size=(2, 4, 37, 6)), jnp.float32) for _ in range(2))
  weights = jnp.asarray(rng.normal(size=(2, 4, 37, 49)), jnp.float32)
  got = jax.grad(lambda a, b: jnp.sum(correlation(a, b, 3, impl) * weights), argnums=(0, 1))(a, b)
  want = jax.grad(lambda a, b: jnp.sum(autodiff_reference(a, b, 3) * weights), argnums=(0, 1))(a, b)
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)


def test_normalized_pair_has_joint_unit_moments_and_scale_free_costs():
  from mcjepa_jax.models.flow_head import normalize_pair
  rng = np.random.default_rng(4)
  a = rng.normal(3.0, 2.0, size=(2, 6, 5, 4)).astype(np.float32)
  b = rng.normal(1.0, 0.5, size=(2, 6, 5, 4)).astype(np.float32)
  na, nb = map(np.asarray, normalize_pair(jnp.asarray(a), jnp.asarray(b)))
  for i in range(2):  # per pair, jointly over both maps
    mean = (a[i].mean() + b[i].mean()) / 2
    std = np.sqrt((a[i].var() + b[i].var()) / 2)
    np.testing.assert_allclose(na[i], (a[i] - mean) / std, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(nb[i], (b[i] - mean) / std, rtol=1e-4, atol=1e-5)
  # Rescaling or shifting one pair's features leaves its cost volume unchanged.
  scaled = normalize_pair(jnp.asarray(10 * a + 1), jnp.asarray(10 * b + 1))
  np.testing.assert_allclose(np.asarray(correlation(*scaled, 1)), np.asarray(correlation(na, nb, 1)),
                             rtol=1e-4, atol=1e-5)


def test_pixel_normalised_costs_are_cosine_similarities():
  from mcjepa_jax.models.flow_head import normalize_pixels
  rng = np.random.default_rng(5)
  a = rng.normal(size=(1, 5, 6, 8)).astype(np.float32)
  b = rng.normal(size=(1, 5, 6, 8)).astype(np.float32)
  cost = np.asarray(correlation(normalize_pixels(jnp.asarray(a)), normalize_pixels(jnp.asarray(b)), 1))
  centred = lambda v: v - v.mean()
  for y, x, dy, dx in ((2, 3, 0, 0), (1, 1, 1, -1), (3, 4, -1, 1)):
    u, v = centred(a[0, y, x]), centred(b[0, y + dy, x + dx])
    cosine = u @ v / np.linalg.norm(u) / np.linalg.norm(v)
    np.testing.assert_allclose(cost[0, y, x, (dy + 1) * 3 + dx + 1], cosine, rtol=1e-4, atol=1e-5)
  # Per-pixel gains and offsets of the features leave the costs unchanged.
  gain = rng.uniform(0.5, 3.0, size=(1, 5, 6, 1)).astype(np.float32)
  changed = np.asarray(correlation(normalize_pixels(jnp.asarray(a * gain + 2.0)), normalize_pixels(jnp.asarray(b)), 1))
  np.testing.assert_allclose(changed, cost, rtol=1e-4, atol=1e-5)


def test_patch_descriptors_match_themselves_best():
  from mcjepa_jax.models.flow_head import patch_descriptors
  image = np.random.default_rng(6).uniform(size=(1, 16, 16, 3)).astype(np.float32)
  descriptors = patch_descriptors(jnp.asarray(image), (8, 8))
  assert descriptors.shape == (1, 8, 8, 27)
  cost = np.asarray(correlation(descriptors, descriptors, 1))
  # Zero offset: a unit self-correlation (up to the variance floor of nearly flat patches).
  np.testing.assert_allclose(cost[..., 4], 1.0, atol=0.02)
  assert np.all(cost[0, 1:-1, 1:-1, 4] >= cost[0, 1:-1, 1:-1].max(axis=-1) - 1e-5)


def test_unknown_formulation_is_named():
  with pytest.raises(ValueError, match="corr_impl='fft'"):
    correlation(jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 4, 4, 2)), 1, "fft")


def test_pallas_kernels_match_the_slices_on_a_padded_level_shape():
  """A width and channel count that are not powers of two (padded inside the kernels), float32, with
  the gradient of both inputs: the kernels equal the jnp slices (interpreted on the CPU)."""
  from mcjepa_jax.ops.correlation_pallas import correlation_pallas
  rng = np.random.default_rng(7)
  a, b = (jnp.asarray(rng.normal(size=(2, 3, 12, 6)), jnp.float32) for _ in range(2))
  weights = jnp.asarray(rng.normal(size=(2, 3, 12, 25)), jnp.float32)
  loss = lambda fn: lambda a, b: jnp.sum(fn(a, b) * weights)
  pallas = lambda a, b: correlation_pallas(a, b, 2, True)
  slices = lambda a, b: correlation(a, b, 2, "slices")
  np.testing.assert_allclose(np.asarray(pallas(a, b)), np.asarray(slices(a, b)), rtol=1e-5, atol=1e-6)
  for got, want in zip(jax.grad(loss(pallas), argnums=(0, 1))(a, b), jax.grad(loss(slices), argnums=(0, 1))(a, b)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
