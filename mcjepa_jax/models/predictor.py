"""The I-JEPA predictor: from the context tokens, the representations of the target blocks.

A narrow ViT (I-JEPA, Assran et al. 2023): the encoder's context tokens are
projected to the predictor width and given their positions; each target block
adds one learned mask token per target position (plus that position). The
predictor runs once per target block (the context repeated), and the outputs
at the mask tokens are projected back to the encoder width.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mcjepa_jax.models.pyramid import KERNEL_INIT
from mcjepa_jax.models.vit import Transformer, sincos_2d


class IJEPAPredictor(nn.Module):
  """Attributes: width, depth, num_heads, mlp_ratio, norm_eps of the predictor transformer."""
  width: int
  depth: int
  num_heads: int
  mlp_ratio: float
  norm_eps: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, context, masks, grid, train=False):
    """Predicts the target tokens.

    Args:
      context: [B, C, D] encoder tokens of the context.
      masks: dict with "context_indices" [B, C], "context_valid" [B, C] (bool)
        and "target_indices" [B, T, K] (row-major positions on `grid`).
      grid: (rows, cols) of the token grid.
      train: stochastic depth (none by default) and so on.

    Returns:
      [B, T, K, D] predicted target representations.
    """
    batch, count, dim = context.shape
    _, blocks, size = masks["target_indices"].shape
    positions = sincos_2d(grid[0], grid[1], self.width)
    x = nn.Dense(self.width, kernel_init=KERNEL_INIT, dtype=self.dtype, name="embed")(context)
    x = x + positions[masks["context_indices"]].astype(self.dtype)
    mask_token = self.param("mask_token", nn.initializers.normal(stddev=0.02), (self.width,))
    queries = (mask_token + positions[masks["target_indices"]]).astype(self.dtype)  # [B, T, K, w]
    x = jnp.repeat(x[:, None], blocks, axis=1)                                      # [B, T, C, w]
    sequence = jnp.concatenate([x, queries], axis=2).reshape(batch * blocks, count + size, self.width)
    valid = jnp.concatenate([masks["context_valid"], jnp.ones((batch, size), bool)], axis=1)
    valid = jnp.repeat(valid[:, None], blocks, axis=1).reshape(batch * blocks, count + size)
    y = Transformer(self.num_heads, self.mlp_ratio, 0.0, 0.0, self.norm_eps, self.dtype, depth=self.depth,
                    name="transformer")(sequence, valid, train)
    y = nn.Dense(dim, kernel_init=KERNEL_INIT, dtype=self.dtype, name="project")(y[:, count:])
    return y.reshape(batch, blocks, size, dim)
