"""Run a trained MC-JEPA on your own frames and videos.

  python -m mcjepa_jax.infer flow --model DIR img1.png img2.png [img3.png ...] --out OUT [--arrows]
  python -m mcjepa_jax.infer flow --model DIR --video in.mp4 --out OUT [--flo]
  python -m mcjepa_jax.infer features --model DIR img1.png [img2.png ...] --out features.npz [--levels 3,4]

--model is an export (`mcjepa_jax.export`) or a training workdir. For each
consecutive pair of images `flow` writes OUT/<frame1>.flo (Middlebury, read
by `data.formats.read_flo`) and OUT/<frame1>_flow.png (colour wheel), with
`--arrows` also an arrow overlay on frame 1. With `--video` it writes
OUT/flow.mp4 (input | colour wheel, side by side), streaming the frames.
`--max_size N` downscales frames whose longer side exceeds N (the flow is
rescaled back to the input resolution); pairs are predicted `--batch` at a time.
"""

from mcjepa_jax.console import quiet_environment

quiet_environment()  # before any import that may load TensorFlow

import argparse
import os
import sys

import numpy as np

from mcjepa_jax.console import Progress, format_duration
from mcjepa_jax.evaluate.defaults import FLOW_MARGIN, OCCLUSION_FILL_RADIUS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


class InferError(Exception):
  """Bad input to the command line: printed as one line, nothing written."""


def _parser():
  parser = argparse.ArgumentParser(prog="python -m mcjepa_jax.infer", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--verbosity", type=int, default=-1, help="1 shows library INFO logs")
  commands = parser.add_subparsers(dest="command", required=True)
  flow = commands.add_parser("flow", help="optical flow between consecutive frames")
  flow.add_argument("images", nargs="*", help="two or more frames, in order")
  flow.add_argument("--model", required=True, help="export folder or training workdir")
  flow.add_argument("--video", help="a video file instead of images")
  flow.add_argument("--out", required=True, help="output folder")
  flow.add_argument("--arrows", action="store_true", help="also draw arrows over frame 1")
  flow.add_argument("--flo", action="store_true", help="with --video: also write one .flo per frame pair")
  flow.add_argument("--max_size", type=int, default=None, help="downscale frames longer than this (pixels)")
  flow.add_argument("--batch", type=int, default=4, help="pairs per forward pass")
  flow.add_argument("--mode", choices=("pad", "resize"), default="pad",
                    help="reach the encoder's stride by padding or by resizing")
  flow.add_argument("--margin", type=_pixels, default=FLOW_MARGIN,
                    help="pixels of edge replication around the frames (less shrunk flow near the border)")
  flow.add_argument("--fill_occlusions", type=_pixels, default=0, metavar="RADIUS",
                    help=f"give pixels that fail the forward-backward check the colour-weighted flow of visible "
                         f"pixels within RADIUS (a post-process; {OCCLUSION_FILL_RADIUS} measured best; 0 = off)")
  flow.add_argument("--coarse_factor", type=_factor, default=1, metavar="N",
                    help="predict first on frames downscaled N times, then the residual at full size: for motion "
                         "much longer than the model was trained on (4 measured on FlyingChairs; 1 = off)")
  feats = commands.add_parser("features", help="pooled and per-level encoder features")
  feats.add_argument("images", nargs="+")
  feats.add_argument("--model", required=True)
  feats.add_argument("--out", required=True, help="output .npz")
  feats.add_argument("--levels", default="", help="pyramid levels to save besides the pooled features, e.g. 3,4")
  feats.add_argument("--max_size", type=int, default=None)
  return parser


def _pixels(text):
  """argparse type: a count of pixels >= 0 (argparse prints the message and exits 2 otherwise)."""
  value = int(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f"must be >= 0 pixels, got {value}")
  return value


def _factor(text):
  """argparse type: an integer downscaling factor >= 1."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
  return value


def _scaled_size(height, width, max_size):
  if not max_size or max(height, width) <= max_size:
    return height, width
  scale = max_size / max(height, width)
  return max(1, round(height * scale)), max(1, round(width * scale))


def _downscale(frames, max_size):
  """[B, H, W, 3] float frames -> frames whose longer side is at most `max_size` (area-averaged)."""
  import jax  # pylint: disable=g-import-not-at-top
  height, width = frames.shape[1:3]
  size = _scaled_size(height, width, max_size)
  if size == (height, width):
    return frames
  return np.asarray(jax.image.resize(frames, (frames.shape[0], *size, 3), "linear", antialias=True))


def predict_pairs(model, variables, frames1, frames2, max_size=None, mode="pad", margin=FLOW_MARGIN, fill_radius=0,
                  coarse_factor=1):
  """Flow [B, H, W, 2] at the input resolution, predicted at most `max_size` pixels on the longer side
  (`coarse_factor`: see `inference.predict_flow`)."""
  from mcjepa_jax.evaluate.flow_eval import resize_flow_field  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.inference import predict_flow  # pylint: disable=g-import-not-at-top
  height, width = frames1.shape[1:3]
  small1, small2 = _downscale(frames1, max_size), _downscale(frames2, max_size)
  flow = predict_flow(model, variables, small1, small2, mode, margin, fill_radius, coarse_factor=coarse_factor)
  if small1.shape[1:3] != (height, width):
    flow = np.stack([resize_flow_field(f, (height, width)) for f in flow])
  return flow


def _read_frames(paths):
  from mcjepa_jax.data.formats import DataFormatError, read_image  # pylint: disable=g-import-not-at-top
  frames = []
  for path in paths:
    try:
      frames.append(read_image(path))
    except DataFormatError as e:
      raise InferError(str(e)) from None
    if frames[-1].shape != frames[0].shape:
      raise InferError(f"frames differ in size: {paths[0]} is {frames[0].shape[1]}x{frames[0].shape[0]}, "
                       f"{path} is {frames[-1].shape[1]}x{frames[-1].shape[0]} (width x height)")
  return frames


def _load(model_dir):
  from mcjepa_jax.inference import ModelLoadError, load_pretrained  # pylint: disable=g-import-not-at-top
  try:
    return load_pretrained(model_dir)
  except ModelLoadError as e:
    raise InferError(f"--model: {e}") from None


def arrow_overlay(frame, flow, spacing=None, dpi=100):
  """[H, W, 3] float frame with flow arrows drawn over it -> [H, W, 3] uint8.

  One arrow every `spacing` pixels (default: 1/24 of the shorter side), lengths
  scaled so that the longest arrow spans 0.9 `spacing` (the factor is printed
  in the corner): small motions stay visible.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  height, width = frame.shape[:2]
  figure = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
  axes = figure.add_axes((0, 0, 1, 1))
  axes.imshow(np.clip(frame, 0, 1))
  spacing = spacing or max(8, min(height, width) // 24)
  ys, xs = np.mgrid[spacing // 2:height:spacing, spacing // 2:width:spacing]
  u, v = flow[ys, xs, 0], flow[ys, xs, 1]
  longest = float(np.hypot(u, v).max()) or 1.0
  magnify = 0.9 * spacing / longest
  axes.quiver(xs, ys, u * magnify, v * magnify, color="yellow", angles="xy", scale_units="xy", scale=1,
              width=0.0025, headwidth=4)
  axes.text(4, 4, f"arrows x{magnify:.2g}", color="yellow", va="top", fontsize=max(6, height // 40))
  axes.set_axis_off()
  figure.canvas.draw()
  image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
  plt.close(figure)
  return image


def flow_images(args):
  """`flow` on image files: one .flo and one PNG (and arrows) per consecutive pair; returns the written paths."""
  from mcjepa_jax.data.formats import write_flo  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.evaluate.visualize import flow_to_rgb, save_png  # pylint: disable=g-import-not-at-top
  if len(args.images) < 2:
    raise InferError(f"flow needs at least two frames (got {len(args.images)}: {args.images}); "
                     "or pass --video")
  frames = _read_frames(args.images)
  model, variables = _load(args.model)
  os.makedirs(args.out, exist_ok=True)
  written = []
  pairs = len(frames) - 1
  progress = Progress(pairs, "pairs")
  for start in range(0, pairs, args.batch):
    stop = min(start + args.batch, pairs)
    flow = predict_pairs(model, variables, np.stack(frames[start:stop]), np.stack(frames[start + 1:stop + 1]),
                         args.max_size, args.mode, args.margin, args.fill_occlusions, args.coarse_factor)
    for i, pair_flow in zip(range(start, stop), flow):
      stem = os.path.join(args.out, os.path.splitext(os.path.basename(args.images[i]))[0])
      write_flo(stem + ".flo", pair_flow)
      save_png(stem + "_flow.png", flow_to_rgb(pair_flow))
      written += [stem + ".flo", stem + "_flow.png"]
      if args.arrows:
        save_png(stem + "_arrows.png", arrow_overlay(frames[i], pair_flow))
        written.append(stem + "_arrows.png")
    progress.update(stop)
  return written


def _video_writer(path, width, height, fps):
  import av  # pylint: disable=g-import-not-at-top
  container = av.open(path, mode="w")
  codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
  stream = container.add_stream(codec, rate=round(fps or 25))
  # Most codecs need even sizes.
  stream.width, stream.height, stream.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
  return container, stream


def flow_video(args):
  """`flow --video`: a side-by-side flow video, streaming (only `--batch` + 1 frames in memory)."""
  import av  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.data.datasets import iter_video_frames, video_info  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.data.formats import DataFormatError, write_flo  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.evaluate.visualize import flow_to_rgb  # pylint: disable=g-import-not-at-top
  if args.images:
    raise InferError("give either image files or --video, not both")
  if not os.path.isfile(args.video):
    raise InferError(f"--video {args.video}: file not found")
  try:
    count, fps = video_info(args.video)
  except DataFormatError as e:
    raise InferError(str(e)) from None
  model, variables = _load(args.model)
  os.makedirs(args.out, exist_ok=True)
  out_path = os.path.join(args.out, "flow.mp4")
  container = stream = None
  previous = None
  batch1, batch2 = [], []
  done = 0
  progress = Progress(max((count or 0) - 1, 1), "pairs")

  def flush():
    nonlocal container, stream, done
    flow = predict_pairs(model, variables, np.stack(batch1), np.stack(batch2), args.max_size, args.mode, args.margin,
                         args.fill_occlusions, args.coarse_factor)
    for frame, pair_flow in zip(batch1, flow):
      panel = np.concatenate([(frame * 255).round().astype(np.uint8), flow_to_rgb(pair_flow)], axis=1)
      if container is None:
        container, stream = _video_writer(out_path, panel.shape[1], panel.shape[0], fps)
      padded = np.pad(panel, ((0, stream.height - panel.shape[0]), (0, stream.width - panel.shape[1]), (0, 0)))
      for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
        container.mux(packet)
      if args.flo:
        write_flo(os.path.join(args.out, f"frame_{done:06d}.flo"), pair_flow)
      done += 1
    batch1.clear()
    batch2.clear()
    progress.total = max(progress.total, done)
    progress.update(done)

  try:
    for frame in iter_video_frames(args.video):
      frame = frame.astype(np.float32) / 255.0
      if previous is not None:
        batch1.append(previous)
        batch2.append(frame)
        if len(batch1) == args.batch:
          flush()
      previous = frame
    if batch1:
      flush()
  except DataFormatError as e:
    if container is not None:
      container.close()
      os.remove(out_path)  # no partial video
    raise InferError(str(e)) from None
  if container is not None:
    for packet in stream.encode():
      container.mux(packet)
    container.close()
  if done == 0:
    raise InferError(f"--video {args.video}: fewer than two frames")
  return [out_path]


def features_command(args):
  """`features`: pooled [N, D] and the requested levels [N, h, w, C] of every image, into one .npz."""
  from mcjepa_jax.inference import features  # pylint: disable=g-import-not-at-top
  if not args.out.endswith(".npz"):
    raise InferError(f"--out {args.out}: features are written as one .npz file")
  try:
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
  except ValueError:
    raise InferError(f"--levels {args.levels!r}: expected comma-separated integers, e.g. 3,4") from None
  frames = _read_frames(args.images)
  model, variables = _load(args.model)
  batch = _downscale(np.stack(frames), args.max_size)
  arrays = {"pooled": features(model, variables, batch), "files": np.asarray(args.images)}
  for level in levels:
    try:
      arrays[f"level{level}"] = features(model, variables, batch, level=level)
    except ValueError as e:
      raise InferError(f"--levels: {e}") from None
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  np.savez(args.out, **arrays)
  return [args.out]


def main(argv=None):
  args = _parser().parse_args(argv)
  if args.verbosity < 1:
    from mcjepa_jax.console import quiet_logging  # pylint: disable=g-import-not-at-top
    os.environ.setdefault("MCJEPA_VERBOSE", "0")
    quiet_logging()
  import time  # pylint: disable=g-import-not-at-top
  started = time.time()
  try:
    if args.command == "features":
      written = features_command(args)
    elif args.video:
      written = flow_video(args)
    else:
      written = flow_images(args)
  except InferError as e:
    print(f"infer: {e}", file=sys.stderr)
    return 2
  print(f"wrote {len(written)} file(s) to {os.path.dirname(written[0]) or '.'} "
        f"in {format_duration(time.time() - started)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
