"""Readers used by evaluation: .flo round trip and clear errors naming the file."""

import numpy as np
import pytest

from mcjepa_jax.data.formats import DataFormatError, read_flo, read_image, read_pair, write_flo


def test_flo_round_trip_and_unknown_values(tmp_path):
  flow = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
  flow[1, 2] = 1e9
  path = tmp_path / "a.flo"
  write_flo(path, flow)
  got, valid = read_flo(path)
  assert got.shape == (5, 7, 2) and not valid[1, 2] and valid.sum() == 34
  np.testing.assert_array_equal(got[valid], flow[valid])


def test_wrong_magic_and_truncation_name_the_file(tmp_path):
  path = tmp_path / "bad.flo"
  write_flo(path, np.zeros((4, 4, 2), np.float32))
  data = bytearray(path.read_bytes())
  data[0] ^= 0xFF
  path.write_bytes(bytes(data))
  with pytest.raises(DataFormatError, match="bad.flo.*magic"):
    read_flo(path)
  short = tmp_path / "short.flo"
  write_flo(short, np.zeros((4, 4, 2), np.float32))
  short.write_bytes(short.read_bytes()[:-8])
  with pytest.raises(DataFormatError, match="short.flo.*expected 32"):
    read_flo(short)


def test_corrupt_image_and_size_mismatch_name_the_files(tmp_path):
  from PIL import Image
  Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "a.png")
  Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "b.png")
  (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
  assert read_image(tmp_path / "a.png").shape == (4, 5, 3)
  with pytest.raises(DataFormatError, match="broken.png"):
    read_image(tmp_path / "broken.png")
  with pytest.raises(DataFormatError, match="a.png.*b.png"):
    read_pair(tmp_path / "a.png", tmp_path / "b.png")


def test_real_samples_read(shared_data):
  flow, valid = read_flo(shared_data / "Sintel" / "training" / "flow" / "alley_1" / "frame_0002.flo")
  assert flow.shape == (436, 1024, 2) and valid.all()
  _, whale_valid = read_flo(shared_data / "middlebury" / "other-gt-flow" / "RubberWhale" / "flow10.flo")
  assert 0 < whale_valid.mean() < 1  # unknown flow (1e9) is marked invalid


def test_kitti_png_round_trip_and_8_bit_rejection(tmp_path):
  from mcjepa_jax.data.formats import read_kitti_flow, write_kitti_flow
  rng = np.random.default_rng(1)
  flow = np.round(rng.uniform(-200, 200, size=(6, 9, 2)) * 64) / 64  # exactly representable
  valid = rng.uniform(size=(6, 9)) > 0.3
  write_kitti_flow(tmp_path / "f.png", flow, valid)
  got, got_valid = read_kitti_flow(tmp_path / "f.png")
  np.testing.assert_array_equal(got_valid, valid)
  np.testing.assert_array_equal(got[valid], flow[valid].astype(np.float32))
  assert np.all(got[~valid] == 0)
  from PIL import Image
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "eight.png")
  with pytest.raises(DataFormatError, match="eight.png.*16-bit"):
    read_kitti_flow(tmp_path / "eight.png")


def test_pfm_round_trip_both_endiannesses_and_truncation(tmp_path):
  from mcjepa_jax.data.formats import read_pfm, read_pfm_flow, write_pfm
  array = np.random.default_rng(2).normal(size=(5, 4, 3)).astype(np.float32)
  write_pfm(tmp_path / "a.pfm", array)
  np.testing.assert_array_equal(read_pfm(tmp_path / "a.pfm"), array)
  flow, valid = read_pfm_flow(tmp_path / "a.pfm")
  np.testing.assert_array_equal(flow, array[..., :2])
  assert valid.all()
  # Big-endian (positive scale), written by hand, bottom row first as the format says.
  grey = np.arange(6, dtype=np.float32).reshape(2, 3)
  (tmp_path / "b.pfm").write_bytes(b"Pf\n3 2\n1.0\n" + grey[::-1].astype(">f4").tobytes())
  np.testing.assert_array_equal(read_pfm(tmp_path / "b.pfm"), grey)
  (tmp_path / "c.pfm").write_bytes(b"Pf\n3 2\n1.0\n" + grey[:1].astype(">f4").tobytes())
  with pytest.raises(DataFormatError, match="c.pfm.*expected 6"):
    read_pfm(tmp_path / "c.pfm")
  (tmp_path / "d.pfm").write_bytes(b"P6\n3 2\n255\n")
  with pytest.raises(DataFormatError, match="d.pfm.*not a PFM"):
    read_pfm(tmp_path / "d.pfm")


def test_davis_masks_binary_and_palette(tmp_path, shared_data):
  from PIL import Image
  from mcjepa_jax.data.formats import read_mask
  ids = np.array([[0, 1, 2], [2, 2, 0]], np.uint8)
  palette = Image.fromarray(ids, mode="P")
  palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
  palette.save(tmp_path / "p.png")
  np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), ids)
  mask = read_mask(shared_data / "DAVIS" / "Annotations" / "480p" / "blackswan" / "00000.png")
  assert mask.shape == (480, 854) and set(np.unique(mask)) == {0, 1}


def test_kitti_devkit_sample_fl_all_against_numpy(shared_data):
  """Fl-all of the devkit's flow_est.png against flow_gt.png, recomputed here from the raw 16-bit values."""
  import tensorflow as tf
  from mcjepa_jax.data.formats import read_kitti_flow
  from mcjepa_jax.evaluate.flow_eval import flow_metrics
  root = shared_data / "kitti_devkit_sample"
  gt, valid = read_kitti_flow(root / "flow_gt.png")
  est, _ = read_kitti_flow(root / "flow_est.png")
  got = flow_metrics(est, gt, valid)

  def raw(name):
    return tf.io.decode_png((root / name).read_bytes(), dtype=tf.uint16).numpy().astype(np.float64)
  g, e = raw("flow_gt.png"), raw("flow_est.png")
  mask = g[..., 2] == 1
  du = (e[..., 0] - g[..., 0]) / 64.0
  dv = (e[..., 1] - g[..., 1]) / 64.0
  err = np.sqrt(du**2 + dv**2)[mask]
  mag = np.sqrt(((g[..., 0] - 2**15) / 64)**2 + ((g[..., 1] - 2**15) / 64)**2)[mask]
  assert got["fl"] == pytest.approx(np.mean((err > 3) & (err / mag > 0.05)), abs=1e-12)
  assert got["epe"] == pytest.approx(err.mean(), rel=1e-9)
  assert 0 < got["fl"] < 1
