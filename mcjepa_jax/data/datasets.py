"""Real flow datasets in their releases' own directory layouts, as grain-compatible random-access sources.

Every source lists its samples from the folder layout at construction (no
file is read) and decodes one sample per `__getitem__`:
  {"frame1", "frame2": [H, W, 3] float32 in [0, 1],
   "flow": [H, W, 2] float32 and "valid": [H, W] bool  (sources with ground truth)}.
A missing folder is reported by name at construction; a bad file by name on read.
"""

import glob
import os

import numpy as np

from mcjepa_jax.data.formats import DataFormatError, read_flow, read_image, read_mask, read_pair


class PairSource:
  """Random-access list of (frame1 path, frame2 path, flow path or None) with decoding."""

  name = "pairs"

  def __init__(self, pairs, root):
    if not pairs:
      raise DataFormatError(f"{root}: no {self.name} samples found (check the root folder and split)")
    self.pairs = list(pairs)
    self.root = root
    # A missing file should stop the run when the source is built, not at step 10,000.
    missing = [p for pair in self.pairs for p in pair if isinstance(p, str) and not os.path.exists(p)]
    if missing:
      layout = " ".join((self.__doc__ or "").split())
      raise DataFormatError(f"{root}: {len(missing)} file(s) of the {len(self.pairs)} {self.name} samples are "
                            f"missing, first {missing[0]}. Expected layout: {layout}")

  def __len__(self):
    return len(self.pairs)

  def __getitem__(self, index):
    path1, path2, flow_path = self.pairs[index]
    frame1, frame2 = read_pair(path1, path2)
    sample = {"frame1": frame1, "frame2": frame2}
    if flow_path is not None:
      flow, valid = read_flow(flow_path)
      if flow.shape[:2] != frame1.shape[:2]:
        raise DataFormatError(f"{flow_path}: flow is {flow.shape[:2]} but {path1} is {frame1.shape[:2]}")
      sample.update(flow=flow, valid=valid)
    return sample


def _require_dir(path):
  if not os.path.isdir(path):
    raise DataFormatError(f"{path}: folder not found")
  return path


class FlyingChairs(PairSource):
  """FlyingChairs_release: data/NNNNN_img1.ppm, _img2.ppm, _flow.flo; split file FlyingChairs_train_val.txt
  (line i: 1 = train, 2 = validation for sample i + 1)."""

  name = "FlyingChairs"

  def __init__(self, root, split="train", split_file=None):
    data = _require_dir(os.path.join(root, "data"))
    ids = sorted(f[:-len("_flow.flo")] for f in os.listdir(data) if f.endswith("_flow.flo"))
    if split != "all":
      split_file = split_file or os.path.join(root, "FlyingChairs_train_val.txt")
      if not os.path.exists(split_file):
        raise DataFormatError(f"{split_file}: FlyingChairs split file not found (use split='all' without it)")
      try:
        codes = np.loadtxt(split_file, dtype=np.int64, ndmin=1)
      except ValueError as e:
        raise DataFormatError(f"{split_file}: not a FlyingChairs split file of 1s and 2s ({e})") from None
      if len(codes) != len(ids):
        raise DataFormatError(f"{split_file}: {len(codes)} lines for the {len(ids)} samples in {data} (one "
                              "line per sample expected; a partial copy of the release?)")
      wanted = {"train": 1, "val": 2}.get(split)
      if wanted is None:
        raise ValueError(f"FlyingChairs split must be 'train', 'val' or 'all', got {split!r}")
      ids = [i for i in ids if int(i) - 1 < len(codes) and codes[int(i) - 1] == wanted]
    super().__init__([(os.path.join(data, f"{i}_img1.ppm"), os.path.join(data, f"{i}_img2.ppm"),
                       os.path.join(data, f"{i}_flow.flo")) for i in ids], root)


class FlyingThings3D(PairSource):
  """FlyingThings3D full release: frames_{clean,final}pass/{TRAIN,TEST}/{A,B,C}/NNNN/{left,right}/FFFF.png,
  optical_flow/.../into_{future,past}/{left,right}/OpticalFlowInto{Future,Past}_FFFF_{L,R}.pfm."""

  name = "FlyingThings3D"

  def __init__(self, root, render="clean", split="TRAIN", direction="into_future", camera="left"):
    if direction not in ("into_future", "into_past"):
      raise ValueError(f"FlyingThings3D direction must be 'into_future' or 'into_past', got {direction!r}")
    frames_root = _require_dir(os.path.join(root, f"frames_{render}pass", split))
    step = 1 if direction == "into_future" else -1
    kind = "Future" if step == 1 else "Past"
    pairs = []
    for folder in sorted(glob.glob(os.path.join(frames_root, "*", "*", camera))):
      letter, sequence = folder.split(os.sep)[-3:-1]
      frames = {int(os.path.splitext(f)[0]): os.path.join(folder, f) for f in os.listdir(folder)
                if f.endswith(".png")}
      flow_dir = os.path.join(root, "optical_flow", split, letter, sequence, direction, camera)
      for index in sorted(frames):
        if index + step in frames:
          flow = os.path.join(flow_dir, f"OpticalFlowInto{kind}_{index:04d}_{camera[0].upper()}.pfm")
          pairs.append((frames[index], frames[index + step], flow))
    super().__init__(pairs, root)


class Sintel(PairSource):
  """MPI-Sintel: training/{clean,final}/SCENE/frame_NNNN.png and training/flow/SCENE/frame_NNNN.flo
  (flow from frame N to N+1). `with_flow=False` lists every consecutive pair (raw frames, also
  test/), for self-supervised training."""

  name = "Sintel"

  def __init__(self, root, render="clean", split="training", with_flow=True):
    render_root = _require_dir(os.path.join(root, split, render))
    pairs = []
    for scene in sorted(os.listdir(render_root)):
      frames = sorted(glob.glob(os.path.join(render_root, scene, "frame_*.png")))
      for first, second in zip(frames[:-1], frames[1:]):
        flow = os.path.join(root, split, "flow", scene, os.path.basename(first)[:-4] + ".flo")
        if with_flow and not os.path.exists(flow):
          continue
        pairs.append((first, second, flow if with_flow else None))
    super().__init__(pairs, root)

  def masks(self, index):
    """(occluded, invalid) [H, W] bool of sample `index` where the release has them, else None."""
    first = self.pairs[index][0]
    scene, name = first.split(os.sep)[-2:]
    split_root = os.path.dirname(os.path.dirname(os.path.dirname(first)))
    out = []
    for kind in ("occlusions", "invalid"):
      path = os.path.join(split_root, kind, scene, name)
      out.append(read_image(path)[..., 0] > 0.5 if os.path.exists(path) else None)
    return tuple(out)


class KITTI(PairSource):
  """KITTI flow 2015 (image_2/NNNNNN_10.png, _11.png) or 2012 (colored_0/...), ground truth
  flow_occ/ (all pixels) or flow_noc/ (non-occluded) as 16-bit PNG; `with_flow=False` lists
  frame pairs only (e.g. testing/). `multiview=True` lists every consecutive pair of the
  multiview extension (NNNNNN_00.png ... _20.png per scene, no ground truth), for
  self-supervised training."""

  name = "KITTI"

  def __init__(self, root, split="training", version=2015, flow="occ", with_flow=True, multiview=False):
    images = _require_dir(os.path.join(root, split, "image_2" if version == 2015 else "colored_0"))
    pairs = []
    if multiview:
      scenes = {}
      for path in sorted(glob.glob(os.path.join(images, "*_*.png"))):
        scene, frame = os.path.basename(path)[:-4].split("_")
        scenes.setdefault(scene, {})[int(frame)] = path
      for frames in scenes.values():
        pairs += [(frames[i], frames[i + 1], None) for i in sorted(frames) if i + 1 in frames]
      super().__init__(pairs, root)
      return
    for first in sorted(glob.glob(os.path.join(images, "*_10.png"))):
      stem = os.path.basename(first)[:-len("_10.png")]
      gt = os.path.join(root, split, f"flow_{flow}", f"{stem}_10.png") if with_flow else None
      if gt is not None and not os.path.exists(gt):
        continue
      pairs.append((first, os.path.join(images, f"{stem}_11.png"), gt))
    super().__init__(pairs, root)


class Middlebury(PairSource):
  """Middlebury flow "other" set: other-data/SEQ/frame10.png, frame11.png with
  other-gt-flow/SEQ/flow10.flo (unknown-flow pixels come back invalid)."""

  name = "Middlebury"

  def __init__(self, root):
    data = _require_dir(os.path.join(root, "other-data"))
    gt_root = _require_dir(os.path.join(root, "other-gt-flow"))
    pairs = []
    for sequence in sorted(os.listdir(gt_root)):
      gt = os.path.join(gt_root, sequence, "flow10.flo")
      first = os.path.join(data, sequence, "frame10.png")
      if os.path.exists(gt) and os.path.exists(first):
        pairs.append((first, os.path.join(data, sequence, "frame11.png"), gt))
    if not pairs:
      raise DataFormatError(f"{root}: no SEQ/frame10.png with other-gt-flow/SEQ/flow10.flo found")
    super().__init__(pairs, root)


class HD1K(PairSource):
  """HD1K: hd1k_input/image_2/SSSSSS_FFFF.png, hd1k_flow_gt/flow_occ/SSSSSS_FFFF.png (KITTI PNG flow)."""

  name = "HD1K"

  def __init__(self, root):
    images = _require_dir(os.path.join(root, "hd1k_input", "image_2"))
    pairs = []
    by_sequence = {}
    for path in sorted(glob.glob(os.path.join(images, "*.png"))):
      sequence, frame = os.path.basename(path)[:-4].split("_")
      by_sequence.setdefault(sequence, []).append((int(frame), path))
    for sequence, frames in sorted(by_sequence.items()):
      for (index, first), (next_index, second) in zip(frames[:-1], frames[1:]):
        gt = os.path.join(root, "hd1k_flow_gt", "flow_occ", os.path.basename(first))
        if next_index == index + 1 and os.path.exists(gt):
          pairs.append((first, second, gt))
    super().__init__(pairs, root)


class FramePairs(PairSource):
  """Consecutive frames of unlabeled video, for self-supervised flow.

  `root` is a video file, a folder of frames, or a folder holding frame
  folders (e.g. DAVIS JPEGImages/480p) and/or video files (PyAV). Videos are
  indexed when the source is built (the presentation timestamps of their
  frames, read without decoding) and each pair is decoded on access from the
  nearest keyframe, so memory does not grow with the length of the videos.
  """

  name = "video frame"
  IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm")
  VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".webm")

  def __init__(self, root, stride=1):
    self._timestamps = {}
    if os.path.isfile(root):
      videos, folders = [root], []
    else:
      entries = sorted(os.path.join(root, e) for e in os.listdir(_require_dir(root)))
      videos = [e for e in entries if e.lower().endswith(self.VIDEO_EXTENSIONS)]
      folders = [root] + [e for e in entries if os.path.isdir(e)]
    pairs = []
    for video in videos:
      self._timestamps[video] = video_timestamps(video)
      count = len(self._timestamps[video])
      pairs += [((video, i), (video, i + stride), None) for i in range(count - stride)]
    for folder in folders:
      frames = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                      if f.lower().endswith(self.IMAGE_EXTENSIONS))
      pairs += [(a, b, None) for a, b in zip(frames[:-stride], frames[stride:])]
    super().__init__(pairs, root)

  def __getitem__(self, index):
    first, second, _ = self.pairs[index]
    if isinstance(first, tuple):
      video = first[0]
      frame1, frame2 = read_video_frames(video, self._timestamps[video], (first[1], second[1]))
      return {"frame1": frame1, "frame2": frame2}
    return super().__getitem__(index)


def _open_video(path):
  import av  # pylint: disable=g-import-not-at-top
  try:
    return av.open(str(path))
  except (av.error.FFmpegError, OSError) as e:
    raise DataFormatError(f"{path}: cannot open video ({e})") from None


def _video_stream(container, path):
  """The first video stream of an open container; DataFormatError naming `path` if it has none."""
  if not container.streams.video:
    raise DataFormatError(f"{path}: holds no video stream")
  return container.streams.video[0]


def video_info(path):
  """(frame count or None if the container does not say, frames per second or None) of a video file."""
  with _open_video(path) as container:
    stream = _video_stream(container, path)
    return (stream.frames or None), (float(stream.average_rate) if stream.average_rate else None)


def iter_video_frames(path):
  """Yields the frames of a video file one at a time as [H, W, 3] uint8 (memory does not grow with length)."""
  import av  # pylint: disable=g-import-not-at-top
  with _open_video(path) as container:
    stream = _video_stream(container, path)
    try:
      for frame in container.decode(stream):
        yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
      raise DataFormatError(f"{path}: cannot decode video ({e})") from None


def video_timestamps(path):
  """Presentation timestamps of the frames of a video, in display order, read from its packets (no decoding)."""
  with _open_video(path) as container:
    stream = _video_stream(container, path)
    stamps = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size)
  if not stamps:
    raise DataFormatError(f"{path}: video has no frames")
  return np.asarray(stamps, np.int64)


def read_video_frames(path, timestamps, indices):
  """Frames `indices` of a video as [H, W, 3] float32 in [0, 1], decoded from the keyframe before the first.

  Args:
    path: the video file.
    timestamps: its `video_timestamps`.
    indices: frame numbers (display order) to return, in the order given.
  """
  import av  # pylint: disable=g-import-not-at-top
  wanted = {int(timestamps[i]): i for i in indices}
  found = {}
  with _open_video(path) as container:
    stream = _video_stream(container, path)
    container.seek(min(wanted), stream=stream, backward=True, any_frame=False)
    try:
      for frame in container.decode(stream):
        if frame.pts in wanted:
          found[wanted[frame.pts]] = frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0
        if len(found) == len(wanted) or (frame.pts is not None and frame.pts > max(wanted)):
          break
    except av.error.FFmpegError as e:
      raise DataFormatError(f"{path}: cannot decode video ({e})") from None
  missing = [i for i in indices if i not in found]
  if missing:
    raise DataFormatError(f"{path}: frames {missing} could not be decoded")
  return [found[i] for i in indices]


def read_video(path):
  """All frames of a video file as [T, H, W, 3] float32 in [0, 1] (PyAV / FFmpeg)."""
  frames = list(iter_video_frames(path))
  if not frames:
    raise DataFormatError(f"{path}: video has no frames")
  return np.stack(frames).astype(np.float32) / 255.0


class Mixture:
  """Concatenation of sources, each repeated `repeats[i]` times (the usual flow training mixtures)."""

  def __init__(self, sources, repeats):
    if len(sources) != len(repeats) or not sources:
      raise ValueError(f"Mixture needs one repeat factor per source, got {len(sources)} and {len(repeats)}")
    self.sources = list(sources)
    self.offsets = np.cumsum([0] + [len(s) * int(r) for s, r in zip(sources, repeats)])

  def __len__(self):
    return int(self.offsets[-1])

  def __getitem__(self, index):
    if not 0 <= index < len(self):
      raise IndexError(f"mixture index {index} out of range [0, {len(self)})")
    which = int(np.searchsorted(self.offsets, index, side="right") - 1)
    source = self.sources[which]
    sample = source[int(index - self.offsets[which]) % len(source)]
    # Sources with and without ground truth mix: training only uses the frames.
    return {"frame1": sample["frame1"], "frame2": sample["frame2"]}


FLOW_SOURCES = {"flyingchairs": FlyingChairs, "flyingthings3d": FlyingThings3D, "sintel": Sintel,
                "kitti": KITTI, "hd1k": HD1K, "middlebury": Middlebury, "frames": FramePairs}


def make_flow_source(spec):
  """One source from a config entry: dict(name=..., root=..., [other constructor arguments])."""
  spec = dict(spec)
  name = spec.pop("name")
  spec.pop("repeat", None)
  if name not in FLOW_SOURCES:
    raise ValueError(f"config.data.flow_sets: unknown dataset {name!r} (known: {sorted(FLOW_SOURCES)})")
  return FLOW_SOURCES[name](**spec)


def make_flow_mixture(specs):
  """Mixture of config entries dict(name=..., root=..., repeat=N, ...)."""
  return Mixture([make_flow_source(s) for s in specs], [dict(s).get("repeat", 1) for s in specs])


class ImageFolder:
  """Every image under `root` (recursively, sorted) as {"frame1": [H, W, 3], "label": class index}.

  The class of an image is its first sub-folder under `root` (ImageNet's
  train/ layout, or any labelled folder tree); images directly in `root` get 0.
  """

  def __init__(self, root):
    _require_dir(root)
    self.paths = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                        if p.lower().endswith(FramePairs.IMAGE_EXTENSIONS + (".jpeg", ".bmp")))
    if not self.paths:
      raise DataFormatError(f"{root}: no images found")
    classes = sorted({os.path.relpath(p, root).split(os.sep)[0] for p in self.paths if os.sep in
                      os.path.relpath(p, root)})
    self.classes = {c: i for i, c in enumerate(classes)}
    self.root = root

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    path = self.paths[index]
    parts = os.path.relpath(path, self.root).split(os.sep)
    return {"frame1": read_image(path), "label": self.classes.get(parts[0], 0) if len(parts) > 1 else 0}


class TFDSImages:
  """A TFDS dataset prepared in array_record format (e.g. `imagenet2012`), random access through
  `tfds.data_source`, as {"frame1": [H, W, 3] float32 in [0, 1], "label": int}."""

  def __init__(self, name, data_dir=None, split="train"):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    try:
      self.source = tfds.data_source(name, split=split, data_dir=data_dir or None)
    except Exception as e:  # pylint: disable=broad-except
      raise DataFormatError(f"TFDS dataset {name!r} (split {split!r}) not available in data_dir "
                            f"{data_dir!r}: {str(e).splitlines()[0]} — prepare it with `tfds build "
                            f"{name} --file_format=array_record` first") from None

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    record = self.source[index]
    image = np.asarray(record["image"])
    image = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    if image.ndim == 2 or image.shape[-1] == 1:
      image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=-1)
    return {"frame1": image, "label": int(record.get("label", 0))}


def make_image_source(spec):
  """Content images from dict(name="folder", root=...) or dict(name=<tfds name>, data_dir=..., split=...)."""
  spec = dict(spec)
  name = spec.pop("name", "")
  if name == "folder":
    return ImageFolder(spec["root"])
  if not name:
    raise ValueError("config.data.image_set.name is empty: 'folder' or a TFDS name such as 'imagenet2012'")
  return TFDSImages(name, spec.get("data_dir"), spec.get("split", "train"))


class SegmentationFolder:
  """Images with per-pixel class maps, VOC layout: JPEGImages/*.jpg, SegmentationClass/*.png (palette
  indices, 255 = ignore) and optionally ImageSets/Segmentation/<split>.txt; items are
  {"frame1": [H, W, 3], "mask": [H, W] int32}."""

  def __init__(self, root, split=None, images="JPEGImages", masks="SegmentationClass"):
    self.images, self.masks = _require_dir(os.path.join(root, images)), _require_dir(os.path.join(root, masks))
    if split:
      list_file = os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt")
      if not os.path.exists(list_file):
        raise DataFormatError(f"{list_file}: split list not found")
      with open(list_file) as f:
        stems = [line.strip() for line in f if line.strip()]
    else:
      stems = sorted(os.path.splitext(f)[0] for f in os.listdir(self.masks) if f.endswith(".png"))
    if not stems:
      raise DataFormatError(f"{self.masks}: no masks found")
    self.stems = stems

  def __len__(self):
    return len(self.stems)

  def __getitem__(self, index):
    stem = self.stems[index]
    candidates = [os.path.join(self.images, stem + e) for e in (".jpg", ".png", ".jpeg")]
    image_path = next((c for c in candidates if os.path.exists(c)), candidates[0])
    image, mask = read_image(image_path), read_mask(os.path.join(self.masks, stem + ".png"))
    if mask.shape != image.shape[:2]:
      raise DataFormatError(f"{os.path.join(self.masks, stem + '.png')}: mask {mask.shape} does not match "
                            f"{image_path} {image.shape[:2]}")
    return {"frame1": image, "mask": mask}
