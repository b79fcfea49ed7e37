"""VICReg expander (projector), DESIGN.md section 4: Linear-BN-ReLU x2, Linear."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class Expander(nn.Module):
  """[B, D_in] -> [B, widths[-1]], as in the official VICReg projector.

  BatchNorm statistics are taken over the whole (global) batch that jit sees.
  The last Linear has no bias, like the official code.
  """
  widths: Sequence[int]
  bn_momentum: float
  bn_eps: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    for i, width in enumerate(self.widths[:-1]):
      x = nn.Dense(width, dtype=self.dtype, name=f"linear{i}")(x)
      # Batch statistics are computed in float32 whatever the compute dtype (flax promotes them).
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=self.bn_eps, dtype=self.dtype, name=f"bn{i}")(x)
      x = nn.relu(x)
    return nn.Dense(self.widths[-1], use_bias=False, dtype=self.dtype, name=f"linear{len(self.widths) - 1}")(x)
