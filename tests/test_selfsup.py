"""ARFlow-style augmentation self-supervision: the crop-and-zoom carries flow and frames consistently."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcjepa_jax.losses.selfsup import (augmentation_loss, occluded_targets, paste_occluders, sample_zoom, zoomed_pair,
                                      zoomed_targets)
from mcjepa_jax.ops.warp import warp, zoom_crop


def test_zoom_crop_is_identity_at_full_scale_and_samples_the_window():
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 9, 11, 3)), jnp.float32)
  same = zoom_crop(x, jnp.zeros((2, 2)), jnp.ones((2,)))
  np.testing.assert_allclose(same, x, atol=1e-6)
  # Window origin (2, 3), half size: output pixel (row r, col c) reads input (3 + r/2, 2 + c/2).
  out = zoom_crop(x, jnp.asarray([[2.0, 3.0], [2.0, 3.0]]), jnp.asarray([0.5, 0.5]))
  np.testing.assert_allclose(out[:, 0, 0], x[:, 3, 2], atol=1e-6)
  np.testing.assert_allclose(out[:, 2, 4], x[:, 4, 4], atol=1e-6)
  np.testing.assert_allclose(out[:, 1, 1], 0.25 * (x[:, 3, 2] + x[:, 3, 3] + x[:, 4, 2] + x[:, 4, 3]), atol=1e-6)


def test_zoomed_targets_are_the_flow_of_the_zoomed_pair():
  """frame2 = frame1 moved by a smooth flow; on the zoomed pair, warping the zoomed frame 2 by the
  zoomed target must give the zoomed frame 1 back (where the teacher's check passes)."""
  size = 48
  rng = np.random.default_rng(1)
  frame1 = jnp.asarray(jax.image.resize(rng.uniform(size=(1, 12, 12, 3)), (1, size, size, 3), "bicubic"),
                       jnp.float32)
  u = jnp.full((1, size, size), 1.5)
  v = jnp.full((1, size, size), -1.0)
  forward = jnp.stack([u, v], axis=-1)
  # frame1(p) = frame2(p + f): frame 2 is frame 1 displaced by f.
  frame2 = warp(frame1, -forward)
  flow = jnp.concatenate([forward, -forward], axis=0)
  offset, scale = jnp.asarray([[10.0, 12.0]]), jnp.asarray([0.6])
  z1, z2 = zoomed_pair(frame1, frame2, offset, scale)
  target, mask = zoomed_targets(flow, offset, scale, 0.01, 0.5)
  np.testing.assert_allclose(target[0, 20, 20], [1.5 / 0.6, -1.0 / 0.6], rtol=1e-5)
  reconstructed = warp(z2, target[:1])
  inner = (slice(None), slice(6, -6), slice(6, -6))
  assert float(jnp.abs(reconstructed - z1)[inner].mean()) < 0.02
  assert float(mask.mean()) > 0.9


def test_sample_zoom_keeps_windows_inside_and_loss_is_zero_at_the_target():
  offset, scale = sample_zoom(jax.random.key(0), 64, (40, 60), 0.7)
  assert bool(jnp.all((scale >= 0.7) & (scale <= 1.0)))
  right = offset + scale[:, None] * jnp.asarray([59.0, 39.0])
  assert bool(jnp.all(offset >= 0)) and bool(jnp.all(right <= jnp.asarray([59.0, 39.0]) + 1e-4))
  target = jnp.ones((2, 5, 5, 2))
  mask = jnp.ones((2, 5, 5, 1))
  assert float(augmentation_loss(target, target, mask, 0.01, 0.4)) == pytest.approx(0.01**0.4, rel=1e-5)
  worse = float(augmentation_loss(target + 1.0, target, mask, 0.01, 0.4))
  assert worse > 1.0


def test_occluders_paste_another_frame_inside_ellipses_and_drop_only_backward_targets():
  rng = np.random.default_rng(3)
  frames = jnp.asarray(rng.uniform(size=(3, 40, 50, 3)), jnp.float32)
  same, none = paste_occluders(jax.random.key(0), frames, 0, (0.1, 0.2))
  np.testing.assert_array_equal(same, frames)
  assert float(none.sum()) == 0.0
  pasted, inside = paste_occluders(jax.random.key(1), frames, 2, (0.1, 0.2))
  donor = np.roll(np.asarray(frames), 1, axis=0)
  expected = np.where(np.asarray(inside) > 0, donor, np.asarray(frames))
  np.testing.assert_allclose(pasted, expected, atol=1e-6)
  area = np.asarray(inside)[..., 0].mean(axis=(1, 2))
  # Two ellipses with semi-axes 4-8 px on a 40 x 50 frame: at most 2 * pi * 8 * 8 px, and some left.
  assert np.all(area > 0) and np.all(area <= 2 * np.pi * 64 / 2000 + 1e-6)
  # Each pasted region is a union of convex blobs: every row crosses it in at most two runs.
  runs = np.abs(np.diff(np.asarray(inside)[..., 0], axis=2)).sum(axis=2)
  assert runs.max() <= 4
  mask = jnp.ones((6, 40, 50, 1))
  kept = occluded_targets(mask, inside)
  np.testing.assert_array_equal(kept[:3], 1.0)
  np.testing.assert_array_equal(kept[3:], 1.0 - np.asarray(inside))
