"""The embedded dataset and the grain pipeline: exact flow, determinism, resumable state."""

import jax.numpy as jnp
import numpy as np
import pytest

from mcjepa_jax.data.pipeline import TrainInput
from mcjepa_jax.data.synthetic import SyntheticChairs
from mcjepa_jax.ops import warp


def photometric_error(frame1, frame2, flow, mask):
  warped = np.asarray(warp(jnp.asarray(frame2[None]), jnp.asarray(flow[None])))[0]
  return float((np.abs(warped - frame1) * mask[..., None]).sum() / (3 * mask.sum()))


def test_ground_truth_flow_warps_frame2_onto_frame1():
  source = SyntheticChairs((64, 64), 16, seed=3)
  true_errors, zero_errors = [], []
  for i in range(8):
    s = source[i]
    assert s["flow"].shape == (64, 64, 2) and 0.3 < s["visible"].mean() <= 1.0
    true_errors.append(photometric_error(s["frame1"], s["frame2"], s["flow"], s["visible"]))
    zero_errors.append(photometric_error(s["frame1"], s["frame2"], np.zeros_like(s["flow"]), s["visible"]))
  assert np.mean(true_errors) < 0.2 * np.mean(zero_errors)


def test_occluded_pixels_do_not_match():
  source = SyntheticChairs((64, 64), 16, seed=4)
  hidden_errors, visible_errors = [], []
  for i in range(8):
    s = source[i]
    warped = np.asarray(warp(jnp.asarray(s["frame2"][None]), jnp.asarray(s["flow"][None])))[0]
    error = np.abs(warped - s["frame1"]).mean(axis=-1)
    if (s["visible"] == 0).sum() > 20:
      hidden_errors.append(error[s["visible"] == 0].mean())
      visible_errors.append(error[s["visible"] == 1].mean())
  assert hidden_errors and np.mean(hidden_errors) > 3 * np.mean(visible_errors)


def test_samples_are_pure_functions_of_seed_and_index():
  a, b, c = SyntheticChairs((32, 32), 4, seed=1), SyntheticChairs((32, 32), 4, seed=1), SyntheticChairs((32, 32), 4, seed=2)
  np.testing.assert_array_equal(a[2]["frame1"], b[2]["frame1"])
  assert not np.array_equal(a[2]["frame1"], c[2]["frame1"])
  with pytest.raises(IndexError):
    _ = a[4]


def _batches(config, seed, n):
  data = TrainInput(config, seed)
  return [next(data) for _ in range(n)]


def test_same_seed_same_batches_other_seed_different(tiny_config):
  first, again, other = _batches(tiny_config, 0, 2), _batches(tiny_config, 0, 2), _batches(tiny_config, 1, 2)
  for x, y in zip(first, again):
    for key in ("frames1", "frames2", "views1", "views2"):
      np.testing.assert_array_equal(x[key], y[key])
  assert not np.array_equal(first[0]["frames1"], other[0]["frames1"])
  assert not np.array_equal(first[0]["views1"], other[0]["views1"])
  batch = first[0]
  assert batch["frames1"].shape == (2, 64, 64, 3) and batch["views1"].shape == (8, 64, 64, 3)
  assert batch["views1"].min() >= 0 and batch["views1"].max() <= 1
  assert not np.array_equal(batch["views1"], batch["views2"])  # two different augmentations


def test_restored_iterator_continues_with_next_batch(tiny_config):
  data = TrainInput(tiny_config, 0)
  next(data)
  state = data.get_state()
  expected = next(data)
  resumed = TrainInput(tiny_config, 0)
  resumed.set_state(state)
  got = next(resumed)
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key])


def test_process_shards_are_disjoint_halves(tiny_config):
  whole = next(TrainInput(tiny_config, 0, 0, 1))
  half0 = next(TrainInput(tiny_config, 0, 0, 2))
  half1 = next(TrainInput(tiny_config, 0, 1, 2))
  assert half0["frames1"].shape[0] == whole["frames1"].shape[0] // 2
  assert not np.array_equal(half0["frames1"], half1["frames1"])
