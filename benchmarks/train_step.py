"""Compile time and speed of the jit-compiled train step and of the input pipeline.

  python benchmarks/train_step.py [--config configs/demo.py] [--steps 20] [--set key=value ...]

Prints a table; record results with the machine in docs/benchmarks.md.
"""

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from mcjepa_jax.config_utils import apply_overrides, load_config
from mcjepa_jax.data.pipeline import TrainInput
from mcjepa_jax.models import build_model
from mcjepa_jax.models.params import count_params, init_variables
from mcjepa_jax.train.optimizer import make_optimizer
from mcjepa_jax.train.step import create_train_state, make_train_step


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/demo.py")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--set", nargs="*", default=[], help="key=value config overrides, e.g. model.encoder.depthwise=conv")
  args = parser.parse_args()
  config = apply_overrides(load_config(args.config), args.set)
  train = config.train
  data = TrainInput(config, 0)
  batch = next(data)
  started = time.perf_counter()
  for _ in range(args.steps):
    next(data)
  data_time = (time.perf_counter() - started) / args.steps

  model = build_model(config.model)
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  started = time.perf_counter()
  variables = init_variables(model, jax.random.PRNGKey(0), batch["frames1"], batch["frames2"], batch["views1"],
                             batch["views2"])
  init_time = time.perf_counter() - started
  optimizer, _ = make_optimizer(train)
  state = create_train_state(variables, optimizer, jax.random.PRNGKey(1))
  step = jax.jit(make_train_step(model, optimizer, config), donate_argnums=0)
  started = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_time = time.perf_counter() - started
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  started = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  step_time = (time.perf_counter() - started) / args.steps

  rows = [
      ("config", args.config),
      ("device", f"{jax.devices()[0].device_kind} x{jax.device_count()} ({platform.processor() or platform.machine()})"),
      ("parameters", f"{count_params(variables['params']):,}"),
      ("batch (pairs / images)", f"{train.video_batch_size} x {tuple(config.data.pairs.crop)} / "
                                 f"{train.image_batch_size} x {config.data.views.size}px"),
      ("init compile+run (s)", f"{init_time:.1f}"),
      ("train step compile (s)", f"{compile_time:.1f}"),
      ("train step (s)", f"{step_time:.3f}"),
      ("train steps/s", f"{1 / step_time:.2f}"),
      ("input pipeline (s/batch)", f"{data_time:.3f}"),
  ]
  width = max(len(k) for k, _ in rows)
  print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
  for key, value in rows:
    print(f"| {key:<{width}} | {value} |")
  assert np.isfinite(float(metrics["total"]))


if __name__ == "__main__":
  main()
