"""Run in a subprocess with 8 fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8).

Computes the loss terms and gradients of one global batch on 1 device, on an
8-device `data` mesh, and on a (data=4, fsdp=2) mesh with fsdp-sharded
parameters, and VICReg of embeddings whose per-device shards have different
means, and one train step of the ViT + I-JEPA variant (masks, predictor, EMA target)
on 1 device and on the (data=4, fsdp=2) mesh. Prints the largest differences as
one JSON line (used by test_sharding.py and test_vit_ijepa.py).
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from mcjepa_jax.config_utils import load_config
from mcjepa_jax.losses.objective import mcjepa_loss
from mcjepa_jax.losses.vicreg import vicreg_loss
from mcjepa_jax.models import build_model
from mcjepa_jax.models.params import init_variables
from mcjepa_jax.train.optimizer import make_optimizer
from mcjepa_jax.train.sharding import FSDP, batch_sharding, make_mesh, replicated, state_shardings
from mcjepa_jax.train.step import create_train_state, make_train_step


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))


def model_parity(config):
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
  # Relative to the largest gradient anywhere: some leaves (biases right before a
  # normalisation) are zero in exact arithmetic and only hold float32 noise of ~1e-8.
  scale = max(float(np.abs(np.asarray(b)).max()) for b in jax.tree_util.tree_leaves(single[1]))

  results = {"total": float(single[0]["total"])}
  for name, fsdp in (("data", 1), ("data+fsdp", 2)):
    mesh = make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": fsdp}))
    # min_size 0: shard every leaf with a divisible dimension, to exercise the gathers.
    param_shardings = state_shardings(variables["params"], mesh, min_size=0)
    stats_shardings = state_shardings(variables["batch_stats"], mesh, min_size=0)
    params = jax.device_put(variables["params"], param_shardings)
    stats = jax.device_put(variables["batch_stats"], stats_shardings)
    placed = jax.device_put(batch, batch_sharding(mesh))
    split = sum(FSDP in s.spec for s in jax.tree_util.tree_leaves(param_shardings))
    step = jax.jit(loss_and_grads, in_shardings=(param_shardings, stats_shardings, batch_sharding(mesh)),
                   out_shardings=(replicated(mesh), param_shardings))
    terms, grads = step(params, stats, placed)
    assert all(len(x.sharding.device_set) == 8 for x in placed.values())
    grad_diff = max(float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()) / scale
                    for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(single[1])))
    results[name] = {"terms": {k: _rel(terms[k], single[0][k]) for k in single[0]}, "grads": grad_diff,
                     "fsdp_sharded_leaves": split}
  return results


def vicreg_parity(config):
  """Each device's shard of z1/z2 gets its own mean: local statistics would differ from global ones."""
  rng = np.random.default_rng(1)
  offsets = np.repeat(np.arange(8, dtype=np.float32), 4)[:, None] * 0.5
  z1 = rng.normal(size=(32, 16)).astype(np.float32) + offsets
  z2 = z1 + 0.1 * rng.normal(size=(32, 16)).astype(np.float32)
  v = config.loss.vicreg

  def loss(a, b):
    return vicreg_loss(a, b, v.sim_weight, v.std_weight, v.cov_weight, v.eps)[0]

  mesh = make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1}))
  sharding = NamedSharding(mesh, P("data"))
  sharded = float(jax.jit(loss, in_shardings=(sharding, sharding))(z1, z2))
  single = float(jax.jit(loss)(jax.device_put(z1, jax.devices()[0]), jax.device_put(z2, jax.devices()[0])))
  local_average = float(np.mean([loss(z1[i * 4:(i + 1) * 4], z2[i * 4:(i + 1) * 4]) for i in range(8)]))
  return {"sharded": sharded, "single": single, "local_average": local_average}


def ijepa_step_parity(config):
  """The whole train step of the I-JEPA variant: metrics and the EMA target after it, 1 vs 8 devices."""
  model = build_model(config.model)
  optimizer, _ = make_optimizer(config.train)
  rng = np.random.default_rng(2)
  batch = {k: jnp.asarray(rng.uniform(size=(8, 64, 64, 3)).astype(np.float32))
           for k in ("frames1", "frames2", "views1", "views2")}
  variables = init_variables(model, jax.random.PRNGKey(0), *batch.values())
  state = create_train_state(variables, optimizer, jax.random.PRNGKey(1), ema=True)
  step = make_train_step(model, optimizer, config)
  one = jax.devices()[0]
  single_state, single = jax.jit(step)(jax.device_put(state, one), jax.device_put(batch, one))
  mesh = make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 2}))
  shardings = state_shardings(state, mesh, min_size=0)
  sharded_state, sharded = jax.jit(step, in_shardings=(shardings, batch_sharding(mesh)),
                                   out_shardings=(shardings, replicated(mesh)))(
                                       jax.device_put(state, shardings), jax.device_put(batch, batch_sharding(mesh)))
  ema = max(_rel(a, b) for a, b in zip(jax.tree_util.tree_leaves(sharded_state.ema),
                                       jax.tree_util.tree_leaves(single_state.ema)))
  return {"terms": {k: _rel(sharded[k], single[k]) for k in single}, "ema": ema,
          "content": float(single["content"]), "fsdp_sharded_ema_leaves":
              sum(FSDP in s.spec for s in jax.tree_util.tree_leaves(shardings.ema))}


def main():
  assert jax.device_count() == 8, jax.devices()
  configs = os.path.join(os.path.dirname(__file__), "..", "configs")
  config = load_config(os.path.join(configs, "tiny.py"))
  results = model_parity(config)
  results["vicreg"] = vicreg_parity(config)
  vit = load_config(os.path.join(configs, "vit_ijepa_demo.py"))
  vit.train.video_batch_size = vit.train.image_batch_size = 8
  vit.model.encoder.depth, vit.model.predictor.depth = 2, 1  # the same code paths, less to compile
  results["ijepa"] = ijepa_step_parity(vit)
  json.dump(results, sys.stdout)


if __name__ == "__main__":
  main()
