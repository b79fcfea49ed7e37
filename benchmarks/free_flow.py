"""Free-flow check of a config's flow objective (losses/calibration.py), optionally over a weight sweep.

Usage:
  python benchmarks/free_flow.py --config configs/demo.py [--pairs 16] [--steps 300]
      [--sweep loss.smooth.weight=0,1,3,10] [--set loss.smooth.units=image ...] [--scales 4]
Prints one row per setting: EPE and slope of the free flow started at the truth and at zero.
"""

import argparse

from mcjepa_jax.config_utils import apply_overrides, load_config
from mcjepa_jax.data.synthetic import SyntheticChairs
from mcjepa_jax.evaluate.calibration import free_flow_report


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/demo.py")
  parser.add_argument("--pairs", type=int, default=16)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--lr", type=float, default=0.05)
  parser.add_argument("--occlusion", type=float, default=1.0, help="occlusion mask strength")
  parser.add_argument("--scales", type=int, default=1, help="coarse-to-fine flow parameterisation (1 = per pixel)")
  parser.add_argument("--set", nargs="*", default=[], help="key=value overrides of the config")
  parser.add_argument("--sweep", default="", help="key=v1,v2,... one row per value")
  args = parser.parse_args()
  config = load_config(args.config)
  apply_overrides(config, args.set)
  source = SyntheticChairs(tuple(config.data.pairs.crop), args.pairs, seed=config.seed * 10 + 2, with_backward=True)
  samples = [source[i] for i in range(args.pairs)]
  key, _, values = args.sweep.partition("=")
  print(f"{'setting':<34}{'truth->EPE':>11}{'slope':>7}{'zero->EPE':>10}{'slope':>7}{'loss@truth':>11}"
        f"{'loss@fit':>10}")
  for value in (values.split(",") if key else [None]):
    if key:
      apply_overrides(config, [f"{key}={value}"])
    r = free_flow_report(samples, config.loss, args.steps, args.lr, args.occlusion, args.scales)
    name = f"{key}={value}" if key else args.config
    print(f"{name:<34}{r['from_truth']['epe']:>11.3f}{r['from_truth']['slope']:>7.2f}{r['from_zero']['epe']:>10.3f}"
          f"{r['from_zero']['slope']:>7.2f}{r['truth_loss']:>11.4f}{r['from_truth']['loss_end']:>10.4f}"
          f"  (zero flow {r['zero_epe']:.3f})", flush=True)


if __name__ == "__main__":
  main()
