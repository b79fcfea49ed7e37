"""What a trained (or untrained) run's flow network does, level by level, on held-out generated pairs.

Usage:
  python benchmarks/diagnose.py --config configs/demo.py --workdir workdirs/demo [--pairs 32] [--radius 2]
      [--set model.flow_head.image_cost=True ...]
Prints, for each head level, the share of visible pixels where the true offset wins the cost volume of the
encoder's features (mcjepa_jax/evaluate/diagnostics.py), the mean flow the level adds (input pixels) and
the least-squares slope of the level's flow against the truth (the finest after the context network);
then the held-out EPE, zero-flow EPE and the least-squares slope of the prediction.
An empty or missing workdir diagnoses the freshly initialised model.
"""

import argparse

import numpy as np

from mcjepa_jax.config_utils import apply_overrides, load_config
from mcjepa_jax.data.pipeline import heldout_source
from mcjepa_jax.evaluate.diagnostics import diagnose
from mcjepa_jax.evaluate.flow_eval import evaluate_pairs, make_flow_predictor
from mcjepa_jax.train.loop import prepare


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/demo.py")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--pairs", type=int, default=32)
  parser.add_argument("--radius", type=int, default=2)
  parser.add_argument("--set", nargs="*", default=[], help="key=value overrides of the config (as trained)")
  args = parser.parse_args()
  config = apply_overrides(load_config(args.config), args.set)
  run = prepare(config, args.workdir, compile_step=False)
  variables = {"params": run.state.params, "batch_stats": run.state.batch_stats}
  source = heldout_source(config.data, config.seed)
  samples = [source[i] for i in range(min(args.pairs, len(source)))]
  report = diagnose(run.model, variables, samples, args.radius)
  print(f"step {int(run.state.step)} of {args.workdir}")
  print(f"{'level':>6}{'true offset wins':>18}{'flow added (px)':>17}{'slope':>8}")
  for level in report["share"]:
    print(f"{level:>6}{report['share'][level]:>18.3f}{report['contribution'][level]:>17.3f}"
          f"{report['slope'][level]:>8.3f}")
  predictor = make_flow_predictor(run.model)
  row, _ = evaluate_pairs(predictor, variables, ((s["frame1"], s["frame2"], s["flow"], None) for s in samples),
                          run.model.encoder.total_stride)
  print(f"EPE {row['epe']:.3f}  zero {row['zero_epe']:.3f}  ratio {row['epe'] / row['zero_epe']:.3f}  "
        f"slope {row['slope']:.3f}  mean |gt| {np.mean([np.linalg.norm(s['flow'], axis=-1).mean() for s in samples]):.3f}")


if __name__ == "__main__":
  main()
