"""The embedded dataset and the grain pipeline: exact flow, determinism, resumable state."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mcjepa_jax.data.augment import augment_pair, resized_crop, shift_hue
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


def test_samples_name_their_background_photograph(monkeypatch):
  from mcjepa_jax.data import synthetic
  # Photograph k as a flat colour whose green / red ratio is k / N, whatever the layer's brightness.
  count = len(synthetic.TEXTURE_NAMES)
  flat = tuple(np.broadcast_to(np.array([0.5, 0.5 * k / count, 0.25], np.float32), (40, 40, 3)) for k in range(count))
  monkeypatch.setattr(synthetic, "load_textures", lambda max_side: flat)
  source = SyntheticChairs((32, 32), 12, seed=5, num_shapes=(0, 0))
  seen = set()
  for i in range(len(source)):
    sample = source[i]
    ratio = sample["frame1"][..., 1] / sample["frame1"][..., 0]
    np.testing.assert_allclose(ratio, sample["background"] / count, atol=1e-5)
    seen.add(int(sample["background"]))
  assert len(seen) > 3


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


def _pair_cfg(margin, jitter_prob):
  return ml_collections.ConfigDict(dict(crop=(16, 16), jitter=(0.3, 0.3, 0.2, 0.05), jitter_prob=jitter_prob,
                                        full_image_margin=margin))


def test_wide_frames_surround_the_crop_and_mark_the_image_border():
  # Pixel values encode their position, so the crop's place in the 20 x 22 frame can be read back.
  rows, cols = np.meshgrid(np.arange(20), np.arange(22), indexing="ij")
  frame1 = np.stack([rows / 32, cols / 32, np.full((20, 22), 0.25)], axis=-1).astype(np.float32)
  sample = {"frame1": frame1, "frame2": frame1 + 0.5}
  margin = 6
  for seed in range(6):
    out = augment_pair(np.random.default_rng(seed), sample, _pair_cfg(margin, 0.0))
    top, left = int(round(out["frame1"][0, 0, 0] * 32)), int(round(out["frame1"][0, 0, 1] * 32))
    np.testing.assert_array_equal(out["frame1"], frame1[top:top + 16, left:left + 16])
    src_rows = np.arange(top - margin, top + 16 + margin)[:, None]
    src_cols = np.arange(left - margin, left + 16 + margin)[None, :]
    inside = (src_rows >= 0) & (src_rows < 20) & (src_cols >= 0) & (src_cols < 22)
    np.testing.assert_array_equal(out["wide_valid"][..., 0], inside.astype(np.float32))
    for key, frame in (("wide1", sample["frame1"]), ("wide2", sample["frame2"])):
      expected = frame[np.clip(src_rows, 0, 19), np.clip(src_cols, 0, 21)] * inside[..., None]
      np.testing.assert_array_equal(out[key], expected)
    # Without a margin: the same crop (same random stream), no wide frames.
    plain = augment_pair(np.random.default_rng(seed), sample, _pair_cfg(0, 0.0))
    assert set(plain) == {"frame1", "frame2"}
    np.testing.assert_array_equal(plain["frame2"], out["frame2"])


def test_wide_frames_get_the_crop_s_colour_jitter():
  frames = SyntheticChairs((40, 40), 2, seed=7)[0]
  sample = {"frame1": frames["frame1"], "frame2": frames["frame2"]}
  out = augment_pair(np.random.default_rng(1), sample, _pair_cfg(8, 1.0))
  for n in (1, 2):
    np.testing.assert_array_equal(out[f"wide{n}"][8:24, 8:24], out[f"frame{n}"])
  assert not np.allclose(out["frame1"], augment_pair(np.random.default_rng(1), sample, _pair_cfg(8, 0.0))["frame1"])


@pytest.mark.parametrize("box,size", [((3, 5, 50, 40), (64, 64)), ((0, 0, 30, 28), (45, 50)),
                                      ((10, 2, 7, 9), (16, 16)), ((29, 27, 1, 1), (3, 3)),
                                      ((-4, 20, 12, 12), (8, 8))])  # the last two read beyond the image
def test_resized_crop_matches_map_coordinates(box, size):
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  image = np.random.default_rng(1).uniform(size=(30, 28, 2))
  top, left, height, width = box
  ys = top + (np.arange(size[0]) + 0.5) * height / size[0] - 0.5
  xs = left + (np.arange(size[1]) + 0.5) * width / size[1] - 0.5
  grid = np.meshgrid(ys, xs, indexing="ij")
  expected = np.stack([ndimage.map_coordinates(image[..., c], grid, order=1, mode="nearest")
                       for c in range(2)], axis=-1)
  np.testing.assert_allclose(resized_crop(image, box, size), expected, atol=1e-12)


@pytest.mark.parametrize("shift", [-0.5, -0.1, 0.03, 0.25, 0.5])
def test_hue_shift_matches_skimage_hsv_round_trip(shift):
  from skimage import color  # pylint: disable=g-import-not-at-top
  image = np.random.default_rng(0).uniform(size=(16, 16, 3))
  image[:3] = image[:3, :, :1]  # grey pixels: no hue
  image[3:6, :, 1] = image[3:6, :, 0]  # red and green tie for the maximum
  image[6, :, 2] = 1.0
  image[7] = 0.0
  hsv = color.rgb2hsv(image)
  hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
  np.testing.assert_allclose(shift_hue(image, shift), color.hsv2rgb(hsv), atol=1e-12)
  np.testing.assert_allclose(shift_hue(image.astype(np.float32), shift), color.hsv2rgb(hsv), atol=2e-6)


def test_pipeline_batches_carry_the_wide_frames(tiny_config):
  config = tiny_config.copy_and_resolve_references()  # the fixture is shared by the session
  config.data.pairs.full_image_margin = 8
  batch = next(TrainInput(config, 0))
  b, h, w, _ = batch["frames1"].shape
  assert batch["wide1"].shape == batch["wide2"].shape == (b, h + 16, w + 16, 3)
  assert batch["wide_valid"].shape == (b, h + 16, w + 16, 1)
  np.testing.assert_array_equal(batch["wide1"][:, 8:-8, 8:-8], batch["frames1"])


@pytest.mark.parametrize("margin", [0, 8])
def test_the_step_is_compiled_for_the_batch_the_pipeline_yields(tiny_config, margin):
  # `prepare` compiles the step from `batch_shapes` before reading any batch.
  from mcjepa_jax.train.step import batch_shapes  # pylint: disable=g-import-not-at-top
  config = tiny_config.copy_and_resolve_references()
  config.data.pairs.full_image_margin = margin
  batch = next(TrainInput(config, 0))
  assert {k: v.shape for k, v in batch.items()} == batch_shapes(config)
  assert all(v.dtype == np.float32 for v in batch.values())
