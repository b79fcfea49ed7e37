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

# The occlusion fill (`ops.fill_occluded_flow`), a post-process reported beside the network's flow.
# Measured on the demo model over 512 held-out pairs (docs/benchmarks.md, table 13): EPE 1.308 ->
# 1.189, slope 0.776 -> 0.795 at radius 11, colour scale 0.1 (RGB in [0, 1]); 0.05: 1.191 / 0.796,
# 0.2: 1.197 / 0.791; radius 15: 1.175 / 0.794.
OCCLUSION_FILL_RADIUS = 11
OCCLUSION_FILL_COLOR_SIGMA = 0.1

# The real sample sets at full size are also evaluated coarse to fine from frames downscaled by this
# factor (`flow_eval.coarse_to_fine`). Measured on the 1,600-step demo model over factors 1-8
# (docs/benchmarks.md, table 14), 4 the best on every set: FlyingChairs 8.93 -> 4.48 EPE (zero flow
# 10.51), Sintel alley_1 clean 0.669 -> 0.549, RubberWhale 0.348 -> 0.304.
COARSE_FACTOR = 4


def eval_defaults():
  """The `config.eval` ConfigDict of `configs/mcjepa_convnext_t.py`."""
  config = ml_collections.ConfigDict(dict(real_samples=True, data_root=""))  # "" = $MCJEPA_SHARED_DATA or shared/data
  # FlyingChairs is also evaluated block-averaged by this factor (0 = not): its ~10 px motions
  # at 384 x 512 are three times what a model trained on 64-px crops has seen (the motorcycle
  # pair is evaluated at 1/8 for the same reason).
  config.chairs_reduction = 4
  config.flow_margin = FLOW_MARGIN
  # > 1: the real sample sets of shared/data (full size) get a second row, predicted coarse to fine
  # from frames downscaled by this factor, for motion longer than the training pairs' (1 = not).
  config.coarse_factor = COARSE_FACTOR
  # radius > 0: every flow row also reports EPE and slope with occluded pixels filled from their
  # visible neighbours (a second forward pass per pair; 0 = only the network's flow).
  config.occlusion_fill = dict(radius=0, color_sigma=OCCLUSION_FILL_COLOR_SIGMA)
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


def coarse_factor(eval_config):
  """`eval_config.coarse_factor`; 1 (no coarse-to-fine rows) for runs saved before it existed."""
  return eval_config.get("coarse_factor", 1)


def occlusion_fill(eval_config):
  """(radius, color_sigma) of `eval_config.occlusion_fill`; radius 0 (no fill) for runs saved before it existed."""
  fill = eval_config.get("occlusion_fill", None) or {}
  return fill.get("radius", 0), fill.get("color_sigma", OCCLUSION_FILL_COLOR_SIGMA)


def fill_predictor(model, eval_config):
  """`flow_eval.make_flow_predictor` with the configured occlusion fill, or None when its radius is 0."""
  from mcjepa_jax.evaluate.flow_eval import make_flow_predictor  # pylint: disable=g-import-not-at-top
  radius, color_sigma = occlusion_fill(eval_config)
  return make_flow_predictor(model, radius, color_sigma) if radius else None
