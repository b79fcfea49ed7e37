"""What every encoder shares: the split stem, stochastic depth, the six-level pyramid and token grids.

Both encoders (ConvNeXt, ViT) return the same pyramid (levels 1-6 at H/2 ...
H/64, DESIGN.md 2) for the flow head, and the same token interface for an
I-JEPA content branch: a [B, N, D] sequence of the cells of one grid
(row-major), of which a subset can be kept.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PYRAMID_LEVELS = 6
# config.model.remat: what a rematerialised block keeps from its forward pass for the backward one.
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,  # everything recomputed: least memory
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # matmul outputs kept, the rest recomputed
}

# ConvNeXt's and ViT's weight init: truncated normal, std 0.02, zero bias.
KERNEL_INIT = nn.initializers.truncated_normal(stddev=0.02)


class DropPath(nn.Module):
  """Stochastic depth: drops a residual branch per sample during training."""
  rate: float

  @nn.compact
  def __call__(self, x, train):
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("drop_path"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, 0.0)


def gelu(x):
  """Exact (erf) GELU, x Phi(x), as ConvNeXt and ViT use it: [...] -> [...] in x's dtype.

  The same function as `nn.gelu(x, approximate=False)`, written with erf rather than erfc: XLA:CPU
  evaluates erfc at about a third of erf's speed (paper step at the issue-14 shapes: 2.03 -> 1.94-2.00
  s/step). The difference is float32 rounding: 1 + erf carries Phi(x) to an absolute ~6e-8, so in the
  far negative tail, where x Phi(x) is below 1e-4, the two are up to |x| 1e-7 apart (rounded to 0
  below x = -5.5). Computed in float32 whatever x's dtype: 1 + erf in bfloat16 would lose Phi's
  leading digits for negative x.
  """
  x32 = x.astype(jnp.float32)
  return (0.5 * x32 * (1.0 + jax.lax.erf(x32 * np.float32(np.sqrt(0.5))))).astype(x.dtype)


def scale_gradient(x, scale):
  """Identity forward; the gradient flowing back through it is multiplied by `scale`."""
  if scale == 1.0:
    return x
  if scale == 0.0:
    return jax.lax.stop_gradient(x)
  return scale * x + (1.0 - scale) * jax.lax.stop_gradient(x)


class LevelRecorder:
  """Collects the pyramid levels in order; `emit(x)` records x and returns it with the level's
  content-gradient scale applied (`config.model.content_grad_scales`, six factors or None)."""

  def __init__(self, grad_scales=None):
    self.scales = (1.0,) * PYRAMID_LEVELS if grad_scales is None else tuple(grad_scales)
    if len(self.scales) != PYRAMID_LEVELS:
      raise ValueError(f"config.model.content_grad_scales needs {PYRAMID_LEVELS} values (levels 1-6), "
                       f"got {len(self.scales)}")
    self.levels = []

  def emit(self, x):
    self.levels.append(x)
    return scale_gradient(x, self.scales[len(self.levels) - 1])


def rematerialised(module_class, remat, static_argnums=()):
  """`module_class`, or its `nn.remat` version under policy `remat` ("none", "full", "dots").

  static_argnums: positions of Python arguments of `__call__` (self is 0), e.g. `train`.
  Parameter names and values do not change, so checkpoints move between settings.
  """
  if remat == "none":
    return module_class
  if remat not in REMAT_POLICIES:
    raise ValueError(f"config.model.remat={remat!r}: known none, {', '.join(REMAT_POLICIES)}")
  return nn.remat(module_class, policy=REMAT_POLICIES[remat], static_argnums=static_argnums)


def split_stem(images, widths, kernels, norm_eps, emit, dtype=jnp.float32):
  """Levels 1 (H/2) and 2 (H/4): stride-2 convs, each followed by LayerNorm (DESIGN.md 2).

  Called from inside a compact module's `__call__` (ConvNeXt's and the ViT's), so the
  parameters are that module's "stem_conv{i}" / "stem_norm{i}". `emit(x)` records a
  level and returns what the next layer reads. `dtype`: the computation's (parameters stay float32).
  """
  x = images
  for i, (width, kernel) in enumerate(zip(widths, kernels)):
    # Padding 1 on each side: an even kernel centres output i at input 2i + 0.5.
    x = nn.Conv(width, (kernel, kernel), strides=(2, 2), padding=((1, 1), (1, 1)), kernel_init=KERNEL_INIT,
                dtype=dtype, name=f"stem_conv{i + 1}")(x)
    x = emit(nn.LayerNorm(epsilon=norm_eps, dtype=dtype, name=f"stem_norm{i + 1}")(x))
  return x


def gather_tokens(tokens, indices):
  """[B, N, D] tokens at [B, K] indices -> [B, K, D]."""
  return jnp.take_along_axis(tokens, indices[..., None], axis=1)


def keep_mask(indices, valid, count):
  """[B, count] float mask, 1 at the `valid` entries of `indices` ([B, K] int, [B, K] bool)."""
  rows = jnp.arange(indices.shape[0])[:, None]
  return jnp.zeros((indices.shape[0], count), jnp.float32).at[rows, indices].max(valid.astype(jnp.float32))
