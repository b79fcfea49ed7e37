"""Where a trained model's held-out flow is shrunk: slope and EPE per region of the generated pairs.

  python benchmarks/slope_regions.py --model WORKDIR_OR_EXPORT [--config configs/demo.py] [--seed 0,1,...]
      [--margin PIXELS]

The held-out pairs are the config's (`heldout_source`, the ones the end-of-training table
evaluates); `--seed 0,1,2,3,4,5,6,7` pools the held-out pairs of eight seeds (512 pairs at
the demo's `num_eval`; one seed's 64 pairs are few: the demo model's slope ranges 0.75-0.82
over the eight seeds' sets). The flow is predicted as `mcjepa_jax.predict_flow` does, with
`--margin` pixels of edge replication (its default). Regions: pixels of frame 1 visible /
occluded in frame 2 (the generator's mask), near / away from motion boundaries (Sobel
magnitude of the true flow > 1 px per pixel, dilated by --boundary_px), bins of the true flow's length and the pairs of each background photograph
(where it is flat, the background's motion is unobservable). "slope" is the least-squares slope
of the predicted against the true flow over the region (the evaluation's statistic), so the "all"
row equals the evaluation table's.
"""

import argparse

import numpy as np
from scipy import ndimage

import mcjepa_jax
from mcjepa_jax.config_utils import load_config
from mcjepa_jax.data.pipeline import heldout_source
from mcjepa_jax.data.synthetic import TEXTURE_NAMES
from mcjepa_jax.evaluate.defaults import FLOW_MARGIN

MAGNITUDE_BINS = ((0, 2), (2, 4), (4, 8), (8, np.inf))


def region_masks(flow, visible, boundary_px):
  """{name: [H, W] bool} for one pair with true flow [H, W, 2] and visibility [H, W]."""
  gradient = np.sqrt(sum(ndimage.sobel(flow[..., c], axis=a)**2 for c in range(2) for a in range(2)))
  boundary = ndimage.binary_dilation(gradient > 1.0, iterations=boundary_px)
  length = np.linalg.norm(flow, axis=-1)
  height, width = visible.shape
  ys, xs = np.mgrid[:height, :width]
  target_x, target_y = xs + flow[..., 0], ys + flow[..., 1]
  leaves = (target_x < 0) | (target_x > width - 1) | (target_y < 0) | (target_y > height - 1)
  masks = {"all": np.ones(visible.shape, bool), "visible": visible, "occluded": ~visible,
           "occluded: moves out of the frame": ~visible & leaves,
           "occluded: covered by another layer": ~visible & ~leaves,
           f"within {boundary_px} px of a motion boundary": boundary, "away from motion boundaries": ~boundary}
  for low, high in MAGNITUDE_BINS:
    masks[f"true flow length in [{low}, {high})"] = (length >= low) & (length < high)
  return masks


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", required=True, help="training workdir or export")
  parser.add_argument("--config", default="configs/demo.py", help="config whose held-out pairs to use")
  parser.add_argument("--boundary_px", type=int, default=2)
  parser.add_argument("--seed", default=None,
                      help="config.seed(s) whose held-out pairs to use, comma-separated (default: the config's)")
  parser.add_argument("--margin", type=int, default=FLOW_MARGIN, help="pixels of edge replication (predict_flow)")
  args = parser.parse_args()
  model, variables = mcjepa_jax.load_pretrained(args.model)
  config = load_config(args.config)
  seeds = [config.seed] if args.seed is None else [int(seed) for seed in args.seed.split(",")]
  samples = (source[i] for source in (heldout_source(config.data, seed) for seed in seeds) for i in range(len(source)))
  sums = {}
  pairs = 0
  for sample in samples:
    pairs += 1
    flow = np.asarray(mcjepa_jax.predict_flow(model, variables, sample["frame1"], sample["frame2"],
                                              margin=args.margin))
    truth = sample["flow"]
    visible = np.asarray(sample["visible"]).astype(bool).reshape(truth.shape[:2])
    masks = region_masks(truth, visible, args.boundary_px)
    masks[f"background: {TEXTURE_NAMES[int(sample['background'])]}"] = np.ones(visible.shape, bool)
    for name, mask in masks.items():
      entry = sums.setdefault(name, np.zeros(4))
      entry += (np.sum(flow[mask] * truth[mask]), np.sum(truth[mask]**2),
                np.sum(np.linalg.norm(flow[mask] - truth[mask], axis=-1)), mask.sum())
  total = sums["all"][3]
  print(f"{pairs} held-out pairs of {args.config} (seeds {', '.join(map(str, seeds))}), margin {args.margin}; "
        f"model {args.model}")
  print("| region | share of pixels | slope | EPE |")
  print("|---|---|---|---|")
  regions = [name for name in sums if not name.startswith("background: ")]
  # Background rows last, the most shrunk first.
  backgrounds = sorted((name for name in sums if name.startswith("background: ")),
                       key=lambda name: sums[name][0] / max(sums[name][1], 1e-12))
  for name in regions + backgrounds:
    cross, square, error, count = sums[name]
    if count:
      print(f"| {name} | {count / total:.2f} | {cross / square:.3f} | {error / count:.3f} |")


if __name__ == "__main__":
  main()
