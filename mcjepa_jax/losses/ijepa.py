"""The I-JEPA content objective and its EMA target encoder (issue 16; `loss.content.name = "ijepa"`).

L_content = mean over blocks, tokens and channels of (prediction - target)^2,
where the targets are the target encoder's tokens at the target positions,
layer-normalised without parameters (I-JEPA), and the target encoder is an
exponential moving average of the online encoder: after every update
ema <- m * ema + (1 - m) * online, with m ramped linearly from
`momentum[0]` to `momentum[1]` over training. No gradient reaches it.
"""

import jax
import jax.numpy as jnp

from mcjepa_jax.models.pyramid import gather_tokens


def normalize_tokens(tokens, eps=1e-6):
  """LayerNorm over the channels without scale or offset: [..., D] -> [..., D]."""
  mean = jnp.mean(tokens, axis=-1, keepdims=True)
  var = jnp.var(tokens, axis=-1, keepdims=True)
  return (tokens - mean) * jax.lax.rsqrt(var + eps)


def block_targets(tokens, target_indices):
  """[B, N, D] target-encoder tokens -> [B, T, K, D] normalised targets at [B, T, K] positions, no gradient."""
  batch, blocks, size = target_indices.shape
  picked = gather_tokens(normalize_tokens(tokens), target_indices.reshape(batch, blocks * size))
  return jax.lax.stop_gradient(picked.reshape(batch, blocks, size, tokens.shape[-1]))


def ijepa_loss(predictions, targets):
  """Mean squared error between [B, T, K, D] predictions and targets; returns (loss, terms)."""
  loss = jnp.mean(jnp.square(predictions.astype(jnp.float32) - targets.astype(jnp.float32)))
  return loss, {"prediction": loss}


def ema_momentum(step, total_steps, momentum):
  """m at `step` (traced): linear from momentum[0] at step 0 to momentum[1] at `total_steps`."""
  progress = jnp.clip(step.astype(jnp.float32) / max(total_steps, 1), 0.0, 1.0)
  return momentum[0] + (momentum[1] - momentum[0]) * progress


def ema_update(ema, online, momentum):
  """ema <- m * ema + (1 - m) * online, leaf by leaf (pytrees of equal structure)."""
  return jax.tree_util.tree_map(lambda e, o: momentum * e + (1.0 - momentum) * o, ema, online)


def target_std(tokens):
  """Collapse check: the per-channel std over the batch of the mean target token, averaged. [B, N, D] -> scalar."""
  return jnp.mean(jnp.std(jnp.mean(tokens.astype(jnp.float32), axis=1), axis=0))
