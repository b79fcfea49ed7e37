"""Both flow directions in one batch.

The model stacks [frame t; frame t+1] as sources and [frame t+1; frame t] as
targets, so rows :B hold the forward direction and rows B: the backward one.
"""

import jax.numpy as jnp


def swap_halves(x):
  """[2B, ...] -> [2B, ...] with the two halves exchanged (frame t <-> t+1, forward <-> backward flow)."""
  half = x.shape[0] // 2
  return jnp.concatenate([x[half:], x[:half]], axis=0)
