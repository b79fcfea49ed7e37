"""Evaluation protocols end to end: ground truth through the whole flow path, and the CLI's baselines."""

import json

import numpy as np
import pytest

from mcjepa_jax.data import datasets
from mcjepa_jax.evaluate import protocols
from mcjepa_jax.evaluate.flow_eval import evaluate_pairs, resize_flow_field
from mcjepa_jax.evaluate.samples import load_pairs, real_sample_sets, reduce_pair


def _oracle(current, mode):
  """A predictor returning the ground truth of the current pair at the size it is asked for."""
  def predict(variables, frames1, frames2):
    del variables, frames2
    gt, size = current["flow"], frames1.shape[1:3]
    if mode == "pad":  # the padded margin is cropped away, whatever it holds
      out = np.zeros((*size, 2), np.float32)
      out[:gt.shape[0], :gt.shape[1]] = gt
    else:
      out = resize_flow_field(gt, size)
    return out[None]
  return predict


class _Tracking:
  """Wraps a source and remembers the last sample handed out (so the oracle knows its ground truth)."""

  def __init__(self, source, current):
    self.source, self.current = source, current

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    sample = self.source[index]
    self.current.update(sample)
    return sample


@pytest.mark.parametrize("mode", ["pad", "resize"])
def test_ground_truth_through_the_evaluation_path(shared_data, mode):
  current = {}
  predict = _oracle(current, mode)
  sources = {"sintel_clean": datasets.Sintel(str(shared_data / "Sintel"), "clean"),
             "flyingchairs": datasets.FlyingChairs(str(shared_data / "FlyingChairs_release"), "all")}
  for name, source in sources.items():
    row = protocols.evaluate_flow_source(_Tracking(source, current), predict, None, 64, mode, max_pairs=3)
    assert row["zero_epe"] > 2.0, name
    if mode == "pad":
      assert row["epe"] == 0.0 and row["fl"] == 0.0, (name, row)
    else:
      # Resizing to a multiple of 64 and back only interpolates the field.
      assert row["epe"] < 0.05 * row["zero_epe"], (name, row)
  whale = real_sample_sets(str(shared_data))["middlebury_rubberwhale"]
  pairs = list(load_pairs(whale))
  current["flow"] = pairs[0][2]
  row, _ = evaluate_pairs(predict, None, pairs, 64, mode)
  assert row["zero_epe"] == pytest.approx(1.256, abs=1e-3)
  assert row["epe"] < (1e-6 if mode == "pad" else 0.05 * row["zero_epe"]), row


def test_cli_baselines_on_the_shared_samples(shared_data, tiny_config, tmp_path):
  from mcjepa_jax.evaluate.main import run
  results = run(tiny_config, str(tmp_path), str(shared_data), ["flow", "davis"], max_pairs=2,
                davis_max_frames=4, baseline=True)
  flow = results["flow"]
  assert set(flow) == {"sintel_clean", "sintel_final", "flyingchairs", "middlebury"}
  assert flow["middlebury"]["zero_epe"] == pytest.approx(1.256, abs=1e-3)
  assert flow["sintel_clean"]["epe"] == flow["sintel_clean"]["zero_epe"] == pytest.approx(2.983, abs=1e-3)
  assert "epe_matched" in flow["sintel_clean"] and flow["flyingchairs"]["pairs"] == 2
  first_mask = results["davis"]["mean"]["first_mask"]
  assert 0 < first_mask["J&F"] < 1
  with open(tmp_path / "eval_protocols.json") as f:
    assert json.load(f)["davis"]["mean"]["first_mask"]["J"] == pytest.approx(first_mask["J"])


def test_epe_and_fl_all_hand_cases():
  from mcjepa_jax.evaluate.flow_eval import flow_metrics
  gt = np.zeros((1, 4, 2), np.float32)
  gt[0, :, 0] = [10.0, 100.0, 2.0, 50.0]
  flow = gt.copy()
  flow[0, 0, 0] += 4.0   # EPE 4 > 3 px and > 5 % of 10: outlier
  flow[0, 1, 1] += 4.0   # EPE 4 > 3 px but < 5 % of 100: not an outlier
  flow[0, 2, 0] += 2.5   # EPE 2.5 < 3 px: not an outlier
  flow[0, 3, 0] += 30.0  # outlier, but marked invalid below
  valid = np.array([[True, True, True, False]])
  metrics = flow_metrics(flow, gt, valid)
  assert metrics["epe"] == pytest.approx((4 + 4 + 2.5) / 3)
  assert metrics["fl"] == pytest.approx(1 / 3)


def test_standard_flow_sets_detect_kitti_2012_2015_and_middlebury(tmp_path, shared_data):
  import shutil
  from mcjepa_jax.data.datasets import make_flow_source
  from mcjepa_jax.data.formats import write_kitti_flow
  from mcjepa_jax.evaluate.protocols import standard_flow_sets
  from PIL import Image
  for folder, images in (("KITTI", "colored_0"), ("data_scene_flow", "image_2")):
    training = tmp_path / folder / "training"
    (training / images).mkdir(parents=True)
    (training / "flow_occ").mkdir()
    for frame in ("10", "11"):
      Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(training / images / f"000000_{frame}.png")
    write_kitti_flow(str(training / "flow_occ" / "000000_10.png"), np.ones((8, 12, 2), np.float32))
  shutil.copytree(shared_data / "middlebury", tmp_path / "middlebury")
  specs = {s["label"]: s for s in standard_flow_sets(str(tmp_path))}
  assert set(specs) == {"kitti2012", "kitti2015", "middlebury"}
  for label, spec in specs.items():
    spec = {k: v for k, v in spec.items() if k != "label"}
    sample = make_flow_source(spec)[0]
    assert sample["flow"].shape[:2] == sample["frame1"].shape[:2], label
  assert specs["kitti2012"]["version"] == 2012


def test_reduce_pair_averages_blocks_and_rescales_flow_over_valid_pixels():
  rng = np.random.default_rng(0)
  frame1, frame2 = rng.uniform(size=(2, 9, 10, 3)).astype(np.float32)  # cut to 8 x 8
  flow = np.tile(np.asarray([8.0, -4.0], np.float32), (9, 10, 1))
  valid = np.ones((9, 10), bool)
  flow[0, 0] = np.inf            # one bad pixel: left out of its block's mean
  flow[4:8, 0:4, 0] = 40.0       # a block with 10 invalid pixels of 16: invalid
  valid[4:7, 0:3] = False
  valid[7, 0] = False
  small1, small2, small_flow, small_valid = reduce_pair(frame1, frame2, flow, valid, 4)
  assert small1.shape == (2, 2, 3) and small_flow.shape == (2, 2, 2)
  np.testing.assert_allclose(small1[1, 0], frame1[4:8, 0:4].mean(axis=(0, 1)), rtol=1e-6)
  np.testing.assert_allclose(small2[0, 1], frame2[0:4, 4:8].mean(axis=(0, 1)), rtol=1e-6)
  np.testing.assert_allclose(small_flow[0, 0], [2.0, -1.0])
  np.testing.assert_allclose(small_flow[1, 0], [10.0, -1.0])
  np.testing.assert_array_equal(small_valid, [[True, True], [False, True]])


@pytest.mark.parametrize("mode", ["pad", "resize"])
def test_flow_margin_replicates_the_border_and_is_cropped_off(mode):
  from mcjepa_jax.evaluate.flow_eval import to_stride_grid
  rng = np.random.default_rng(0)
  frames = rng.random((2, 40, 48, 3)).astype(np.float32)
  margin = 8
  grid, undo = to_stride_grid(frames, 64, mode, margin)
  assert grid.shape == (2, 64, 64, 3)
  if mode == "pad":
    # The frame sits at (margin, margin), surrounded by copies of its own border pixels.
    np.testing.assert_array_equal(grid[:, margin:margin + 40, margin:margin + 48], frames)
    np.testing.assert_array_equal(grid[:, :margin, margin:margin + 48], np.repeat(frames[:, :1], margin, axis=1))
    np.testing.assert_array_equal(grid[:, margin:margin + 40, :margin], np.repeat(frames[:, :, :1], margin, axis=2))
    np.testing.assert_array_equal(grid[:, :margin, :margin], np.broadcast_to(frames[:, :1, :1], (2, margin, margin, 3)))
  # A flow known on the padded frame comes back as its central crop, at the frames' size.
  gt = rng.normal(size=(40, 48, 2)).astype(np.float32)
  padded_gt = np.pad(gt, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
  field = padded_gt if mode == "pad" else resize_flow_field(padded_gt, grid.shape[1:3])
  if mode == "pad":
    field = np.pad(field, ((0, 64 - field.shape[0]), (0, 64 - field.shape[1]), (0, 0)))
  back = undo(field[None])[0]
  assert back.shape == gt.shape
  if mode == "pad":
    np.testing.assert_array_equal(back, gt)
  else:  # resized there and back: interpolation error only
    assert np.abs(back - gt).mean() < 0.5 * np.abs(gt).mean()
  row, _ = evaluate_pairs(lambda v, a, b: field[None], None, [(frames[0], frames[1], gt, None)], 64, mode, margin)
  assert row["epe"] == pytest.approx(0.0 if mode == "pad" else np.linalg.norm(back - gt, axis=-1).mean(), abs=1e-6)
  with pytest.raises(ValueError, match="margin must be >= 0"):
    to_stride_grid(frames, 64, mode, -1)


def test_fill_predictor_adds_its_own_epe_and_slope():
  rng = np.random.default_rng(1)
  frames = rng.random((2, 64, 64, 3)).astype(np.float32)
  gt = rng.normal(size=(64, 64, 2)).astype(np.float32)
  pairs = [(frames[0], frames[1], gt, None)] * 2
  network = lambda v, a, b: gt[None]  # exact
  filled = lambda v, a, b: 0.5 * gt[None]  # half the motion
  row, _ = evaluate_pairs(network, None, pairs, 64, fill_predictor=filled)
  assert row["epe"] == pytest.approx(0.0, abs=1e-6) and row["slope"] == pytest.approx(1.0)
  assert row["epe_filled"] == pytest.approx(0.5 * np.linalg.norm(gt, axis=-1).mean(), rel=1e-5)
  assert row["slope_filled"] == pytest.approx(0.5, rel=1e-6)
  without, _ = evaluate_pairs(network, None, pairs, 64)
  assert "epe_filled" not in without and "slope_filled" not in without
  baseline, _ = evaluate_pairs(None, None, pairs, 64, fill_predictor=filled)  # zero flow: nothing to fill
  assert "epe_filled" not in baseline
  assert "occlusions filled" in protocols.format_flow_table({"set": row})


def _short_range_matcher(radius):
  """A predictor that finds one integer translation per pair, searching only +-radius px (SSD over the
  interior): like a network trained on short motions, it cannot report a longer one."""
  def predict(frames1, frames2):
    flows = []
    for a, b in zip(frames1, frames2):
      band = radius + 1
      errors = {(u, v): np.mean((a[band:-band, band:-band] - np.roll(b, (-v, -u), axis=(0, 1))[band:-band, band:-band])**2)
                for u in range(-radius, radius + 1) for v in range(-radius, radius + 1)}
      flows.append(np.broadcast_to(np.asarray(min(errors, key=errors.get), np.float32), (*a.shape[:2], 2)))
    return np.stack(flows)
  return predict


def test_coarse_to_fine_recovers_motion_beyond_the_matchers_range():
  from scipy import ndimage
  from mcjepa_jax.evaluate.flow_eval import coarse_to_fine
  rng = np.random.default_rng(2)
  texture = ndimage.gaussian_filter(rng.random((112, 112, 3)), (3, 3, 0)).astype(np.float32)
  shift = (12, -8)  # (u, v) px: frame 2 is frame 1 moved right by 12 and up by 8
  frame1 = texture[16:80, 16:80]
  frame2 = texture[16 - shift[1]:80 - shift[1], 16 - shift[0]:80 - shift[0]]
  matcher = _short_range_matcher(4)
  plain = coarse_to_fine(matcher, frame1[None], frame2[None], 1)[0]
  assert np.all(np.abs(plain) <= 4)  # out of range: the matcher cannot see it
  flow = coarse_to_fine(matcher, frame1[None], frame2[None], 4)[0]
  np.testing.assert_allclose(flow[20:44, 20:44], np.broadcast_to(shift, (24, 24, 2)), atol=0.25)
  with pytest.raises(ValueError, match="integer >= 1"):
    coarse_to_fine(matcher, frame1[None], frame2[None], 0)


def test_coarse_to_fine_composes_the_residual_with_the_coarse_flow():
  """r(x) + c(x + r(x)): with a coarse flow that varies along x, the residual's displacement matters."""
  from mcjepa_jax.evaluate.flow_eval import coarse_to_fine
  height, width = 16, 32
  ramp = np.broadcast_to(np.linspace(0.0, 3.1, width, dtype=np.float32)[None, :, None], (height, width, 1))
  coarse_field = np.concatenate([ramp, np.zeros_like(ramp)], axis=-1)

  def predict(frames1, frames2):
    if frames1.shape[1] < height:  # the coarse call: a field that upsamples to exactly `coarse_field` x 1
      return np.asarray(resize_flow_field(coarse_field, frames1.shape[1:3]))[None]
    return np.full((1, height, width, 2), [2.0, 0.0], np.float32)  # the residual: 2 px right

  frames = np.zeros((1, height, width, 3), np.float32)
  flow = coarse_to_fine(predict, frames, frames, 2)[0]
  upsampled = resize_flow_field(np.asarray(resize_flow_field(coarse_field, (8, 16))), (height, width))
  expected_u = 2.0 + np.interp(np.arange(width) + 2.0, np.arange(width), upsampled[0, :, 0])
  np.testing.assert_allclose(flow[..., 0], np.broadcast_to(expected_u, (height, width)), atol=1e-5)
  np.testing.assert_allclose(flow[..., 1], 0.0, atol=1e-6)
