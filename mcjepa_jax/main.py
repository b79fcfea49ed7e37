"""Command line: python -m mcjepa_jax.main --config configs/demo.py[:ARGS] --workdir DIR

Runs `train_and_evaluate`; rerunning the same command resumes from the last
checkpoint in DIR. With MCJEPA_DISTRIBUTED=1 (set by launch/ scripts) it first
joins the multi-process runtime with `jax.distributed.initialize()`.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/NAME.py[:ARGS]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and pictures.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax  # pylint: disable=g-import-not-at-top
  if os.environ.get("MCJEPA_DISTRIBUTED"):
    jax.distributed.initialize()
  from mcjepa_jax.train.loop import train_and_evaluate  # pylint: disable=g-import-not-at-top
  logging.info("JAX devices: %s", jax.devices())
  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
