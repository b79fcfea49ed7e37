"""Run in a subprocess with 8 fake CPU devices: loss terms and gradients of one global batch
computed on 1 device and sharded over an 8-device `data` mesh. Prints the largest relative
differences as JSON (used by test_sharding.py)."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from mcjepa_jax.config_utils import load_config
from mcjepa_jax.losses.objective import mcjepa_loss
from mcjepa_jax.models import build_model
from mcjepa_jax.models.params import init_variables


def main():
  assert jax.device_count() == 8, jax.devices()
  config = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "tiny.py"))
  model = build_model(config.model)
  rng = np.random.default_rng(0)
  batch = {k: jnp.asarray(rng.uniform(size=(8, 64, 64, 3)).astype(np.float32))
           for k in ("frames1", "frames2", "views1", "views2")}
  variables = init_variables(model, jax.random.PRNGKey(0), *batch.values())

  def loss_and_grads(params, batch_stats, batch):
    def loss_fn(p):
      outputs, _ = model.apply({"params": p, "batch_stats": batch_stats}, batch["frames1"], batch["frames2"],
                               batch["views1"], batch["views2"], train=True, mutable=["batch_stats"])
      return mcjepa_loss(outputs, batch, config.loss)
    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return terms, grads

  one = jax.devices()[0]
  single = jax.jit(loss_and_grads)(jax.device_put(variables["params"], one),
                                   jax.device_put(variables["batch_stats"], one), jax.device_put(batch, one))
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  step = jax.jit(loss_and_grads, in_shardings=(replicated, replicated, sharded), out_shardings=replicated)
  multi = step(variables["params"], variables["batch_stats"], batch)
  assert all(x.sharding.spec == P("data") for x in jax.device_put(batch, sharded).values())

  def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))

  terms = {k: rel(multi[0][k], single[0][k]) for k in single[0]}
  # Relative to the largest gradient anywhere: some leaves (biases right before a
  # normalisation) are zero in exact arithmetic and only hold float32 noise of ~1e-8.
  scale = max(float(np.abs(np.asarray(b)).max()) for b in jax.tree_util.tree_leaves(single[1]))
  grads = max(float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()) / scale
              for a, b in zip(jax.tree_util.tree_leaves(multi[1]), jax.tree_util.tree_leaves(single[1])))
  json.dump({"terms": terms, "grads": grads, "total": float(single[0]["total"])}, sys.stdout)


if __name__ == "__main__":
  main()
