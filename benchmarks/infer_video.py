"""Peak memory and speed of `infer flow --video` for videos of different lengths (streaming check).

  python benchmarks/infer_video.py --model exports/demo [--lengths 100,400] [--size 128x96]

Writes a generated video (a texture panning one pixel per frame) of each
length, runs the inference command line on it in a fresh process and prints
its peak resident memory and pairs per second. Streaming means the peak does
not grow with the length.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def write_video(path, frames, width, height):
  import av  # pylint: disable=g-import-not-at-top
  texture = (np.random.default_rng(0).uniform(size=(height, width + frames, 3)) * 255).astype(np.uint8)
  with av.open(path, mode="w") as container:
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for t in range(frames):
      for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, t:t + width]),
                                                             format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", required=True)
  parser.add_argument("--lengths", default="100,400")
  parser.add_argument("--size", default="128x96")
  args = parser.parse_args()
  width, height = (int(x) for x in args.size.split("x"))
  print(f"{'frames':>7}{'peak RSS MiB':>14}{'wall s':>9}{'pairs/s':>9}")
  with tempfile.TemporaryDirectory() as tmp:
    for length in (int(x) for x in args.lengths.split(",")):
      video = os.path.join(tmp, f"v{length}.mp4")
      write_video(video, length, width, height)
      started = time.time()
      # A fresh process per length that reports its own peak resident memory at exit.
      wrapper = ("import resource, runpy, sys\n"
                 f"sys.argv = ['infer', 'flow', '--model', {args.model!r}, '--video', {video!r}, "
                 f"'--out', {os.path.join(tmp, f'out{length}')!r}]\n"
                 "try:\n  runpy.run_module('mcjepa_jax.infer', run_name='__main__')\n"
                 "except SystemExit as e:\n  assert not e.code, e.code\n"
                 "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
      done = subprocess.run([sys.executable, "-c", wrapper], check=True, capture_output=True, text=True)
      wall = time.time() - started
      peak = int(done.stdout.split("PEAK")[-1])
      print(f"{length:>7}{peak / 1024:>14.0f}{wall:>9.1f}{(length - 1) / wall:>9.2f}")


if __name__ == "__main__":
  main()
