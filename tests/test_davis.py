"""DAVIS J&F metrics and label propagation, against direct computations and the real sequences."""

import numpy as np
import pytest
from scipy import ndimage

from mcjepa_jax.evaluate import davis


def _square(shape, y, x, size):
  mask = np.zeros(shape, bool)
  mask[y:y + size, x:x + size] = True
  return mask


def test_region_similarity_hand_cases():
  a, b = _square((40, 40), 5, 5, 10), _square((40, 40), 5, 10, 10)
  assert davis.region_similarity(a, b) == pytest.approx(50 / 150)
  assert davis.region_similarity(a, a) == 1.0
  assert davis.region_similarity(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
  assert davis.region_similarity(a, ~a & False) == 0.0


def _brute_force_f(pred, gt, tolerance):
  """Boundary F with explicit pixel-to-pixel distances (independent of dilation)."""
  def edges(m):
    m = m.astype(int)
    e = np.zeros(m.shape, bool)
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
      shifted = np.zeros_like(m)
      shifted[:m.shape[0] - dy, :m.shape[1] - dx] = m[dy:, dx:]
      diff = m != shifted
      diff[m.shape[0] - dy:, :] = False
      diff[:, m.shape[1] - dx:] = False
      e |= diff
    return np.argwhere(e)
  p, g = edges(pred), edges(gt)
  radius = np.ceil(tolerance * np.hypot(*pred.shape))
  d = np.sqrt(((p[:, None, :] - g[None, :, :])**2).sum(-1))
  precision = np.mean(d.min(axis=1) <= radius)
  recall = np.mean(d.min(axis=0) <= radius)
  return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_boundary_f_matches_brute_force_distances():
  rng = np.random.default_rng(0)
  for _ in range(3):
    gt = ndimage.gaussian_filter(rng.normal(size=(60, 80)), 4) > 0
    pred = ndimage.shift(gt.astype(float), (rng.integers(-3, 4), rng.integers(-3, 4)), order=0) > 0.5
    assert davis.boundary_f_measure(pred, gt) == pytest.approx(_brute_force_f(pred, gt, 0.008), abs=1e-9)
  assert davis.boundary_f_measure(gt, gt) == 1.0


@pytest.fixture(scope="module")
def blackswan(shared_data):
  return davis.load_sequence(str(shared_data / "DAVIS"), "blackswan", max_frames=12)


def test_real_sequences_read_as_binary_object_masks(shared_data):
  root = str(shared_data / "DAVIS")
  names = davis.davis_sequences(root)
  assert names == ["blackswan", "car-shadow", "motocross-jump"]
  frames, masks = davis.load_sequence(root, "car-shadow", max_frames=3)
  assert frames.shape == (3, 480, 854, 3) and masks.shape == (3, 480, 854)
  assert set(np.unique(masks)) == {0, 1}


def test_perfect_prediction_scores_one_and_frozen_first_mask_matches_direct_computation(blackswan):
  _, masks = blackswan
  assert davis.sequence_scores(masks, masks) == {"J": 1.0, "F": 1.0, "J&F": 1.0, "objects": 1}
  frozen = np.repeat(masks[:1], len(masks), axis=0)
  scores = davis.sequence_scores(frozen, masks)
  inner = range(1, len(masks) - 1)
  j = np.mean([(masks[0] & masks[t]).sum() / (masks[0] | masks[t]).sum() for t in inner])
  f = np.mean([_brute_force_f(masks[0][::4, ::4], masks[t][::4, ::4], 0.008) for t in inner])
  assert scores["J"] == pytest.approx(j, abs=1e-12)
  assert 0.2 < scores["J"] < 0.99
  # F at a quarter of the resolution (brute force is quadratic) is only close, not equal.
  assert scores["F"] == pytest.approx(f, abs=0.1)


def test_propagation_with_oracle_features_recovers_the_masks(blackswan):
  """Features that are the true masks (one-hot at stride 8) must propagate to near-perfect labels."""
  _, masks = blackswan
  features = np.stack([ndimage.zoom(np.eye(2, dtype=np.float32)[m], (1 / 8, 1 / 8, 1), order=1) for m in masks])
  predictions = davis.segment_video(features, masks[0])
  scores = davis.sequence_scores(predictions, masks)
  frozen = davis.sequence_scores(np.repeat(masks[:1], len(masks), axis=0), masks)
  assert scores["J"] > 0.85 and scores["J"] > frozen["J"] + 0.1, (scores, frozen)
