"""ViT encoder with a multi-scale adapter, so the PWC flow head reads the six levels it expects.

The seed variant of MC-JEPA (issue 16): one ViT shared by the flow and the
content branch. A plain ViT has a single stride-p token grid, while the flow
head of DESIGN.md 3 reads levels 1-6 (H/2 ... H/64). Our choice, after ViTDet's
simple feature pyramid:

  levels 1, 2 (H/2, H/4): the split convolutional stem of the ConvNeXt encoder
      (DESIGN.md 2), on the pixels: a p x p patch embedding has nothing finer
      than H/p, and the finest cost volumes need fine features;
  levels 3-6: the last block's tokens as a [B, H/p, W/p, D] grid, resampled to
      stride 2^l (a p/2^l x p/2^l transposed convolution up, 2^l/p max pooling
      down, nothing at 2^l = p), then a 1x1 projection to `adapter_widths` and
      LayerNorm.

Only the flow loss (and the VC terms on the pyramid) train the stem and the
adapter; the content branch reads the tokens (pooled: their mean). For I-JEPA
the encoder also takes a subset of tokens (`token_indices`) and returns the
encoded subset: dropped tokens are never computed, as in I-JEPA.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mcjepa_jax.models.pyramid import (KERNEL_INIT, PYRAMID_LEVELS, DropPath, LevelRecorder, gather_tokens, gelu,
                                       rematerialised, split_stem)

POSEMBS = ("sincos", "learn")


def sincos_2d(height, width, dim, temperature=10_000.0):
  """Fixed 2-D sine-cosine positions (MAE / I-JEPA): [height * width, dim], row-major.

  A quarter of the channels each: sin and cos of the row, sin and cos of the column,
  at `dim // 4` geometric frequencies.
  """
  if dim % 4:
    raise ValueError(f"sin-cos positions need a width divisible by 4, got {dim}")
  rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
  omega = 1.0 / temperature**(np.arange(dim // 4, dtype=np.float64) / (dim // 4))
  r = rows.reshape(-1, 1) * omega
  c = cols.reshape(-1, 1) * omega
  return jnp.asarray(np.concatenate([np.sin(r), np.cos(r), np.sin(c), np.cos(c)], axis=1), jnp.float32)


class _BlockSettings(nn.Module):
  """Settings of a pre-norm transformer block (shared by a block and a stack of them)."""
  num_heads: int
  mlp_ratio: float
  layer_scale_init: float
  drop_path_rate: float
  norm_eps: float
  dtype: Any = jnp.float32
  remat: str = "none"


class TransformerBlock(_BlockSettings):
  """Pre-norm block: x + DropPath(ls1 * MSA(LN(x))), then x + DropPath(ls2 * MLP(LN(x))). [B, N, D] -> same.

  `valid` [B, N] (optional): tokens that others may attend to (padding is ignored).
  layer_scale_init 0 turns layer scale off (no parameter).
  """

  @nn.compact
  def __call__(self, x, valid, train):
    width = x.shape[-1]
    mask = None if valid is None else valid[:, None, None, :]
    y = nn.LayerNorm(epsilon=self.norm_eps, dtype=self.dtype, name="norm1")(x)
    # Softmax in float32 whatever the compute dtype.
    y = nn.MultiHeadDotProductAttention(self.num_heads, kernel_init=KERNEL_INIT, dtype=self.dtype,
                                        force_fp32_for_softmax=True, name="attention")(y, y, mask=mask)
    x = x + DropPath(self.drop_path_rate, name="drop_path1")(self._scale(y, "layer_scale1"), train)
    y = nn.LayerNorm(epsilon=self.norm_eps, dtype=self.dtype, name="norm2")(x)
    y = nn.Dense(int(self.mlp_ratio * width), kernel_init=KERNEL_INIT, dtype=self.dtype, name="mlp1")(y)
    y = nn.Dense(width, kernel_init=KERNEL_INIT, dtype=self.dtype, name="mlp2")(gelu(y))
    return x + DropPath(self.drop_path_rate, name="drop_path2")(self._scale(y, "layer_scale2"), train)

  def _scale(self, y, name):
    if not self.layer_scale_init:
      return y
    return y * self.param(name, nn.initializers.constant(self.layer_scale_init), (y.shape[-1],)).astype(y.dtype)


class Transformer(_BlockSettings):
  """`depth` TransformerBlocks with stochastic depth rising linearly to `drop_path_rate`, then LayerNorm.

  Shared by the ViT encoder and the I-JEPA predictor. [B, N, D] -> [B, N, D].
  """
  depth: int = 1

  @nn.compact
  def __call__(self, x, valid=None, train=False):
    block_class = rematerialised(TransformerBlock, self.remat, static_argnums=(3,))
    for i in range(self.depth):
      rate = self.drop_path_rate * i / max(self.depth - 1, 1)
      x = block_class(self.num_heads, self.mlp_ratio, self.layer_scale_init, rate, self.norm_eps, self.dtype,
                      name=f"block{i}")(x, valid, train)
    return nn.LayerNorm(epsilon=self.norm_eps, dtype=self.dtype, name="norm")(x)


class ViTEncoder(nn.Module):
  """ViT (patch embedding, positions, pre-norm blocks) + stem + adapter: the six-level pyramid.

  Attributes:
    patch_size: token side p in pixels (16 for ViT-S/16, B/16); a power of two in 4..64.
    width, depth, num_heads, mlp_ratio: the transformer (ViT-S: 384, 12, 6, 4; ViT-B: 768, 12, 12, 4).
    posemb: "sincos" (fixed, computed for any grid) or "learn" (a `posemb_grid` table,
      bilinearly resized to other grids).
    posemb_grid: (rows, cols) of the learned table (224 / 16 = 14 for ImageNet sizes).
    layer_scale_init: 0 = off; drop_path_rate: stochastic depth of the last block.
    norm_eps: LayerNorm epsilon.
    stem_widths, stem_kernels: levels 1 and 2 (`pyramid.split_stem`).
    adapter_widths: channels of levels 3-6.
    dtype: of activations and matmuls/convolutions (parameters stay float32).
    remat: rematerialise each transformer block in the backward pass ("none", "full", "dots").
  """
  patch_size: int
  width: int
  depth: int
  num_heads: int
  mlp_ratio: float
  posemb: str
  posemb_grid: Sequence[int]
  layer_scale_init: float
  drop_path_rate: float
  norm_eps: float
  stem_widths: Sequence[int]
  stem_kernels: Sequence[int]
  adapter_widths: Sequence[int]
  dtype: Any = jnp.float32
  remat: str = "none"

  @property
  def total_stride(self):
    return 2**PYRAMID_LEVELS

  @property
  def token_stride(self):
    return self.patch_size

  def _positions(self, height, width):
    if self.posemb == "sincos":
      return sincos_2d(height, width, self.width)
    if self.posemb != "learn":
      raise ValueError(f"config.model.encoder.posemb={self.posemb!r}: known {', '.join(POSEMBS)}")
    table = self.param("posemb", nn.initializers.normal(stddev=0.02), (*self.posemb_grid, self.width))
    if tuple(self.posemb_grid) != (height, width):
      table = jax.image.resize(table, (height, width, self.width), "bilinear")
    return table.reshape(height * width, self.width)

  @nn.compact
  def __call__(self, images, train=False, grad_scales=None, tokens=False, token_indices=None, token_valid=None):
    """Encodes images.

    Args:
      images: [B, H, W, 3] normalised images; H, W multiples of 64 for the full pyramid.
      train: stochastic depth on (needs the "drop_path" rng).
      grad_scales: optional six factors on the gradient leaving each level (as ConvNeXt).
      tokens: return the last block's tokens [B, K, D] instead of the pyramid.
      token_indices, token_valid: [B, K] int / bool: encode only these tokens
        (row-major indices into the H/p x W/p grid); invalid ones are padding
        that no token attends to.

    Returns:
      (pyramid, pooled): six levels [B, H/2^l, W/2^l, C_l] and [B, D], the mean
      token; with `tokens`: [B, K, D] (K = all tokens without `token_indices`).
    """
    recorder = LevelRecorder(grad_scales)
    if not tokens:
      split_stem(images, self.stem_widths, self.stem_kernels, self.norm_eps, recorder.emit, self.dtype)
    p = self.patch_size
    x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", kernel_init=KERNEL_INIT, dtype=self.dtype,
                name="patch_embed")(images)
    batch, rows, cols, _ = x.shape
    x = x.reshape(batch, rows * cols, self.width) + self._positions(rows, cols).astype(x.dtype)
    if token_indices is not None:
      x = gather_tokens(x, token_indices)
    x = Transformer(self.num_heads, self.mlp_ratio, self.layer_scale_init, self.drop_path_rate, self.norm_eps,
                    self.dtype, self.remat, depth=self.depth, name="transformer")(x, token_valid if token_indices is not None else None, train)
    if tokens:
      return x
    grid = x.reshape(batch, rows, cols, self.width)
    for level, width in zip(range(len(self.stem_widths) + 1, PYRAMID_LEVELS + 1), self.adapter_widths):
      stride = 2**level
      if stride < p:
        ratio = p // stride
        y = nn.ConvTranspose(self.width, (ratio, ratio), strides=(ratio, ratio), padding="VALID",
                             kernel_init=KERNEL_INIT, dtype=self.dtype, name=f"adapter{level}_up")(grid)
      elif stride > p:
        ratio = stride // p
        y = nn.max_pool(grid, (ratio, ratio), strides=(ratio, ratio), padding="VALID")
      else:
        y = grid
      y = nn.Dense(width, kernel_init=KERNEL_INIT, dtype=self.dtype, name=f"adapter{level}_proj")(y)
      recorder.emit(nn.LayerNorm(epsilon=self.norm_eps, dtype=self.dtype, name=f"adapter{level}_norm")(y))
    return tuple(recorder.levels), jnp.mean(x, axis=1)
