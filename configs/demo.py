"""The README demo: a small MC-JEPA trained on the embedded generated dataset on a CPU in minutes.

Usage: python -m mcjepa_jax.main --config configs/demo.py --workdir workdirs/demo
Options (after a colon): steps=N, e.g. configs/demo.py:steps=200 for a smoke run.
"""

import os

from mcjepa_jax.config_utils import load_module, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, steps=2000)
  tiny = load_module(os.path.join(os.path.dirname(__file__), "tiny.py"))
  config = tiny.get_config()
  train = config.train
  train.total_steps = arg.steps
  train.video_batch_size = 4
  train.image_batch_size = 8
  # The paper's proportions scaled to a short run: content-only for 10 %, occlusion masks from 30 %.
  train.warmup_steps = max(arg.steps // 20, 1)
  train.flow_start_steps = arg.steps // 10
  train.vc_warmup_steps = max(arg.steps // 20, 1)
  train.occlusion_start_steps = 3 * arg.steps // 10
  train.encoder_lr = 1e-3
  train.flow_head_lr = 1e-3
  train.log_every = 50
  train.picture_every = max(arg.steps // 4, 1)
  train.checkpoint_every = max(arg.steps // 10, 1)
  return config
