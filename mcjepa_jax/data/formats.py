"""Readers of the real dataset file formats used in evaluation.

Every reader raises `DataFormatError` naming the file when it is unreadable,
so a bad file gives one clear message instead of a deep traceback.
"""

import os

import numpy as np
from PIL import Image

FLO_MAGIC = 202021.25          # first float of every Middlebury .flo file
FLO_UNKNOWN = 1e9              # flow components at or above this are "unknown"


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
      data = np.frombuffer(f.read(), "<f4")
  except OSError as e:
    raise DataFormatError(f"{path}: cannot read .flo file ({e.strerror})") from None
  expected = width * height * 2
  if data.size != expected:
    raise DataFormatError(f"{path}: .flo data has {data.size} values, expected {expected} for {width}x{height}")
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
  """PNG/PPM/JPEG frame -> [H, W, 3] float32 in [0, 1] (grey is tiled, alpha dropped)."""
  if not os.path.exists(path):
    raise DataFormatError(f"{path}: image file not found")
  try:
    with Image.open(path) as image:
      image.load()
      array = np.asarray(image)
  except Exception as e:  # PIL raises several types for corrupt data.  pylint: disable=broad-except
    raise DataFormatError(f"{path}: cannot decode image ({e})") from None
  if array.dtype == np.uint16:
    array = array.astype(np.float32) / 65535.0
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
