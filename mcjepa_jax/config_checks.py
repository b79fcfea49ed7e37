"""Checks of a training config before anything is built or compiled: one ValueError naming the key.

Impossible values otherwise fail deep inside XLA (a crop that is not a
multiple of the encoder's stride, a head level outside the pyramid) or, worse,
train something else than intended (a weight list of the wrong length).
"""

from mcjepa_jax.evaluate.defaults import coarse_factor, flow_margin, occlusion_fill
from mcjepa_jax.models.convnext import DEPTHWISE_IMPLS
from mcjepa_jax.models.flow_head import (CONV_IMPLS, FEATURE_NORMALIZATIONS as NORMALIZE_FEATURES, PREDICT_IMPLS,
                                         UPSAMPLINGS)
from mcjepa_jax.models.mcjepa import CONTENT_OBJECTIVES, DTYPES
from mcjepa_jax.models.pyramid import REMAT_POLICIES
from mcjepa_jax.models.vit import POSEMBS
from mcjepa_jax.ops.correlation import CORRELATION_IMPLS

ENCODERS = ("convnext", "vit")
REMATS = ("none",) + tuple(REMAT_POLICIES)
PYRAMID_LEVELS = 6
SMOOTHNESS_UNITS = ("image", "pixel", "pwc")
REG_NORMS = ("l1", "l2")


def _fail(key, value, allowed):
  raise ValueError(f"config.{key}={value!r}: {allowed}")


def _positive(config, *keys):
  for key in keys:
    value = _get(config, key)
    if not value > 0:
      _fail(key, value, "must be > 0")


def _get(config, key):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def _check_convnext(config, enc):
  if len(enc.stem_widths) + len(enc.depths) != PYRAMID_LEVELS or len(enc.widths) != len(enc.depths):
    _fail("model.encoder.widths", tuple(enc.widths), f"stem_widths ({len(enc.stem_widths)}) + depths "
          f"({len(enc.depths)}) must give {PYRAMID_LEVELS} pyramid levels, with one width per depth")
  if enc.get("depthwise", "conv") not in DEPTHWISE_IMPLS:
    _fail("model.encoder.depthwise", enc.depthwise, f"known: {', '.join(DEPTHWISE_IMPLS)}")
  for key in ("model.encoder.stem_widths", "model.encoder.widths", "model.encoder.depths"):
    if any(v <= 0 for v in _get(config, key)):
      _fail(key, tuple(_get(config, key)), "every entry must be > 0")
  if not 1 <= enc.get("token_level", 4) <= PYRAMID_LEVELS:
    _fail("model.encoder.token_level", enc.token_level, f"must lie in 1..{PYRAMID_LEVELS}")


def _check_vit(config, enc):
  if len(enc.stem_widths) != 2 or len(enc.adapter_widths) != PYRAMID_LEVELS - 2:
    _fail("model.encoder.adapter_widths", tuple(enc.adapter_widths), f"2 stem_widths (levels 1-2) and "
          f"{PYRAMID_LEVELS - 2} adapter_widths (levels 3-{PYRAMID_LEVELS}) make the pyramid")
  for key in ("model.encoder.stem_widths", "model.encoder.adapter_widths"):
    if any(v <= 0 for v in _get(config, key)):
      _fail(key, tuple(_get(config, key)), "every entry must be > 0")
  patch = enc.patch_size
  if patch not in (4, 8, 16, 32, 64):
    _fail("model.encoder.patch_size", patch, "must be a power of two from 4 to 64 (the adapter resamples by "
          "powers of two)")
  _positive(config, "model.encoder.width", "model.encoder.depth", "model.encoder.num_heads",
            "model.encoder.mlp_ratio")
  if enc.width % enc.num_heads:
    _fail("model.encoder.num_heads", enc.num_heads, f"must divide the width {enc.width}")
  if enc.posemb not in POSEMBS:
    _fail("model.encoder.posemb", enc.posemb, f"known: {', '.join(POSEMBS)}")
  if enc.posemb == "sincos" and enc.width % 4:
    _fail("model.encoder.width", enc.width, "must be a multiple of 4 for sin-cos positions")


def _check_content(config):
  name = config.loss.get("content", {}).get("name", "vicreg")
  if name not in CONTENT_OBJECTIVES:
    _fail("loss.content.name", name, f"known: {', '.join(CONTENT_OBJECTIVES)}")
  if config.model.get("content", "vicreg") != name:
    _fail("model.content", config.model.get("content", "vicreg"), f"must equal loss.content.name ({name!r}); "
          "the configs tie them with a reference, set loss.content.name only")
  if name != "ijepa":
    return
  pred, masks = config.model.predictor, config.loss.ijepa
  _positive(config, "model.predictor.width", "model.predictor.depth", "model.predictor.num_heads",
            "loss.ijepa.num_targets", "loss.ijepa.context_keep")
  if pred.width % pred.num_heads or pred.width % 4:
    _fail("model.predictor.width", pred.width, f"must be a multiple of 4 and of num_heads ({pred.num_heads})")
  for key in ("target_scale", "context_scale", "target_aspect", "momentum"):
    low, high = masks[key]
    if not 0 < low <= high or (key.endswith("scale") and high > 1) or (key == "momentum" and high > 1):
      _fail(f"loss.ijepa.{key}", tuple(masks[key]), "(low, high) with 0 < low <= high"
            + (" <= 1" if key != "target_aspect" else ""))
  if masks.context_keep > 1:
    _fail("loss.ijepa.context_keep", masks.context_keep, "a fraction of the tokens in (0, 1]")
  side = 2**config.model.encoder.token_level if config.model.encoder.name == "convnext" else \
      config.model.encoder.patch_size
  if config.data.views.size // side < 2:
    _fail("data.views.size", config.data.views.size, f"needs a token grid of at least 2x2 for I-JEPA masks "
          f"(tokens are {side} px)")


def validate_config(config):
  """Raises ValueError naming the first impossible value of a training config (configs/*.py)."""
  model, train, loss = config.model, config.train, config.loss
  enc, head = model.encoder, model.flow_head
  if enc.name not in ENCODERS:
    _fail("model.encoder.name", enc.name, f"unknown encoder (known: {', '.join(ENCODERS)})")
  if enc.name == "convnext":
    _check_convnext(config, enc)
  else:
    _check_vit(config, enc)
  if len(enc.stem_kernels) != len(enc.stem_widths):
    _fail("model.encoder.stem_kernels", tuple(enc.stem_kernels), "needs one kernel per stem width")
  _check_content(config)
  if model.get("dtype", "float32") not in DTYPES:
    _fail("model.dtype", model.dtype, f"known: {', '.join(DTYPES)}")
  if head.get("corr_impl", "slices") not in CORRELATION_IMPLS:
    _fail("model.flow_head.corr_impl", head.corr_impl, f"known: {', '.join(CORRELATION_IMPLS)}")
  if head.get("predict_impl", "conv") not in PREDICT_IMPLS:
    _fail("model.flow_head.predict_impl", head.predict_impl, f"known: {', '.join(PREDICT_IMPLS)}")
  if head.get("conv_impl", "conv") not in CONV_IMPLS:
    _fail("model.flow_head.conv_impl", head.conv_impl, f"known: {', '.join(CONV_IMPLS)}")
  if model.get("remat", "none") not in REMATS:
    _fail("model.remat", model.remat, f"known: {', '.join(REMATS)}")
  levels = tuple(head.levels)
  if not levels or any(not 1 <= level <= PYRAMID_LEVELS for level in levels):
    _fail("model.flow_head.levels", levels, f"levels must lie in 1..{PYRAMID_LEVELS} (the encoder's pyramid)")
  if any(b != a - 1 for a, b in zip(levels, levels[1:])):
    _fail("model.flow_head.levels", levels, "must run coarse to fine one level at a time, e.g. (6, 5, 4, 3, 2)")
  if len(head.estimator_widths) == 0 or head.corr_radius < 1:
    _fail("model.flow_head.corr_radius", head.corr_radius, "must be >= 1, with at least one estimator width")
  if head.get("refine_passes", 0) < 0:
    _fail("model.flow_head.refine_passes", head.refine_passes, "must be >= 0 (extra passes of the finest estimator)")
  if head.get("upsample", "bilinear") not in UPSAMPLINGS:
    _fail("model.flow_head.upsample", head.upsample, f"known: {', '.join(UPSAMPLINGS)}")
  if head.normalize_features not in NORMALIZE_FEATURES:
    _fail("model.flow_head.normalize_features", head.normalize_features, f"known: {', '.join(NORMALIZE_FEATURES)}")
  if len(head.context_widths) != len(head.context_dilations):
    _fail("model.flow_head.context_dilations", tuple(head.context_dilations),
          f"needs one dilation per context width ({len(head.context_widths)})")
  if len(model.content_grad_scales) != PYRAMID_LEVELS:
    _fail("model.content_grad_scales", tuple(model.content_grad_scales), f"needs {PYRAMID_LEVELS} values, one per level")
  if len(model.pixel_mean) != 3 or len(model.pixel_std) != 3 or any(s <= 0 for s in model.pixel_std):
    _fail("model.pixel_std", tuple(model.pixel_std), "needs 3 positive values (and pixel_mean 3 values)")
  if len(loss.vc.level_weights) != PYRAMID_LEVELS:
    _fail("loss.vc.level_weights", tuple(loss.vc.level_weights), f"needs {PYRAMID_LEVELS} (variance, covariance) pairs")
  if loss.smooth.units not in SMOOTHNESS_UNITS:
    _fail("loss.smooth.units", loss.smooth.units, f"known: {', '.join(SMOOTHNESS_UNITS)}")
  if loss.smooth.order not in (1, 2):
    _fail("loss.smooth.order", loss.smooth.order, "must be 1 or 2")
  if loss.reg.norm not in REG_NORMS:
    _fail("loss.reg.norm", loss.reg.norm, f"known: {', '.join(REG_NORMS)}")
  if "selfsup" in loss and not 0 < loss.selfsup.min_scale <= 1:
    _fail("loss.selfsup.min_scale", loss.selfsup.min_scale, "must lie in (0, 1]")
  if "selfsup" in loss and loss.selfsup.occluders:
    low, high = tuple(loss.selfsup.occluder_radius)
    if not 0 < low <= high:
      _fail("loss.selfsup.occluder_radius", (low, high), "(smallest, largest) with 0 < smallest <= largest")
  _positive(config, "train.video_batch_size", "train.image_batch_size", "train.total_steps", "train.log_every",
            "train.checkpoint_every", "train.picture_every", "train.keep_checkpoints", "train.encoder_lr",
            "train.flow_head_lr", "data.views.size")
  stride = 2**PYRAMID_LEVELS
  crop = tuple(config.data.pairs.crop)
  if len(crop) != 2 or any(n <= 0 or n % stride for n in crop):
    _fail("data.pairs.crop", crop, f"(height, width), each a positive multiple of the encoder's stride {stride}")
  margin = config.data.pairs.get("full_image_margin", 0)
  if not isinstance(margin, int) or margin < 0:
    _fail("data.pairs.full_image_margin", margin, "pixels of frame kept around each crop: an integer >= 0 (0 = off)")
  margin = flow_margin(config.eval) if "eval" in config else 0
  if not isinstance(margin, int) or margin < 0:
    _fail("eval.flow_margin", margin, "pixels of edge replication around evaluated frames: an integer >= 0")
  radius, color_sigma = occlusion_fill(config.eval) if "eval" in config else (0, 1.0)
  if not isinstance(radius, int) or radius < 0:
    _fail("eval.occlusion_fill.radius", radius, "window radius in pixels: an integer >= 0 (0 = no fill)")
  if not color_sigma > 0:
    _fail("eval.occlusion_fill.color_sigma", color_sigma, "colour scale of the fill's weights: a number > 0")
  factor = coarse_factor(config.eval) if "eval" in config else 1
  if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
    _fail("eval.coarse_factor", factor, "downscaling of the coarse-to-fine rows: an integer >= 1 (1 = none)")
  if config.data.views.size < stride:
    _fail("data.views.size", config.data.views.size, f"must be at least the encoder's stride {stride}")
  if config.data.name == "synthetic":
    source = tuple(config.data.source_size)
    if any(s < c for s, c in zip(source, crop)):
      _fail("data.source_size", source, f"generated frames must be at least the crop {crop}")
