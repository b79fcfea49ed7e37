"""VICReg expander (projector), DESIGN.md section 4: Linear-BN-ReLU x2, Linear."""

from typing import Sequence

import flax.linen as nn


class Expander(nn.Module):
  """[B, D_in] -> [B, widths[-1]], as in the official VICReg projector.

  BatchNorm statistics are taken over the whole (global) batch that jit sees.
  The last Linear has no bias, like the official code.
  """
  widths: Sequence[int]
  bn_momentum: float
  bn_eps: float

  @nn.compact
  def __call__(self, x, train=False):
    for i, width in enumerate(self.widths[:-1]):
      x = nn.Dense(width, name=f"linear{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=self.bn_eps, name=f"bn{i}")(x)
      x = nn.relu(x)
    return nn.Dense(self.widths[-1], use_bias=False, name=f"linear{len(self.widths) - 1}")(x)
