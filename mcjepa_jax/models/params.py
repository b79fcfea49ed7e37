"""Creating variables and counting parameters.

`init_variables` compiles `model.init` with XLA's backend optimisation off:
init runs once, and on a 2-core CPU the optimised compile of ~100 threefry
random draws costs over a minute (measured 88 s -> 15 s for the tiny model).
"""

import jax
import jax.numpy as jnp
import numpy as np

_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def init_variables(model, rng, *inputs, out_shardings=None):
  """`model.init(rng, *inputs)`, jit-compiled for compile speed rather than run speed.

  Args:
    model: a flax.linen Module.
    rng: PRNG key.
    *inputs: arrays or ShapeDtypeStructs passed to `model.__call__`.
    out_shardings: optional shardings of the returned variables (created in place).

  Returns:
    The variables dict ("params", and "batch_stats" if the model has BatchNorm).
  """
  init = jax.jit(model.init, out_shardings=out_shardings)
  lowered = init.lower(rng, *inputs)
  try:
    compiled = lowered.compile(compiler_options=_FAST_COMPILE)
  except Exception:  # A backend that rejects the option compiles normally.  pylint: disable=broad-except
    compiled = lowered.compile()
  concrete = [x for x in inputs if not isinstance(x, jax.ShapeDtypeStruct)]
  if len(concrete) != len(inputs):
    concrete = [jnp.zeros(x.shape, x.dtype) for x in inputs]
  return compiled(rng, *concrete)


def abstract_variables(model, frame_shape, view_shape, seed=0):
  """ShapeDtypeStructs of `model.init` for frames [B,H,W,3] and views [N,h,w,3]; computes nothing."""
  frames = jax.ShapeDtypeStruct(frame_shape, jnp.float32)
  views = jax.ShapeDtypeStruct(view_shape, jnp.float32)
  return jax.eval_shape(lambda f, v: model.init(jax.random.key(seed), f, f, v, v), frames, views)


def count_params(tree):
  """Number of scalars in a (possibly abstract) pytree of arrays."""
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))
