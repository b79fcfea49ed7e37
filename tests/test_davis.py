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


def _numpy_propagation(features, first_labels, num_classes, cfg, chunk_rows=8):
  """The original numpy/argpartition implementation, kept as the reference."""
  features = np.asarray(features, np.float32)
  steps, height, width, _ = features.shape
  features = features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
  labels = np.zeros((steps, height, width, num_classes), np.float32)
  labels[0] = first_labels
  cols = np.arange(width)
  for t in range(1, steps):
    context = [0] + list(range(max(1, t - cfg.n_context), t))
    for r0 in range(0, height, chunk_rows):
      r1 = min(r0 + chunk_rows, height)
      k0, k1 = max(0, r0 - cfg.radius), min(height, r1 + cfg.radius)
      query = features[t, r0:r1].reshape(-1, features.shape[-1])                         # [q, C]
      keys = features[context, k0:k1].reshape(-1, features.shape[-1])                    # [n*k, C]
      values = labels[context, k0:k1].reshape(-1, num_classes)                            # [n*k, K]
      q_rows, q_cols = np.divmod(np.arange(query.shape[0]), width)
      k_rows, k_cols = np.divmod(np.arange((k1 - k0) * width), width)
      near = ((np.abs(q_rows[:, None] + r0 - (k_rows[None] + k0)) <= cfg.radius)
              & (np.abs(cols[q_cols][:, None] - k_cols[None]) <= cfg.radius))
      similarity = np.where(np.tile(near, (1, len(context))), query @ keys.T, -np.inf)
      k = min(cfg.top_k, similarity.shape[1])
      top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
      top_sim = np.take_along_axis(similarity, top, axis=1)
      weights = np.exp((top_sim - top_sim.max(axis=1, keepdims=True)) / cfg.temperature)
      weights /= weights.sum(axis=1, keepdims=True)
      labels[t, r0:r1] = np.einsum("qk,qkc->qc", weights, values[top]).reshape(r1 - r0, width, num_classes)
  return labels


def test_compiled_propagation_matches_the_numpy_reference():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(6, 13, 11, 5)).astype(np.float32)
  first = rng.dirichlet(np.ones(3), size=(13, 11)).astype(np.float32)
  cfg = davis.PropagationConfig(n_context=2, top_k=4, radius=3, temperature=0.1)
  expected = _numpy_propagation(features, first, 3, cfg, chunk_rows=4)
  np.testing.assert_allclose(davis.propagate_labels(features, first, 3, cfg), expected, atol=1e-5)
