"""The evaluation settings (DESIGN.md 6), shared by training configs and by evaluating an export.

An export carries only the model config, so the evaluation command line
falls back on these when neither --config nor a training run's config.json
gives them.
"""

import ml_collections

# Pixels of edge replication around the frames when predicting flow (`flow_eval.to_stride_grid`).
# Measured on the demo model over 512 held-out pairs (docs/benchmarks.md, table 12): slope 0.752 ->
# 0.784 with 4 or 8 pixels, EPE 1.336 -> 1.311 with 4 (1.333 with 8, 1.360 with 16).
FLOW_MARGIN = 4


def eval_defaults():
  """The `config.eval` ConfigDict of `configs/mcjepa_convnext_t.py`."""
  config = ml_collections.ConfigDict(dict(real_samples=True, data_root=""))  # "" = $MCJEPA_SHARED_DATA or shared/data
  # FlyingChairs is also evaluated block-averaged by this factor (0 = not): its ~10 px motions
  # at 384 x 512 are three times what a model trained on 64-px crops has seen (the motorcycle
  # pair is evaluated at 1/8 for the same reason).
  config.chairs_reduction = 4
  config.flow_margin = FLOW_MARGIN
  # DAVIS label propagation (DINO's protocol): stride-8 features (pyramid level 3),
  # first frame + 7 previous frames as context, top-5 neighbours within 12 cells.
  config.davis = dict(resolution="480p", split_file="", level=3, n_context=7, top_k=5, radius=12,
                      temperature=0.07)
  # Linear probes on frozen features: classification on pooled features of classify_size
  # images; segmentation on level-`segment_level` features (VOC: 21 classes).
  config.probe = dict(steps=2000, learning_rate=1e-2, weight_decay=1e-4, batch_size=256, classify_size=224,
                      segment_size=448, segment_level=3, num_classes=21)
  return config


def flow_margin(eval_config):
  """`eval_config.flow_margin`; 0 for the settings of runs saved before it existed (evaluated without one)."""
  return eval_config.get("flow_margin", 0)
