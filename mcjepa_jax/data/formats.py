"""Readers (and writers) of the real datasets' file formats.

Middlebury `.flo`, KITTI 16-bit PNG flow, PFM (FlyingThings3D), PNG/PPM/JPEG
frames and DAVIS masks. Every reader raises `DataFormatError` naming the
file when it is unreadable, so a bad file gives one clear message instead of
a deep traceback.
"""

import os
import re

import numpy as np
from PIL import Image

FLO_MAGIC = 202021.25          # first float of every Middlebury .flo file
FLO_UNKNOWN = 1e9              # flow components at or above this are "unknown"
KITTI_OFFSET = 2.0**15         # KITTI PNG flow: u = (value - 2^15) / 64
KITTI_SCALE = 64.0


class DataFormatError(ValueError):
  """A data file is missing, truncated or not in the expected format."""


def read_flo(path):
  """Middlebury `.flo`: returns (flow [H, W, 2] float32, valid [H, W] bool).

  Unknown flow (|u| or |v| >= 1e9, as Middlebury marks it) is invalid.
  """
  try:
    with open(path, "rb") as f:
      header = f.read(12)
      if len(header) < 12:
        raise DataFormatError(f"{path}: truncated .flo header ({len(header)} of 12 bytes)")
      magic = np.frombuffer(header[:4], "<f4")[0]
      if magic != np.float32(FLO_MAGIC):
        raise DataFormatError(f"{path}: not a .flo file (magic number {magic!r}, expected {FLO_MAGIC})")
      width, height = (int(x) for x in np.frombuffer(header[4:], "<i4"))
      if not (0 < width < 100_000 and 0 < height < 100_000):
        raise DataFormatError(f"{path}: implausible .flo size {width}x{height}")
      payload = f.read()
  except OSError as e:
    raise DataFormatError(f"{path}: cannot read .flo file ({e.strerror})") from None
  expected = width * height * 2
  if len(payload) != 4 * expected:
    raise DataFormatError(f"{path}: .flo data has {len(payload)} bytes, expected {expected} float32 values "
                          f"({4 * expected} bytes) for {width}x{height}")
  data = np.frombuffer(payload, "<f4")
  flow = data.reshape(height, width, 2).astype(np.float32)
  valid = np.all(np.abs(flow) < FLO_UNKNOWN, axis=-1) & np.all(np.isfinite(flow), axis=-1)
  return np.where(valid[..., None], flow, 0.0).astype(np.float32), valid


def write_flo(path, flow):
  """Writes [H, W, 2] flow as a Middlebury `.flo` file."""
  flow = np.asarray(flow, np.float32)
  if flow.ndim != 3 or flow.shape[-1] != 2:
    raise ValueError(f"write_flo needs [H, W, 2] flow, got {flow.shape}")
  with open(path, "wb") as f:
    np.asarray([FLO_MAGIC], "<f4").tofile(f)
    np.asarray([flow.shape[1], flow.shape[0]], "<i4").tofile(f)
    flow.astype("<f4").tofile(f)


def read_image(path):
  """PNG/PPM/JPEG frame -> [H, W, 3] float32 in [0, 1].

  Grey (8 or 16 bit) is tiled to three channels, alpha is dropped, palette
  and other modes are converted to RGB, 16-bit channels are scaled by 65535.
  """
  if not os.path.exists(path):
    raise DataFormatError(f"{path}: image file not found")
  if os.path.getsize(path) == 0:
    raise DataFormatError(f"{path}: image file is empty")
  try:
    with Image.open(path) as image:
      image.load()
      if image.mode not in ("RGB", "RGBA", "L") and not image.mode.startswith("I"):
        image = image.convert("RGB")  # palette, grey + alpha, CMYK, 1-bit, ...
      array = np.asarray(image)
  except Exception as e:  # PIL raises several types for corrupt data.  pylint: disable=broad-except
    raise DataFormatError(f"{path}: cannot decode image ({e})") from None
  if array.dtype.kind in "ui" and array.dtype.itemsize > 1:  # 16-bit PNGs open as I;16 or I (int32)
    array = np.clip(array.astype(np.float32) / 65535.0, 0.0, 1.0)
  else:
    array = array.astype(np.float32) / 255.0
  if array.ndim == 2:
    array = np.repeat(array[..., None], 3, axis=-1)
  return np.ascontiguousarray(array[..., :3])


def read_pair(path1, path2):
  """Two frames that must have the same size; the error names both files otherwise."""
  frame1, frame2 = read_image(path1), read_image(path2)
  if frame1.shape != frame2.shape:
    raise DataFormatError(f"frames differ in size: {path1} is {frame1.shape[:2]}, {path2} is {frame2.shape[:2]}")
  return frame1, frame2


def _read_bytes(path, what):
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise DataFormatError(f"{path}: cannot read {what} ({e.strerror})") from None


def _decode_png16(path, data):
  """16-bit RGB PNG -> uint16 [H, W, 3]. PIL truncates 48-bit PNGs to 8 bits, TensorFlow does not."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    return tf.io.decode_png(data, channels=3, dtype=tf.uint16).numpy()
  except Exception as e:  # pylint: disable=broad-except
    raise DataFormatError(f"{path}: cannot decode 16-bit PNG ({str(e).splitlines()[0]})") from None


def read_kitti_flow(path):
  """KITTI flow PNG (flow_occ / flow_noc): returns (flow [H, W, 2] float32, valid [H, W] bool).

  Channels are (u, v, valid) as uint16; u = (value - 2^15) / 64. A file
  that is not a 16-bit PNG (e.g. an 8-bit picture of flow) is rejected.
  """
  data = _read_bytes(path, "KITTI flow PNG")
  if not data.startswith(b"\x89PNG\r\n\x1a\n"):
    raise DataFormatError(f"{path}: not a PNG file")
  # IHDR: width, height (4 bytes each), then bit depth.
  if len(data) < 33 or data[24] != 16:
    raise DataFormatError(f"{path}: KITTI flow must be a 16-bit PNG, found bit depth "
                          f"{data[24] if len(data) > 24 else 'unknown'}")
  raw = _decode_png16(path, data).astype(np.float32)
  flow = (raw[..., :2] - KITTI_OFFSET) / KITTI_SCALE
  valid = raw[..., 2] > 0
  return np.where(valid[..., None], flow, 0.0).astype(np.float32), valid


def write_kitti_flow(path, flow, valid=None):
  """Writes [H, W, 2] flow (and optional [H, W] validity) as a KITTI 16-bit PNG."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  flow = np.asarray(flow, np.float64)
  if flow.ndim != 3 or flow.shape[-1] != 2:
    raise ValueError(f"write_kitti_flow needs [H, W, 2] flow, got {flow.shape}")
  valid = np.ones(flow.shape[:2], bool) if valid is None else np.asarray(valid, bool)
  encoded = np.clip(np.rint(flow * KITTI_SCALE + KITTI_OFFSET), 0, 2**16 - 1)
  raw = np.concatenate([encoded, valid[..., None]], axis=-1).astype(np.uint16)
  raw[~valid, :2] = 0
  with open(path, "wb") as f:
    f.write(tf.io.encode_png(raw).numpy())


def read_pfm(path):
  """PFM (FlyingThings3D flow and disparity): returns float32 [H, W] or [H, W, 3], top row first."""
  data = _read_bytes(path, "PFM file")
  match = re.match(rb"(PF|Pf)\s+(\d+)\s+(\d+)\s+([-+0-9.eE]+)\s", data)
  if not match:
    raise DataFormatError(f"{path}: not a PFM file (header {data[:16]!r})")
  channels = 3 if match.group(1) == b"PF" else 1
  width, height = int(match.group(2)), int(match.group(3))
  try:
    scale = float(match.group(4))
  except ValueError:
    raise DataFormatError(f"{path}: PFM scale {match.group(4)!r} is not a number") from None
  if not (0 < width < 100_000 and 0 < height < 100_000):
    raise DataFormatError(f"{path}: implausible PFM size {width}x{height}")
  # A negative scale means little-endian samples.
  dtype = "<f4" if scale < 0 else ">f4"
  expected = width * height * channels
  payload = data[match.end():]
  if len(payload) < 4 * expected:
    raise DataFormatError(f"{path}: PFM data has {len(payload)} bytes, expected {expected} float32 values "
                          f"({4 * expected} bytes) for {width}x{height}x{channels}")
  values = np.frombuffer(payload[:4 * expected], dtype)
  array = values.reshape(height, width, channels)[::-1].astype(np.float32)
  return array[..., 0] if channels == 1 else array


def write_pfm(path, array):
  """Writes [H, W] or [H, W, 3] float32 as little-endian PFM."""
  array = np.asarray(array, np.float32)
  channels = 1 if array.ndim == 2 else array.shape[-1]
  if channels not in (1, 3):
    raise ValueError(f"PFM holds 1 or 3 channels, got shape {array.shape}")
  with open(path, "wb") as f:
    f.write(f"{'PF' if channels == 3 else 'Pf'}\n{array.shape[1]} {array.shape[0]}\n-1.0\n".encode())
    array[::-1].astype("<f4").tofile(f)


def read_pfm_flow(path):
  """FlyingThings3D flow `.pfm` (u, v, 0): returns (flow [H, W, 2], valid [H, W])."""
  array = read_pfm(path)
  if array.ndim != 3:
    raise DataFormatError(f"{path}: a flow PFM needs 3 channels, found 1")
  flow = array[..., :2]
  valid = np.all(np.isfinite(flow), axis=-1) & np.all(np.abs(flow) < FLO_UNKNOWN, axis=-1)
  return np.where(valid[..., None], flow, 0.0).astype(np.float32), valid


def read_flow(path):
  """Any ground-truth flow file by extension: .flo, .pfm, or KITTI .png -> (flow, valid)."""
  ext = os.path.splitext(str(path))[1].lower()
  readers = {".flo": read_flo, ".pfm": read_pfm_flow, ".png": read_kitti_flow}
  if ext not in readers:
    raise DataFormatError(f"{path}: unknown flow file type {ext!r} (known: {sorted(readers)})")
  return readers[ext](path)


def read_mask(path):
  """DAVIS annotation -> int32 [H, W] object ids.

  DAVIS 2017 stores palette PNGs whose indices are object ids; DAVIS 2016
  stores binary masks as 0/255 (grey or RGB), read as ids 0/1.
  """
  if not os.path.exists(path):
    raise DataFormatError(f"{path}: mask file not found")
  try:
    with Image.open(path) as image:
      image.load()
      mode = image.mode
      array = np.asarray(image)
  except Exception as e:  # pylint: disable=broad-except
    raise DataFormatError(f"{path}: cannot decode mask ({e})") from None
  if mode == "P":
    return array.astype(np.int32)
  if array.ndim == 3:
    array = array[..., :3].max(axis=-1)
  return (array >= 128).astype(np.int32)
