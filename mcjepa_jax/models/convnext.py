"""ConvNeXt encoder with a flow-friendly split stem, DESIGN.md section 2.

The ConvNeXt patchify stem (4x4 stride 4) is split into two stride-2 convs so
that the flow head gets features at H/2 and H/4. Output is the six-level
pyramid (H/2 ... H/64) and the global average of the coarsest level.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mcjepa_jax.models.pyramid import (KERNEL_INIT, DropPath, LevelRecorder, gather_tokens, gelu, keep_mask,
                                       rematerialised, split_stem)

DEPTHWISE_IMPLS = ("auto", "conv", "shifts")


def _shifted_sum(x, kernel, before, after):
  """sum over (dy, dx) of x zero-padded by (before, after) and shifted by (dy, dx), times kernel[dy, dx, 0]."""
  size = kernel.shape[0]
  padded = jnp.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
  height, width = x.shape[1:3]
  out = None
  for dy in range(size):
    for dx in range(size):
      term = padded[:, dy:dy + height, dx:dx + width, :] * kernel[dy, dx, 0]
      out = term if out is None else out + term
  return out


def _padding(size):
  before = (size - 1) // 2
  return before, size - 1 - before


@jax.custom_vjp
def depthwise_shifts(x, kernel):
  """Depthwise 'SAME' convolution as k*k shifted multiply-adds: [B, H, W, C] x [k, k, 1, C] -> [B, H, W, C].

  The same sum as `lax.conv_general_dilated(..., feature_group_count=C)`. XLA:CPU lowers that
  grouped convolution's gradient to a dense [k, k, C, C] convolution with a block-diagonal
  kernel (C times the work, and [k, k, C, C] buffers: about half of the encoder's time in the
  paper step on the CPU, docs/benchmarks.md); here the backward pass is written out too
  (`_depthwise_shifts_bwd`), so forward and backward each read the activations a few times and
  keep only x and the kernel.
  GPUs and TPUs run the convolution well.
  """
  return _shifted_sum(x, kernel, *_padding(kernel.shape[0]))


def _depthwise_shifts_fwd(x, kernel):
  return depthwise_shifts(x, kernel), (x, kernel)


def _depthwise_shifts_bwd(residuals, grad):
  """Input gradient: the same shifted sum of the output gradient with the flipped kernel (and the
  padding swapped, for even sizes); kernel gradient: a multiply-reduce per offset."""
  # The barrier keeps XLA from sharing these 49 shifted slices with the forward pass's: shared, each
  # would be written out as its own copy of the activations (49x the memory) instead of fused.
  x, kernel = jax.lax.optimization_barrier(residuals)
  size = kernel.shape[0]
  before, after = _padding(size)
  grad_x = _shifted_sum(grad, kernel[::-1, ::-1], after, before)
  padded = jnp.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
  height, width = x.shape[1:3]
  # One variadic reduction over batch and rows for all k*k taps reads each tile of x and grad once
  # (k*k separate reductions re-read both k*k times: 3x slower on XLA:CPU); the columns last.
  # Sums of B H W products accumulate in float32 whatever the compute dtype.
  padded, wide_grad = padded.astype(jnp.float32), grad.astype(jnp.float32)
  products = tuple(padded[:, dy:dy + height, dx:dx + width, :] * wide_grad
                   for dy in range(size) for dx in range(size))
  zeros = tuple(jnp.zeros((), product.dtype) for product in products)
  columns = jax.lax.reduce(products, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b)), (0, 1))
  taps = [jnp.sum(column, axis=0) for column in columns]
  grad_kernel = jnp.stack(taps).reshape(kernel.shape).astype(kernel.dtype)
  return grad_x.astype(x.dtype), grad_kernel


depthwise_shifts.defvjp(_depthwise_shifts_fwd, _depthwise_shifts_bwd)


class DepthwiseConv(nn.Module):
  """k x k depthwise convolution with bias, parameters laid out as `nn.Conv`'s ("kernel" [k, k, 1, C], "bias").

  impl: "conv" (grouped convolution), "shifts" (`depthwise_shifts`) or "auto"
  (shifts on the CPU backend, the convolution elsewhere). All give the same values.
  """
  features: int
  kernel_size: int
  impl: str = "conv"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", KERNEL_INIT, (self.kernel_size, self.kernel_size, 1, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    impl = self.impl
    if impl not in DEPTHWISE_IMPLS:
      raise ValueError(f"config.model.encoder.depthwise={impl!r}: known {', '.join(DEPTHWISE_IMPLS)}")
    if impl == "auto":
      impl = "shifts" if jax.default_backend() == "cpu" else "conv"
    x, kernel, bias = x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype)
    if impl == "shifts":
      return depthwise_shifts(x, kernel) + bias
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     feature_group_count=self.features)
    return y + bias


class ConvNeXtBlock(nn.Module):
  """7x7 depthwise conv, LayerNorm, 4x MLP with GELU, layer scale, drop path.

  [B, H, W, C] -> [B, H, W, C].
  """
  width: int
  kernel_size: int
  mlp_ratio: int
  layer_scale_init: float
  drop_path_rate: float
  norm_eps: float
  depthwise: str = "conv"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    residual = x
    x = DepthwiseConv(self.width, self.kernel_size, self.depthwise, self.dtype, name="dwconv")(x)
    x = nn.LayerNorm(epsilon=self.norm_eps, dtype=self.dtype, name="norm")(x)
    x = nn.Dense(self.mlp_ratio * self.width, kernel_init=KERNEL_INIT, dtype=self.dtype, name="pwconv1")(x)
    x = gelu(x)
    x = nn.Dense(self.width, kernel_init=KERNEL_INIT, dtype=self.dtype, name="pwconv2")(x)
    gamma = self.param("layer_scale", nn.initializers.constant(self.layer_scale_init), (self.width,))
    x = x * gamma.astype(self.dtype)
    return residual + DropPath(self.drop_path_rate, name="drop_path")(x, train)


class ConvNeXtEncoder(nn.Module):
  """ConvNeXt with the split stem of DESIGN.md 2.

  Attributes:
    stem_widths: channels of levels 1 and 2 (paper: 48, 48).
    depths: blocks per stage (ConvNeXt-T: 3, 3, 9, 3).
    widths: channels per stage = levels 3..6 (ConvNeXt-T: 96, 192, 384, 768).
    kernel_size, mlp_ratio, layer_scale_init, drop_path_rate, norm_eps: block settings.
    stem_kernels: kernel sides of the two stride-2 stem convs (DESIGN.md: 4, 3).
      An odd second kernel puts level-2 pixel centres one input pixel off the
      half-pixel grid that bilinear flow resizing assumes (and every coarser
      level inherits it); (4, 4) keeps every level on that grid.
    depthwise: implementation of the 7x7 depthwise convolution (`DepthwiseConv`).
    token_level: pyramid level whose cells are the tokens of an I-JEPA branch.
    dtype: of activations and convolutions/matmuls (parameters stay float32).
    remat: rematerialise each block in the backward pass ("none", "full", "dots").
  """
  stem_widths: Sequence[int]
  depths: Sequence[int]
  widths: Sequence[int]
  kernel_size: int
  mlp_ratio: int
  layer_scale_init: float
  drop_path_rate: float
  norm_eps: float
  stem_kernels: Sequence[int] = (4, 3)
  depthwise: str = "conv"
  token_level: int = 4
  dtype: Any = jnp.float32
  remat: str = "none"

  @property
  def total_stride(self):
    """Downsampling of the coarsest level: 2 stem convs + one per stage, each stride 2."""
    return 2**(2 + len(self.depths))

  @property
  def token_stride(self):
    """Side in pixels of a token of the I-JEPA branch: a cell of level `token_level`."""
    return 2**self.token_level

  @nn.compact
  def __call__(self, images, train=False, grad_scales=None, tokens=False, token_indices=None, token_valid=None):
    """Encodes images.

    Args:
      images: [B, H, W, 3], H and W multiples of 64 for a full pyramid.
      train: enables stochastic depth (needs the "drop_path" rng).
      grad_scales: optional per-level factors (six) on the gradient that
        reaches level l from the levels above it (`scale_gradient`).
      tokens: return the cells of level `token_level` as tokens instead.
      token_indices, token_valid: [B, K] int / bool, with `tokens`: keep only
        these cells. A convolution cannot drop tokens, so the pixels of every
        other cell are blanked (set to the normalised mean, 0) before encoding,
        as masked-image convnets do (our choice for I-JEPA on ConvNeXt).

    Returns:
      (pyramid, pooled): pyramid is a tuple of six arrays, level l at
      [B, H/2^l, W/2^l, C_l]; pooled is [B, widths[-1]], the global average of
      level 6. With `tokens`: [B, K, C] (K = all cells, row-major, without
      `token_indices`).
    """
    if tokens and token_indices is not None:
      side = self.token_stride
      grid = (images.shape[1] // side, images.shape[2] // side)
      keep = keep_mask(token_indices, token_valid, grid[0] * grid[1]).reshape(-1, *grid, 1)
      images = images * jnp.repeat(jnp.repeat(keep, side, axis=1), side, axis=2).astype(images.dtype)
    recorder = LevelRecorder(grad_scales)
    x = split_stem(images, self.stem_widths, self.stem_kernels, self.norm_eps, recorder.emit, self.dtype)

    block_class = rematerialised(ConvNeXtBlock, self.remat, static_argnums=(2,))
    total_blocks = sum(self.depths)
    block_index = 0
    for stage, (depth, width) in enumerate(zip(self.depths, self.widths)):
      x = nn.LayerNorm(epsilon=self.norm_eps, dtype=self.dtype, name=f"downsample{stage}_norm")(x)
      x = nn.Conv(width, (2, 2), strides=(2, 2), padding="VALID", kernel_init=KERNEL_INIT, dtype=self.dtype,
                  name=f"downsample{stage}_conv")(x)
      for i in range(depth):
        # Linearly increasing drop rate over the network depth, as in ConvNeXt.
        rate = self.drop_path_rate * block_index / max(total_blocks - 1, 1)
        x = block_class(width, self.kernel_size, self.mlp_ratio, self.layer_scale_init, rate,
                          self.norm_eps, self.depthwise, self.dtype, name=f"stage{stage}_block{i}")(x, train)
        block_index += 1
      x = recorder.emit(x)
    pyramid = tuple(recorder.levels)
    if tokens:
      cells = pyramid[self.token_level - 1]
      cells = cells.reshape(cells.shape[0], -1, cells.shape[-1])
      return cells if token_indices is None else gather_tokens(cells, token_indices)
    return pyramid, jnp.mean(x, axis=(1, 2))
