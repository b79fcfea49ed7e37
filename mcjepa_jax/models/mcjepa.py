"""The MC-JEPA network: shared encoder, flow head and expander (DESIGN.md section 1)."""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from mcjepa_jax.models.convnext import ConvNeXtEncoder
from mcjepa_jax.models.expander import Expander
from mcjepa_jax.models.flow_head import PWCFlowHead
from mcjepa_jax.models.predictor import IJEPAPredictor
from mcjepa_jax.models.vit import ViTEncoder
from mcjepa_jax.ops.directions import swap_halves

CONTENT_OBJECTIVES = ("vicreg", "ijepa")
DTYPES = ("float32", "bfloat16")


def _float32(tree):
  """Every floating leaf of an output as float32: the losses and their statistics run in float32."""
  return jax.tree_util.tree_map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                                tree)


class MCJEPA(nn.Module):
  """Encoder + PWC flow head + content head (VICReg expander or I-JEPA predictor).

  Images enter in [0, 1]; the model normalises them with `pixel_mean/std`.
  Forward and backward flows come from one batched call of the flow head: the
  frames are stacked [I_t; I_t+1] as sources and [I_t+1; I_t] as targets, so
  every output of `video` has batch 2B with the forward direction first.

  `content_grad_scales` (one per pyramid level) scale the content loss's
  gradient where it leaves each level on its way down the encoder: 0 at the
  fine levels leaves them to the flow loss, which needs them for matching
  (our choice; all ones is the paper). Forward values are unchanged.

  `content_objective` "vicreg" (the paper) uses `expander`; "ijepa" (issue 16)
  uses `predictor` on the encoder's tokens, against targets that the train step
  computes with the EMA copy of the encoder (`target_tokens`).

  `dtype` (config.model.dtype) is the compute dtype of the submodules, which
  are built with it; every output leaves the model as float32.
  """
  encoder: nn.Module
  flow_head: nn.Module
  expander: Optional[nn.Module]
  pixel_mean: tuple
  pixel_std: tuple
  content_grad_scales: tuple = (1.0,) * 6
  predictor: Optional[nn.Module] = None
  content_objective: str = "vicreg"
  dtype: Any = jnp.float32

  def _normalise(self, images):
    mean = jnp.asarray(self.pixel_mean, images.dtype)
    std = jnp.asarray(self.pixel_std, images.dtype)
    return ((images - mean) / std).astype(self.dtype)

  def _check_size(self, images, what, multiple=True):
    """Frames for flow need sizes that every pyramid level divides (levels are warped onto each
    other); images for pooled features only need one cell at the coarsest level (224-px views)."""
    stride = self.encoder.total_stride
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"{what} have shape {tuple(images.shape)}: expected [B, H, W, 3]")
    height, width = images.shape[1:3]
    if multiple and (height % stride or width % stride):
      raise ValueError(f"{what} have shape {tuple(images.shape)}: expected H and W multiples of {stride} (the "
                       f"encoder's coarsest level is H/{stride})")
    if min(height, width) < stride:
      raise ValueError(f"{what} have shape {tuple(images.shape)}: expected H and W of at least {stride}")

  def video(self, frames1, frames2, train=False):
    """Flow in both directions for a batch of frame pairs.

    Args:
      frames1: [B, H, W, 3] frames t in [0, 1].
      frames2: [B, H, W, 3] frames t+1.
      train: stochastic depth on.

    Returns:
      dict: "pyramid" (six [2B, H_l, W_l, C_l], frames t then t+1), "pooled"
      [2B, D], "flows" {level: [2B, H_l, W_l, 2]} and "flow" [2B, H, W, 2]:
      rows :B are f_t->t+1, rows B: are f_t+1->t.
    """
    if frames1.shape != frames2.shape:
      raise ValueError(f"frame pairs must have equal shapes, got {frames1.shape} and {frames2.shape}")
    self._check_size(frames1, "video frames")
    frames = jnp.concatenate([frames1, frames2], axis=0)
    pyramid, pooled = self.encoder(self._normalise(frames), train=train)
    targets = tuple(swap_halves(level) for level in pyramid)
    flows = self.flow_head(pyramid, targets, frames.shape[1:3], frames, swap_halves(frames))
    return _float32({"pyramid": pyramid, "pooled": pooled, "flows": flows["levels"], "flow": flows["full"]})

  def features(self, images):
    """Frozen features for probes and label propagation: (pyramid, pooled) of [N, H, W, 3] images in [0, 1]."""
    self._check_size(images, "images")
    return _float32(self.encoder(self._normalise(images), train=False))

  def content(self, views1, views2, train=False, masks=None):
    """The content branch on two views of N images.

    Args:
      views1, views2: [N, h, w, 3] two augmentations of the same N images.
      train: stochastic depth and BatchNorm statistics on.
      masks: I-JEPA only: `ops.masks.sample_masks` for views1 on `token_grid`
        (default: a fixed small mask, enough to create the parameters).

    Returns:
      VICReg: "pooled" [2N, D] encoder representations (views1 first) and
      "embeddings" (z1, z2), each [N, D_expander]; BatchNorm statistics of
      the expander are per view, as in VICReg (`Expander`).
      I-JEPA: "predictions" [N, T, K, D] for the target blocks of views1 (as in
      I-JEPA, one view per image: views2 is not used).
    """
    if views1.shape != views2.shape:
      raise ValueError(f"the two views must have equal shapes, got {views1.shape} and {views2.shape}")
    self._check_size(views1, "image views", multiple=False)
    if self.content_objective == "ijepa":
      masks = _placeholder_masks(views1.shape[0], self.token_grid(views1)) if masks is None else masks
      context = self.encoder(self._normalise(views1), train=train, tokens=True,
                             token_indices=masks["context_indices"], token_valid=masks["context_valid"])
      return _float32({"predictions": self.predictor(context, masks, self.token_grid(views1), train=train)})
    views = jnp.concatenate([views1, views2], axis=0)
    _, pooled = self.encoder(self._normalise(views), train=train, grad_scales=self.content_grad_scales)
    z1, z2 = jnp.split(self.expander(pooled, train=train, views=2), 2)
    return _float32({"pooled": pooled, "embeddings": (z1, z2)})

  def token_grid(self, images):
    """(rows, cols) of the encoder's token grid for [N, h, w, 3] images."""
    side = self.encoder.token_stride
    return images.shape[1] // side, images.shape[2] // side

  def target_tokens(self, images):
    """[N, rows * cols, D] tokens of whole images: the I-JEPA targets when applied with the EMA encoder."""
    return _float32(self.encoder(self._normalise(images), train=False, tokens=True))

  def embedding(self, images):
    """The representation the content loss regularises, in inference mode: the expander's
    output (VICReg) or the encoder's pooled tokens (I-JEPA). [N, h, w, 3] -> [N, D]."""
    self._check_size(images, "images", multiple=False)
    _, pooled = self.encoder(self._normalise(images), train=False)
    return _float32(pooled if self.content_objective == "ijepa" else self.expander(pooled, train=False))

  def __call__(self, frames1, frames2, views1, views2, train=False, masks=None):
    return {"video": self.video(frames1, frames2, train), "content": self.content(views1, views2, train, masks)}


def _placeholder_masks(batch, grid):
  """A fixed I-JEPA mask (the first tokens as context, the last as a one-token target), for `init`."""
  count = grid[0] * grid[1]
  context = jnp.broadcast_to(jnp.arange(max(count - 1, 1), dtype=jnp.int32), (batch, max(count - 1, 1)))
  target = jnp.full((batch, 1, 1), count - 1, jnp.int32)
  return {"context_indices": context, "context_valid": jnp.ones(context.shape, bool), "target_indices": target}


def build_encoder(enc, dtype=jnp.float32, remat="none"):
  """ConvNeXtEncoder or ViTEncoder from `config.model.encoder`."""
  if enc.name == "convnext":
    return ConvNeXtEncoder(
        stem_widths=tuple(enc.stem_widths), depths=tuple(enc.depths), widths=tuple(enc.widths),
        kernel_size=enc.kernel_size, mlp_ratio=enc.mlp_ratio, layer_scale_init=enc.layer_scale_init,
        drop_path_rate=enc.drop_path_rate, norm_eps=enc.norm_eps, stem_kernels=tuple(enc.stem_kernels),
        depthwise=enc.get("depthwise", "conv"), token_level=enc.get("token_level", 4), dtype=dtype, remat=remat)
  if enc.name == "vit":
    return ViTEncoder(
        patch_size=enc.patch_size, width=enc.width, depth=enc.depth, num_heads=enc.num_heads,
        mlp_ratio=enc.mlp_ratio, posemb=enc.posemb, posemb_grid=tuple(enc.posemb_grid),
        layer_scale_init=enc.layer_scale_init, drop_path_rate=enc.drop_path_rate, norm_eps=enc.norm_eps,
        stem_widths=tuple(enc.stem_widths), stem_kernels=tuple(enc.stem_kernels),
        adapter_widths=tuple(enc.adapter_widths), dtype=dtype, remat=remat)
  raise ValueError(f"config.model.encoder.name: unknown encoder {enc.name!r} (known: 'convnext', 'vit')")


def content_objective(config):
  """"vicreg" or "ijepa": `config.model.content` (the loss reads the same name)."""
  name = config.get("content", "vicreg")
  if name not in CONTENT_OBJECTIVES:
    raise ValueError(f"config.model.content={name!r}: known {', '.join(CONTENT_OBJECTIVES)}")
  return name


def compute_dtype(config):
  """jnp dtype of `config.model.dtype` ("float32" default, "bfloat16")."""
  name = config.get("dtype", "float32")
  if name not in DTYPES:
    raise ValueError(f"config.model.dtype={name!r}: known {', '.join(DTYPES)}")
  return jnp.dtype(name)


def build_model(config):
  """MCJEPA from `config.model` (an ml_collections ConfigDict of configs/*.py)."""
  dtype = compute_dtype(config)
  remat = config.get("remat", "none")
  encoder = build_encoder(config.encoder, dtype, remat)
  head = config.flow_head
  flow_head = PWCFlowHead(
      levels=tuple(head.levels), corr_radius=head.corr_radius,
      estimator_widths=tuple(head.estimator_widths), context_widths=tuple(head.context_widths),
      context_dilations=tuple(head.context_dilations), negative_slope=head.negative_slope,
      flow_clip=head.flow_clip, layer_norm=head.layer_norm, norm_eps=head.norm_eps,
      normalize_features=head.normalize_features, feature_widths=tuple(head.feature_widths),
      corr_activation=head.corr_activation, pass_features=head.pass_features,
      source_features=head.source_features, context_source_features=head.get("context_source_features", False),
      image_cost=head.image_cost, upsample=head.get("upsample", "bilinear"),
      upsample_width=head.get("upsample_width", 32), refine_passes=head.get("refine_passes", 0), dtype=dtype, remat=remat,
      corr_impl=head.get("corr_impl", "slices"), predict_impl=head.get("predict_impl", "conv"),
      conv_impl=head.get("conv_impl", "conv"))
  objective = content_objective(config)
  expander = predictor = None
  if objective == "vicreg":
    exp = config.expander
    expander = Expander(widths=tuple(exp.widths), bn_momentum=exp.bn_momentum, bn_eps=exp.bn_eps, dtype=dtype)
  else:
    pred = config.predictor
    predictor = IJEPAPredictor(width=pred.width, depth=pred.depth, num_heads=pred.num_heads,
                               mlp_ratio=pred.mlp_ratio, norm_eps=pred.norm_eps, dtype=dtype)
  return MCJEPA(encoder=encoder, flow_head=flow_head, expander=expander,
                pixel_mean=tuple(config.pixel_mean), pixel_std=tuple(config.pixel_std),
                content_grad_scales=tuple(config.content_grad_scales), predictor=predictor,
                content_objective=objective, dtype=dtype)
