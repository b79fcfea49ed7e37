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
