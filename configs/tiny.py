"""A CPU-sized MC-JEPA: the paper config with narrow widths and small images.

Usage: --config configs/tiny.py   (tests and quick experiments)
"""

import os

from mcjepa_jax.config_utils import load_module


def get_config(arg=None):
  """arg: passed to mcjepa_convnext_t.py (`paper` for DESIGN.md's objective exactly)."""
  paper = load_module(os.path.join(os.path.dirname(__file__), "mcjepa_convnext_t.py"))
  config = paper.get_config(arg)
  enc = config.model.encoder
  enc.stem_widths = (8, 8)
  enc.depths = (1, 1, 1, 1)
  enc.widths = (16, 24, 32, 48)
  enc.drop_path_rate = 0.0
  head = config.model.flow_head
  # At 64 px, levels 5 and 6 would be 2x2 and 1x1: start at level 4.
  head.levels = (4, 3, 2)
  head.corr_radius = 2
  head.estimator_widths = (16, 16, 12, 8, 8)
  head.context_widths = (16, 16, 16, 12, 8, 8)
  config.model.expander.widths = (64, 64, 64)
  config.model.predictor.update(width=32, depth=2, num_heads=4)  # used with loss.content.name = "ijepa"
  train = config.train
  train.image_batch_size = 8
  train.video_batch_size = 2
  data = config.data
  data.source_size = (80, 80)
  data.num_threads = 2
  data.pairs.crop = (64, 64)
  data.views.size = 64
  # Blur radii scale with the view size (the VICReg values are for 224 px).
  data.views.blur_sigma = (0.03, 0.6)
  return config
