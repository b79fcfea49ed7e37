"""Command line: python -m mcjepa_jax.main --config configs/demo.py[:ARGS] --workdir DIR

Runs `train_and_evaluate`; rerunning the same command resumes from the last
checkpoint in DIR. With MCJEPA_DISTRIBUTED=1 (set by launch/ scripts) it first
joins the multi-process runtime with `jax.distributed.initialize()`.
"""

from mcjepa_jax.console import quiet_environment

quiet_environment()  # before any import that may load TensorFlow

import os

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/NAME.py[:ARGS]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and pictures.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from mcjepa_jax.console import quiet_logging  # pylint: disable=g-import-not-at-top
  quiet_logging()
  import jax  # pylint: disable=g-import-not-at-top
  if os.environ.get("MCJEPA_DISTRIBUTED"):
    jax.distributed.initialize()
  from mcjepa_jax.train.loop import train_and_evaluate  # pylint: disable=g-import-not-at-top
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform} ({jax.process_count()} process(es))", flush=True)
  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
