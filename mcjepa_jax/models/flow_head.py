"""PWC-style coarse-to-fine flow head, DESIGN.md section 3.

For each pyramid level l from coarsest to finest:
  f_up = upsample(f^(l+1)) (zero at the coarsest level),
  C = corr(X_t^(l), warp(X_t+1^(l), f_up), r),
  f^(l) = clip(f_up + E_l([C, X_t^(l), f_up]), -clip, clip);
then a dilated context network refines the finest flow and the result is
upsampled to the input resolution.
"""

from typing import Any, Sequence

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
import jax.numpy as jnp
import numpy as np

from mcjepa_jax.models.pyramid import rematerialised
from mcjepa_jax.ops.correlation import correlation
from mcjepa_jax.ops.image import area_downsample
from mcjepa_jax.ops.warp import bilinear_upsample_weights, convex_upsample, resize_flow, warp


PREDICT_IMPLS = ("auto", "conv", "taps")
CONV_IMPLS = ("auto", "conv", "matmul_grad")
# "auto" takes the matmul kernel gradient for undilated convolutions from this many input channels per
# output channel (paper step: 211 -> 128, 339 -> 96, 435 -> 64, 499 -> 32, 533 -> 128, 64 -> 32); below
# it building the shifted copies of the output gradient can cost more than XLA:CPU's own kernel gradient
# (`benchmarks/conv_grad.py`, forward and both gradients at 4 x 64 x 64: 211 -> 128 47 vs 66 ms,
# 83 -> 128 28 vs 31, at 4 x 32 x 32 7.3 vs 6.6).
_MATMUL_GRAD_MIN_RATIO = 1.5


def conv3x3_taps(x, kernel):
  """SAME 3 x 3 convolution as one matmul and a sum of shifted slices.

  x [B, H, W, C], kernel [3, 3, C, O] (`nn.Conv`'s layout) -> [B, H, W, O] float32:
  every tap's output at every padded pixel in one matmul to 9 * O channels, then
  the 9 taps' slices summed. The same values as the convolution (float32
  rounding; bfloat16 inputs accumulate in float32). For a few output channels
  this is the faster form on XLA:CPU, which runs the predicting convolution
  (531 -> 2 channels) at about 10 GFLOP/s: the matmul reads the input once and
  both gradients are matmuls (docs/benchmarks.md).
  """
  _, height, width, channels = x.shape
  outputs = kernel.shape[-1]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  per_tap = kernel.transpose(2, 0, 1, 3).reshape(channels, 9, outputs)
  taps = jnp.einsum("bhwc,cko->bhwko", padded, per_tap, preferred_element_type=jnp.float32)
  return sum(taps[:, dy:dy + height, dx:dx + width, 3 * dy + dx] for dy in range(3) for dx in range(3))


def _conv3x3(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def conv3x3_matmul_grad(x, kernel):
  """SAME 3 x 3 convolution [B, H, W, C] x [3, 3, C, O] -> [B, H, W, O] whose kernel gradient is one matmul.

  Forward pass and input gradient are XLA's. The kernel gradient, dK[a, b] = sum_p x[p]^T dy[p - (a, b) + 1],
  is x's pixels as rows against the output gradient's nine shifted copies side by side: one
  [C, B H W] x [B H W, 9 O] matmul. On XLA:CPU its own kernel gradient of a convolution with many more
  inputs than outputs runs at about a third of the matmul rate (docs/benchmarks.md).
  """
  return _conv3x3(x, kernel)


def _conv3x3_forward(x, kernel):
  return _conv3x3(x, kernel), (x, kernel)


def _conv3x3_backward(residuals, grad_y):
  x, kernel = residuals
  _, height, width, channels = x.shape
  outputs = grad_y.shape[-1]
  # XLA's input gradient; transposed rather than `jax.vjp`'d, which would also trace a forward pass.
  grad_x, = jax.linear_transpose(lambda a: _conv3x3(a, kernel), x)(grad_y)
  # Shifting the (narrower) output gradient rather than x: x is read once, as it is, and the copies
  # are 9 O wide instead of 9 C.
  padded = jnp.pad(grad_y, ((0, 0), (1, 1), (1, 1), (0, 0)))
  shifted = jnp.concatenate([padded[:, 2 - a:2 - a + height, 2 - b:2 - b + width] for a in range(3) for b in range(3)],
                            axis=-1)
  grad_kernel = jnp.matmul(x.reshape(-1, channels).T, shifted.reshape(-1, 9 * outputs),
                           preferred_element_type=jnp.float32)
  grad_kernel = grad_kernel.reshape(channels, 3, 3, outputs).transpose(1, 2, 0, 3)
  return grad_x, grad_kernel.astype(kernel.dtype)


conv3x3_matmul_grad.defvjp(_conv3x3_forward, _conv3x3_backward)


class HeadConv(nn.Conv):
  """`nn.Conv` (same parameters, same forward values) whose 3 x 3 undilated form can take its kernel
  gradient as one matmul (`conv3x3_matmul_grad`).

  impl: "conv" (`nn.Conv`), "matmul_grad" (where the convolution is 3 x 3 and undilated) or "auto"
  (matmul_grad on the CPU backend from `_MATMUL_GRAD_MIN_RATIO` input channels per output channel).
  """
  impl: str = "conv"

  @nn.compact
  def __call__(self, inputs):
    if self.impl not in CONV_IMPLS:
      raise ValueError(f"config.model.flow_head.conv_impl={self.impl!r}: known {', '.join(CONV_IMPLS)}")
    dilation = self.kernel_dilation or 1
    dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    suited = tuple(self.kernel_size) == (3, 3) and dilation == (1, 1) and self.padding == "SAME"
    if self.impl == "auto":
      wide = inputs.shape[-1] >= _MATMUL_GRAD_MIN_RATIO * self.features
      suited = suited and wide and jax.default_backend() == "cpu"
    if self.impl == "conv" or not suited:
      return super().__call__(inputs)
    kernel = self.param("kernel", self.kernel_init, (3, 3, inputs.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    inputs, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    y = conv3x3_matmul_grad(inputs, kernel)
    return y if bias is None else y + bias


class FlowPrediction(nn.Module):
  """The zero-initialised 3 x 3 conv to 2 flow channels, parameters laid out as `nn.Conv`'s.

  impl: "conv" (the convolution as `nn.Conv` computes it), "taps" (`conv3x3_taps`) or "auto" (taps on the CPU
  backend, the convolution elsewhere). The same values either way.
  """
  impl: str = "conv"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    impl = self.impl
    if impl not in PREDICT_IMPLS:
      raise ValueError(f"config.model.flow_head.predict_impl={impl!r}: known {', '.join(PREDICT_IMPLS)}")
    if impl == "auto":
      impl = "taps" if jax.default_backend() == "cpu" else "conv"
    # Zero-initialised so that an untrained head predicts zero residual flow
    # (the identity warp) instead of random flows of several pixels.
    kernel = self.param("kernel", nn.initializers.zeros, (3, 3, x.shape[-1], 2))
    bias = self.param("bias", nn.initializers.zeros, (2,))
    x, kernel, bias = x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype)
    if impl == "taps":
      return conv3x3_taps(x, kernel) + bias
    return _conv3x3(x, kernel) + bias


class ConvStack(nn.Module):
  """3x3 convs with LayerNorm + LeakyReLU after each, then a 3x3 conv to 2 channels.

  With `dense`, each conv's output is concatenated in front of its input (the
  dense connections of PWC-Net's estimators).

  Returns (prediction [B, H, W, 2], last features [B, H, W, C']).
  """
  widths: Sequence[int]
  dilations: Sequence[int]
  dense: bool
  layer_norm: bool
  negative_slope: float
  norm_eps: float
  dtype: Any = jnp.float32
  predict_impl: str = "conv"
  conv_impl: str = "conv"

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    for i, (width, dilation) in enumerate(zip(self.widths, self.dilations)):
      y = HeadConv(width, (3, 3), kernel_dilation=(dilation, dilation), padding="SAME", dtype=self.dtype,
                   impl=self.conv_impl, name=f"conv{i}")(x)
      # The paper reports that training collapses without these LayerNorms.
      if self.layer_norm:
        y = nn.LayerNorm(epsilon=self.norm_eps, dtype=self.dtype, name=f"norm{i}")(y)
      y = nn.leaky_relu(y, self.negative_slope)
      x = jnp.concatenate([y, x], axis=-1) if self.dense else y
    prediction = FlowPrediction(self.predict_impl, self.dtype, name="predict")(x)
    # Flow accumulates over levels in float32: bfloat16 resolves only 0.5 px at 100 px.
    return prediction.astype(jnp.float32), x


def normalize_pair(a, b, eps=1e-8):
  """Centres and scales two feature maps by their joint moments over (H, W, C) per pair.

  UFlow normalises features before the cost volume so that correlation values
  have the same scale at every level and throughout training (ConvNeXt's
  residual streams grow; LayerNorm'd stem features do not). Moments are shared
  by the two frames of each pair and taken per pair, so a prediction does not
  depend on the rest of the batch.

  Args:
    a, b: [B, H, W, C].

  Returns:
    (a', b'), same shapes.
  """
  mean = (jnp.mean(a, axis=(1, 2, 3), keepdims=True) + jnp.mean(b, axis=(1, 2, 3), keepdims=True)) / 2
  var = (jnp.var(a, axis=(1, 2, 3), keepdims=True) + jnp.var(b, axis=(1, 2, 3), keepdims=True)) / 2
  scale = jax.lax.rsqrt(var + eps)
  return (a - mean) * scale, (b - mean) * scale


def patch_descriptors(images, size):
  """Normalised 3x3 patches of images area-pooled to `size`: a fixed matching descriptor.

  Each pixel's 27 values (3x3 neighbours x RGB) are centred and scaled to unit
  norm, so their correlation is a normalised cross-correlation (the classical
  matching cost), informative from the first step, unlike learned features.

  Args:
    images: [B, H, W, 3], H and W multiples of `size`.
    size: (h, w) of the level.

  Returns:
    [B, h, w, 27].
  """
  pooled = area_downsample(images, size)
  padded = jnp.pad(pooled, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  height, width = size
  patches = jnp.concatenate([padded[:, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)], -1)
  patches = patches - jnp.mean(patches, axis=-1, keepdims=True)
  # Scaled so that the (1/C)-normalised correlation of a patch with itself is 1.
  norm = jnp.sqrt(jnp.mean(patches**2, axis=-1, keepdims=True) + 1e-4)
  return patches / norm


def normalize_pixels(x, eps=1e-6):
  """Centres each feature vector over its channels and scales it to unit RMS: [B, H, W, C] -> same.

  The (1/C)-normalised correlation of two such vectors is their cosine
  similarity (a normalised cross-correlation of features), so a match is
  judged by the pattern of a pixel's features, not by their magnitude.
  """
  x = x - jnp.mean(x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.mean(x**2, axis=-1, keepdims=True) + eps)


FEATURE_NORMALIZATIONS = ("none", "pair", "pixel")
UPSAMPLINGS = ("bilinear", "convex")
# Floor added to the bilinear weights before their log becomes the convex mask's prior: an
# untrained mask then upsamples like `resize_flow` to within about 1 % of a neighbour's flow, and
# the neighbours bilinear upsampling ignores keep a weight (and a gradient) the mask can raise.
_CONVEX_PRIOR_FLOOR = 1e-2


class PWCFlowHead(nn.Module):
  """Estimates flow from two feature pyramids.

  Attributes:
    levels: pyramid levels to estimate at, coarse to fine (paper: 6, 5, 4, 3, 2).
    corr_radius: correlation radius r, (2r+1)^2 cost channels.
    estimator_widths: conv widths of each level's estimator (128, 128, 96, 64, 32).
    context_widths, context_dilations: the dilated context network.
    negative_slope: LeakyReLU slope (0.1).
    flow_clip: flows are clipped to [-flow_clip, flow_clip] pixels at every level.
    layer_norm: LayerNorm after every conv but the predicting one.
    normalize_features: how features are normalised before the cost volume:
      "none" (paper), "pair" (UFlow: `normalize_pair`) or "pixel" (cosine
      similarity: `normalize_pixels`); our choice.
    feature_widths: widths of 3x3 conv + LeakyReLU layers, with their own
      weights per level, that turn the shared pyramid into the features the
      cost volume matches and the estimator reads (empty: the pyramid itself,
      as in the paper). Trained by the flow loss alone, they give matching a
      say over what is matched while the encoder serves both tasks (our choice).
    corr_activation: LeakyReLU on the cost volume (PWC-Net, ARFlow, UFlow).
    pass_features: the coarser level's last estimator features, upsampled,
      join the next estimator's input (PWC-Net, ARFlow).
    image_cost: a second cost volume of fixed normalised image patches
      (`patch_descriptors`) joins the estimator's input (our choice).
    source_features: the frame-t features join the estimator's input (PWC-Net);
      without them the estimator reads only the cost volume and the flow, so it
      cannot guess flow from appearance instead of matching (our choice).
    context_source_features: the finest level's frame-t features join the
      context network's input, so the last refinement can see where the
      surfaces of frame t end (RAFT's context encoder; our choice, an option).
    upsample: how flow moves to the next finer grid, between levels and to the
      input resolution: "bilinear" (paper) or "convex" (RAFT's learned convex
      combination of the 3 x 3 coarse neighbours, its mask computed at the fine
      resolution from the frame-t features of that level, or the frame-t image
      at the end, and the bilinearly upsampled flow; our choice, an option).
    upsample_width: width of the convex mask's hidden 3 x 3 conv.
    refine_passes: extra passes of the finest level's estimator, its
      weights reused, on the flow it just refined (IRR-PWC / RAFT-style iteration;
      0 = the paper; our choice, an option).
    dtype: of the convolutions (estimators, context network, feature convs);
      warps, cost volumes and the flow itself stay float32.
    remat: rematerialise each level's estimator and the context network in the
      backward pass ("none", "full", "dots").
    corr_impl: the cost volume's formulation (`ops.correlation`; same values).
    predict_impl: the formulation of the convolutions to 2 flow channels
      (`FlowPrediction`; same values).
    conv_impl: the kernel gradient of the estimators' and context network's other
      convolutions (`HeadConv`; same values).
  """
  levels: Sequence[int]
  corr_radius: int
  estimator_widths: Sequence[int]
  context_widths: Sequence[int]
  context_dilations: Sequence[int]
  negative_slope: float
  flow_clip: float
  layer_norm: bool
  norm_eps: float
  normalize_features: str = "none"
  feature_widths: Sequence[int] = ()
  corr_activation: bool = False
  pass_features: bool = False
  source_features: bool = True
  context_source_features: bool = False
  image_cost: bool = False
  upsample: str = "bilinear"
  upsample_width: int = 32
  refine_passes: int = 0
  dtype: Any = jnp.float32
  remat: str = "none"
  corr_impl: str = "slices"
  predict_impl: str = "conv"
  conv_impl: str = "conv"

  def _adapt(self, level, source, target):
    """Level-`level` matching features of both frames (one set of weights per level), in float32:
    the warp and the cost volume are computed in float32 whatever the compute dtype."""
    for i, width in enumerate(self.feature_widths):
      layer = nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype, name=f"adapter{level}_conv{i}")
      source = nn.leaky_relu(layer(source), self.negative_slope)
      target = nn.leaky_relu(layer(target), self.negative_slope)
    return source.astype(jnp.float32), target.astype(jnp.float32)

  def _upsample(self, name, flow, guide, size):
    """Flow [B, h, w, 2] on the h x w grid -> [B, H, W, 2] on the `size` grid.

    `guide` [B, H, W, C]: frame-t features (or image) at the fine resolution that
    the convex mask reads; unused by bilinear upsampling.
    """
    if self.upsample == "bilinear":
      return resize_flow(flow, size)
    if self.upsample != "convex":
      raise ValueError(f"config.model.flow_head.upsample: unknown {self.upsample!r} (known: {', '.join(UPSAMPLINGS)})")
    batch, height, width, _ = flow.shape
    factor = size[0] // height
    if (height * factor, width * factor) != tuple(size):
      raise ValueError(f"flow_head.upsample='convex' needs an integer factor between grids, got "
                       f"{(height, width)} -> {tuple(size)}")
    if guide is None:
      raise ValueError("flow_head.upsample='convex' needs the frames: pass source_images and target_images")
    bilinear = resize_flow(flow, size)
    x = jnp.concatenate([guide.astype(jnp.float32), bilinear], axis=-1).astype(self.dtype)
    x = nn.leaky_relu(nn.Conv(self.upsample_width, (3, 3), padding="SAME", dtype=self.dtype, name=f"{name}_conv")(x),
                      self.negative_slope)
    # Zero-initialised: an untrained mask is the bilinear prior.
    delta = nn.Conv(9, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros, dtype=self.dtype,
                    name=f"{name}_mask")(x)
    prior = np.log(bilinear_upsample_weights(factor) + _CONVEX_PRIOR_FLOOR).astype(np.float32)
    prior = np.tile(prior, (height, width, 1))
    return convex_upsample(flow, delta.astype(jnp.float32) + prior, factor)

  def _estimator_inputs(self, source, target, flow, warp_target, coarse_features, source_images, target_images):
    """An estimator's input [B, h, w, C_in]: the cost volume of frame t against the target warped by `flow`,
    the flow itself and, as configured, the frame-t features, the image cost volume and the coarser
    level's upsampled estimator features."""
    batch, height, width, _ = source.shape
    warped = warp(target, flow) if warp_target else target
    if self.normalize_features == "pair":
      cost = correlation(*normalize_pair(source, warped), self.corr_radius, self.corr_impl)
    elif self.normalize_features == "pixel":
      cost = correlation(normalize_pixels(source), normalize_pixels(warped), self.corr_radius, self.corr_impl)
    elif self.normalize_features == "none":
      cost = correlation(source, warped, self.corr_radius, self.corr_impl)
    else:
      raise ValueError(f"config.model.flow_head.normalize_features: unknown {self.normalize_features!r} "
                       f"(known: {', '.join(FEATURE_NORMALIZATIONS)})")
    if self.corr_activation:
      cost = nn.leaky_relu(cost, self.negative_slope)
    inputs = [cost, source, flow] if self.source_features else [cost, flow]
    if self.image_cost:
      if source_images is None or target_images is None:
        raise ValueError("flow_head.image_cost needs the frames: pass source_images and target_images")
      descriptors = patch_descriptors(source_images, (height, width))
      target_descriptors = patch_descriptors(target_images, (height, width))
      if warp_target:
        target_descriptors = warp(target_descriptors, flow)
      inputs.append(correlation(descriptors, target_descriptors, self.corr_radius, self.corr_impl))
    if self.pass_features and coarse_features is not None:
      inputs.append(jax.image.resize(coarse_features, (batch, height, width, coarse_features.shape[-1]), "bilinear"))
    return jnp.concatenate(inputs, axis=-1)

  @nn.compact
  def __call__(self, source_pyramid, target_pyramid, output_size, source_images=None, target_images=None):
    """Flow from `source` images to `target` images.

    Args:
      source_pyramid: tuple of [B, H_l, W_l, C_l], level l at index l - 1.
      target_pyramid: same shapes, features of the frame the flow points into.
      output_size: (H, W) of the input images.
      source_images, target_images: [B, H, W, 3] the frames (needed by `image_cost`).

    Returns:
      dict with "levels": {l: [B, H_l, W_l, 2]} flow at each estimated level
      (the finest after context refinement), and "full": [B, H, W, 2] flow at
      the input resolution. Flows are in pixels of their own grid.
    """
    flow = None
    level_flows = {}
    features = None
    stack_class = rematerialised(ConvStack, self.remat)
    for level in self.levels:
      source, target = self._adapt(level, source_pyramid[level - 1], target_pyramid[level - 1])
      batch, height, width, _ = source.shape
      coarse_features = features
      if flow is None:
        flow = jnp.zeros((batch, height, width, 2), source.dtype)
        warp_target = False  # zero flow: the target as it is
      else:
        flow = self._upsample(f"upsample{level}", flow, source, (height, width))
        warp_target = True
      estimator = stack_class(self.estimator_widths, (1,) * len(self.estimator_widths), dense=True,
                            layer_norm=self.layer_norm, negative_slope=self.negative_slope,
                            norm_eps=self.norm_eps, dtype=self.dtype, predict_impl=self.predict_impl,
                            conv_impl=self.conv_impl, name=f"estimator{level}")
      # The finest level's estimator may run again on its own output (same weights): each pass
      # re-warps the target by the refined flow, so the residual it reads is smaller.
      passes = 1 + (self.refine_passes if level == self.levels[-1] else 0)
      for index in range(passes):
        inputs = self._estimator_inputs(source, target, flow, warp_target or index > 0, coarse_features,
                                        source_images, target_images)
        residual, features = estimator(inputs)
        flow = jnp.clip(flow + residual, -self.flow_clip, self.flow_clip)
      level_flows[level] = flow

    context = stack_class(self.context_widths, self.context_dilations, dense=False,
                        layer_norm=self.layer_norm, negative_slope=self.negative_slope,
                        norm_eps=self.norm_eps, dtype=self.dtype, predict_impl=self.predict_impl,
                        conv_impl=self.conv_impl, name="context")
    context_inputs = [features, flow, source] if self.context_source_features else [features, flow]
    refinement, _ = context(jnp.concatenate(context_inputs, axis=-1))
    flow = jnp.clip(flow + refinement, -self.flow_clip, self.flow_clip)
    level_flows[self.levels[-1]] = flow
    full = self._upsample("upsample_full", flow, source_images, tuple(output_size))
    return {"levels": level_flows, "full": full}
