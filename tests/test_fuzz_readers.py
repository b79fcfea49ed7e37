"""Property-based fuzzing of the file readers (issue 15): damaged files raise DataFormatError naming the file.

Each reader gets random truncations, bit flips and byte overwrites of a valid
file of its format (and plain random bytes). Whatever happens, the outcome is
either a DataFormatError whose message names the file, or a result with the
shape and dtype the reader promises: never another exception, never a hang.
"""

import io

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # pylint: disable=g-import-not-at-top

from mcjepa_jax.data import formats  # pylint: disable=g-import-not-at-top

EXAMPLES = 200


def _valid_files(tmp):
  rng = np.random.default_rng(0)
  flow = rng.normal(size=(6, 9, 2)).astype(np.float32)
  files = {}
  formats.write_flo(str(tmp / "a.flo"), flow)
  files["flo"] = (tmp / "a.flo").read_bytes()
  formats.write_pfm(str(tmp / "a.pfm"), np.concatenate([flow, np.zeros((6, 9, 1), np.float32)], -1))
  files["pfm"] = (tmp / "a.pfm").read_bytes()
  formats.write_kitti_flow(str(tmp / "a_kitti.png"), flow)
  files["kitti"] = (tmp / "a_kitti.png").read_bytes()
  mask = Image.fromarray(rng.integers(0, 3, size=(6, 9)).astype(np.uint8), mode="P")
  mask.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
  buffer = io.BytesIO()
  mask.save(buffer, format="PNG")
  files["mask"] = buffer.getvalue()
  image = Image.fromarray((rng.uniform(size=(6, 9, 3)) * 255).astype(np.uint8))
  for kind, fmt in (("png", "PNG"), ("jpg", "JPEG"), ("ppm", "PPM")):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    files[kind] = buffer.getvalue()
  return files


def _check_flow(result):
  flow, valid = result
  assert flow.ndim == 3 and flow.shape[-1] == 2 and flow.dtype == np.float32
  assert valid.shape == flow.shape[:2] and valid.dtype == bool


def _check_image(result):
  assert result.ndim == 3 and result.shape[-1] == 3 and result.dtype == np.float32
  assert np.all((result >= 0) & (result <= 1))


def _check_mask(result):
  assert result.ndim == 2 and np.issubdtype(result.dtype, np.integer)


READERS = {
    "flo": (".flo", formats.read_flo, _check_flow),
    "pfm": (".pfm", formats.read_pfm_flow, _check_flow),
    "kitti": (".png", formats.read_kitti_flow, _check_flow),
    "mask": (".png", formats.read_mask, _check_mask),
    "png": (".png", formats.read_image, _check_image),
    "jpg": (".jpg", formats.read_image, _check_image),
    "ppm": (".ppm", formats.read_image, _check_image),
}


@st.composite
def damaged(draw, original):
  data = bytearray(original)
  kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "random"]))
  if kind == "truncate":
    return bytes(data[:draw(st.integers(0, len(data) - 1))])
  if kind == "random":
    return draw(st.binary(min_size=0, max_size=2 * len(data)))
  for _ in range(draw(st.integers(1, 8))):
    position = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
      data[position] ^= 1 << draw(st.integers(0, 7))
    else:
      data[position] = draw(st.integers(0, 255))
  return bytes(data)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_damaged_files_give_data_format_errors_naming_the_file(reader, tmp_path_factory):
  suffix, read, check = READERS[reader]
  folder = tmp_path_factory.mktemp(f"fuzz_{reader}")
  original = _valid_files(folder)[reader]
  check(read(str(_write(folder, "valid" + suffix, original))))  # the undamaged file reads

  @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
  @given(data=damaged(original))
  def fuzz(data):
    path = _write(folder, "damaged" + suffix, data)
    try:
      result = read(str(path))
    except formats.DataFormatError as e:
      assert str(path) in str(e)
      return
    check(result)

  fuzz()


def _write(folder, name, data):
  path = folder / name
  path.write_bytes(data)
  return path
