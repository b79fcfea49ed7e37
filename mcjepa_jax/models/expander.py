"""VICReg expander (projector), DESIGN.md section 4: Linear-BN-ReLU x2, Linear."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class Expander(nn.Module):
  """[V * N, D_in] -> [V * N, widths[-1]] for V views of N images, as in the official VICReg projector.

  BatchNorm statistics are taken over each view's N rows of the whole (global)
  batch that jit sees, as when the projector runs on each view separately (the
  running statistics are updated view after view, as two calls would). The
  Linear layers run on all views at once: one pass over each weight matrix and
  one weight gradient instead of one per view (the 8192 x 8192 matrices of the
  paper's expander are most of the model's bytes). The last Linear has no bias,
  like the official code.
  """
  widths: Sequence[int]
  bn_momentum: float
  bn_eps: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False, views=1):
    if x.shape[0] % views:
      raise ValueError(f"expander input of {x.shape[0]} rows does not split into {views} views")
    for i, width in enumerate(self.widths[:-1]):
      x = nn.Dense(width, dtype=self.dtype, name=f"linear{i}")(x)
      # Batch statistics are computed in float32 whatever the compute dtype (flax promotes them).
      norm = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                          epsilon=self.bn_eps, dtype=self.dtype, name=f"bn{i}")
      x = jnp.concatenate([norm(view) for view in jnp.split(x, views)], axis=0)
      x = nn.relu(x)
    return nn.Dense(self.widths[-1], use_bias=False, dtype=self.dtype, name=f"linear{len(self.widths) - 1}")(x)
