"""SSIM, census and gradients against direct numpy computations."""

import jax.numpy as jnp
import numpy as np
import pytest

from mcjepa_jax.ops import area_downsample, census_transform, image_gradients, soft_hamming, ssim_dissimilarity


def numpy_ssim_dissimilarity(x, y, c1=0.01**2, c2=0.03**2):
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  xp, yp = np.pad(x, pad, mode="reflect"), np.pad(y, pad, mode="reflect")
  out = np.zeros_like(x, dtype=np.float64)
  batch, height, width, channels = x.shape
  for n in range(batch):
    for i in range(height):
      for j in range(width):
        for c in range(channels):
          wx = xp[n, i:i + 3, j:j + 3, c].astype(np.float64)
          wy = yp[n, i:i + 3, j:j + 3, c].astype(np.float64)
          mx, my = wx.mean(), wy.mean()
          vx, vy = wx.var(), wy.var()
          cxy = ((wx - mx) * (wy - my)).mean()
          ssim = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
          out[n, i, j, c] = np.clip((1 - ssim) / 2, 0, 1)
  return out


def test_ssim_matches_numpy_windows():
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(2, 6, 7, 3)).astype(np.float32)
  y = np.clip(x + rng.normal(scale=0.2, size=x.shape), 0, 1).astype(np.float32)
  got = np.asarray(ssim_dissimilarity(jnp.asarray(x), jnp.asarray(y)))
  np.testing.assert_allclose(got, numpy_ssim_dissimilarity(x, y), atol=2e-4)


def test_ssim_of_identical_images_is_zero():
  x = np.random.default_rng(1).uniform(size=(1, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(ssim_dissimilarity(jnp.asarray(x), jnp.asarray(x))), 0.0, atol=1e-5)


def test_census_matches_numpy_and_hamming_behaves():
  rng = np.random.default_rng(2)
  image = rng.uniform(size=(1, 6, 5, 3)).astype(np.float32)
  got = np.asarray(census_transform(jnp.asarray(image), patch_size=3))
  gray = (image @ np.array([0.2989, 0.5870, 0.1140], np.float32)) * 255
  padded = np.pad(gray, ((0, 0), (1, 1), (1, 1)))
  for i in range(6):
    for j in range(5):
      diffs = (padded[0, i:i + 3, j:j + 3] - gray[0, i, j]).reshape(-1)
      np.testing.assert_allclose(got[0, i, j], diffs / np.sqrt(0.81 + diffs**2), rtol=1e-4, atol=1e-4)
  same = np.asarray(soft_hamming(jnp.asarray(got), jnp.asarray(got)))
  assert same.shape == (1, 6, 5, 1) and np.all(same == 0)
  # Opposite descriptors: each of the K entries counts as (2d)^2 / (0.1 + (2d)^2).
  diff = 2 * got
  want = np.sum(diff**2 / (0.1 + diff**2), axis=-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(soft_hamming(jnp.asarray(got), jnp.asarray(-got))), want, rtol=1e-5)


def test_census_is_invariant_to_brightness_offset():
  image = np.random.default_rng(3).uniform(0, 0.5, size=(1, 8, 8, 3)).astype(np.float32)
  a = census_transform(jnp.asarray(image))
  b = census_transform(jnp.asarray(image + 0.3))
  # Interior pixels only: zero padding at the border is not offset.
  np.testing.assert_allclose(np.asarray(a)[:, 3:-3, 3:-3], np.asarray(b)[:, 3:-3, 3:-3], atol=1e-4)


def test_image_gradients():
  x = np.arange(20, dtype=np.float32).reshape(1, 4, 5, 1)
  gx, gy = image_gradients(jnp.asarray(x))
  assert gx.shape == (1, 4, 4, 1) and gy.shape == (1, 3, 5, 1)
  np.testing.assert_array_equal(np.asarray(gx), 1.0)
  np.testing.assert_array_equal(np.asarray(gy), 5.0)
  gx2, _ = image_gradients(jnp.asarray(x), stride=2)
  np.testing.assert_array_equal(np.asarray(gx2), 2.0)


def test_area_downsample_is_the_block_mean():
  x = np.random.default_rng(3).uniform(size=(2, 12, 8, 3)).astype(np.float32)
  expected = np.zeros((2, 3, 4, 3), np.float32)
  for i in range(3):
    for j in range(4):
      expected[:, i, j] = x[:, 4 * i:4 * i + 4, 2 * j:2 * j + 2].mean(axis=(1, 2))
  np.testing.assert_allclose(np.asarray(area_downsample(jnp.asarray(x), (3, 4))), expected, rtol=1e-6)
  with pytest.raises(ValueError, match="multiple"):
    area_downsample(jnp.asarray(x), (5, 4))
