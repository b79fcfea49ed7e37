"""Classical, training-free flow references on the held-out generated pairs.

  python benchmarks/classical_flow.py [--config configs/demo.py] [--attachment 15 30]

What a learned model's held-out EPE should be read against: zero flow, and
scikit-image's TV-L1 (an unsupervised variational method that optimises each
pair separately, on grayscale frames). Prints a table (EPE, and the least-squares
slope of the flow against the truth over all pixels and the visible ones); record results with the
machine in docs/benchmarks.md.
"""

import argparse
import time

import numpy as np
from skimage.color import rgb2gray
from skimage.registration import optical_flow_tvl1

from mcjepa_jax.config_utils import load_config
from mcjepa_jax.data.pipeline import heldout_source
from mcjepa_jax.evaluate.flow_eval import endpoint_error, flow_slope


def tvl1_flow(frame1, frame2, attachment):
  """[H, W, 2] (u, v) flow from frame1 to frame2 ([H, W, 3] in [0, 1]) by TV-L1."""
  # skimage returns (row, col) displacements d with reference(x) ~ moving(x + d).
  rows, cols = optical_flow_tvl1(rgb2gray(frame1), rgb2gray(frame2), attachment=attachment)
  return np.stack([cols, rows], axis=-1)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/demo.py")
  parser.add_argument("--attachment", type=float, nargs="+", default=[15.0, 30.0],
                      help="TV-L1 data-term weights to try (15 is scikit-image's default)")
  args = parser.parse_args()
  config = load_config(args.config)
  source = heldout_source(config.data, config.seed)
  samples = [source[i] for i in range(len(source))]
  methods = [("zero flow", lambda s: np.zeros_like(s["flow"]))]
  methods += [(f"TV-L1, attachment {a:g}", lambda s, a=a: tvl1_flow(s["frame1"], s["frame2"], a))
              for a in args.attachment]
  rows = []
  for name, method in methods:
    started = time.perf_counter()
    flows = [method(s) for s in samples]
    seconds = (time.perf_counter() - started) / len(samples)
    # The slope pools every pair's pixels, as the evaluation's does (`evaluate_pairs`).
    stacked, truth = np.stack(flows), np.stack([s["flow"] for s in samples])
    visible = np.stack([s["visible"] for s in samples])
    slopes = (flow_slope(stacked, truth), flow_slope(stacked, truth, visible))
    rows.append((name, [endpoint_error(f, s["flow"]) for f, s in zip(flows, samples)],
                 [endpoint_error(f, s["flow"], s["visible"]) for f, s in zip(flows, samples)], slopes, seconds))
  print(f"held-out generated pairs: {len(samples)} x {samples[0]['flow'].shape[:2]}")
  print(f"{'method':<28} {'EPE':>7} {'EPE visible':>12} {'slope':>6} {'visible':>8} {'s/pair':>8}")
  for name, all_epe, visible_epe, (slope, visible_slope), seconds in rows:
    print(f"{name:<28} {np.mean(all_epe):7.3f} {np.mean(visible_epe):12.3f} {slope:6.3f} {visible_slope:8.3f} "
          f"{seconds:8.3f}")


if __name__ == "__main__":
  main()
