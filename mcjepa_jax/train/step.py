"""Train state and the MC-JEPA update step (DESIGN.md 1, 5).

`train_step` is a pure function of (state, batch); `make_train_step` closes
it over the model, optimizer and config so it can be wrapped in `jax.jit`
with shardings and donation by the caller.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp

from mcjepa_jax.losses.ijepa import block_targets, ema_momentum, ema_update, target_std
from mcjepa_jax.losses.objective import mcjepa_loss
from mcjepa_jax.models.mcjepa import content_objective
from mcjepa_jax.losses.selfsup import (augmentation_loss, occluded_targets, paste_occluders, sample_zoom, zoomed_pair,
                                      zoomed_targets)
from mcjepa_jax.ops.masks import sample_masks
from mcjepa_jax.train.optimizer import skipped_update_metrics


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the data iterator.

  step: int32 scalar; params, batch_stats: model variables; opt_state: optax
  state; rng: PRNG key from which each step's randomness is folded; ema: the
  I-JEPA target encoder (an EMA of params["encoder"]; {} without I-JEPA).
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  ema: Any


def step_compiler_options():
  """XLA options for compiling the train step on JAX's default backend.

  On the CPU, copy insertion with region analysis: without it XLA:CPU copied every donated
  parameter before the step (the paper config: 207 copies, 666 MiB a step) although the
  update reads each one where it writes it; with it, none (paper step at the issue-14 shapes
  1.98-2.00 -> 1.91-1.93 s/step). The values are unchanged: it only removes copies.
  """
  if jax.default_backend() == "cpu":
    return {"xla_cpu_copy_insertion_use_region_analysis": True}
  return {}


def create_train_state(variables, optimizer, rng, ema=False):
  """TrainState at step 0 from model variables; `rng` is a raw uint32 key (checkpointable as an array).

  ema: start a target encoder as a copy of the encoder (I-JEPA).
  """
  params = variables["params"]
  # A copy, not the same buffers: the step donates the state, and each leaf may be donated once.
  target = jax.tree_util.tree_map(jnp.copy, params["encoder"]) if ema else {}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}),
                    opt_state=optimizer.init(params), rng=rng, ema=target)


def batch_shapes(config):
  """Global shapes of the batch the train step reads, by key (every array float32).

  "frames1", "frames2": [B_pairs, H, W, 3] (config.data.pairs.crop); "views1", "views2":
  [B_images, h, h, 3] (config.data.views.size); with `data.pairs.full_image_margin` m > 0 also
  "wide1", "wide2": [B_pairs, H + 2m, W + 2m, 3] and "wide_valid" [B_pairs, H + 2m, W + 2m, 1],
  the frames around each crop. The same keys and shapes as the global batch of `TrainInput`.
  """
  train = config.train
  crop_h, crop_w = config.data.pairs.crop
  size = config.data.views.size
  frames = (train.video_batch_size, crop_h, crop_w)
  views = (train.image_batch_size, size, size, 3)
  shapes = {"frames1": frames + (3,), "frames2": frames + (3,), "views1": views, "views2": views}
  margin = config.data.pairs.get("full_image_margin", 0)
  if margin:
    wide = (train.video_batch_size, crop_h + 2 * margin, crop_w + 2 * margin)
    shapes.update(wide1=wide + (3,), wide2=wide + (3,), wide_valid=wide + (1,))
  return shapes


def init_inputs(config):
  """ShapeDtypeStructs of `model.init`'s inputs (frames1, frames2, views1, views2) for `config`'s batch."""
  shapes = batch_shapes(config)
  return tuple(jax.ShapeDtypeStruct(shapes[k], jnp.float32) for k in ("frames1", "frames2", "views1", "views2"))


def abstract_train_state(model, optimizer, config, rng):
  """(abstract TrainState, abstract variables): shapes and dtypes of the state `create_train_state`
  makes from `model.init(rng, *init_inputs(config))`, without creating an array."""
  variables = jax.eval_shape(model.init, rng, *init_inputs(config))
  return jax.eval_shape(lambda v: initial_train_state(v, optimizer, config, rng), variables), variables


def initial_train_state(variables, optimizer, config, rng):
  """The run's TrainState at step 0 from `model.init(rng, ...)`'s variables (its own key folded from `rng`)."""
  return create_train_state(variables, optimizer, jax.random.fold_in(rng, 1), ema=uses_ema(config))


def uses_ema(config):
  """Whether the run keeps an EMA target encoder (the I-JEPA content objective)."""
  return content_objective(config.model) == "ijepa"


def ijepa_batch_targets(model, ema, views, masks):
  """The I-JEPA targets of `views` [N, h, w, 3] for `masks`: the EMA encoder's normalised tokens at the
  target positions [N, T, K, D], without gradient; and the raw tokens [N, rows * cols, D]."""
  tokens = model.apply({"params": {"encoder": ema}}, views, method=model.target_tokens)
  return block_targets(tokens, masks["target_indices"]), jax.lax.stop_gradient(tokens)


def loss_schedules(step, train_cfg):
  """Loss switches at `step` (traced: changing them never recompiles).

  Returns (flow_on, vc_scale, occlusion_strength): the flow loss is off
  before `flow_start_steps`; the VC weight then ramps up linearly over
  `vc_warmup_steps`; occlusion masks switch on at `occlusion_start_steps`
  and ramp linearly to full strength over `occlusion_ramp_steps` (masks
  estimated from an early, poor flow would otherwise hide most of the loss).
  """
  step = step.astype(jnp.float32)
  flow_on = (step >= train_cfg.flow_start_steps).astype(jnp.float32)
  ramp = (step - train_cfg.flow_start_steps + 1) / max(train_cfg.vc_warmup_steps, 1)
  vc_scale = jnp.clip(ramp, 0.0, 1.0)
  occlusion_ramp = (step - train_cfg.occlusion_start_steps + 1) / max(train_cfg.occlusion_ramp_steps, 1)
  occlusion_strength = jnp.clip(occlusion_ramp, 0.0, 1.0)
  return flow_on, vc_scale, occlusion_strength


def make_train_step(model, optimizer, config):
  """Returns train_step(state, batch) -> (state, metrics).

  batch: dict with "frames1", "frames2" [B, H, W, 3] and "views1", "views2"
  [N, h, w, 3], all in [0, 1].
  """

  ijepa = uses_ema(config)

  def loss_fn(params, batch_stats, batch, rng, schedules, masks, targets):
    outputs, updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, batch["frames1"], batch["frames2"],
        batch["views1"], batch["views2"], train=True, masks=masks, rngs={"drop_path": rng},
        mutable=["batch_stats"])
    if ijepa:
      outputs["content"]["targets"] = targets
    total, terms = mcjepa_loss(outputs, batch, config.loss, *schedules)
    if config.loss.selfsup.weight:
      flow_on, _, occlusion_strength = schedules
      # It uses the teacher's occlusion masks, so it starts and ramps with them.
      weight = config.loss.flow_weight * flow_on * occlusion_strength * config.loss.selfsup.weight
      term = _selfsup_term(params, batch_stats, batch, outputs["video"]["flow"], jax.random.fold_in(rng, 1))
      total = total + weight * term
      terms["flow/selfsup"] = term
      terms["total"] = total
    return total, (terms, updates["batch_stats"], None if ijepa else outputs["content"]["embeddings"][0])

  def _selfsup_term(params, batch_stats, batch, teacher_flow, rng):
    cfg = config.loss.selfsup
    frames1 = batch["frames1"]
    zoom_key, drop_key, occluder_key = jax.random.split(rng, 3)
    offset, scale = sample_zoom(zoom_key, frames1.shape[0], frames1.shape[1:3], cfg.min_scale)
    zoomed1, zoomed2 = zoomed_pair(frames1, batch["frames2"], offset, scale)
    target, mask = zoomed_targets(teacher_flow, offset, scale, config.loss.occlusion.alpha1,
                                  config.loss.occlusion.alpha2)
    if cfg.occluders:
      zoomed2, occluders = paste_occluders(occluder_key, zoomed2, cfg.occluders, tuple(cfg.occluder_radius))
      mask = occluded_targets(mask, occluders)
    student = model.apply({"params": params, "batch_stats": batch_stats}, zoomed1, zoomed2, train=True,
                          method=model.video, rngs={"drop_path": drop_key})
    return augmentation_loss(student["flow"], target, mask, cfg.eps, cfg.exponent)

  def train_step(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    schedules = loss_schedules(state.step, config.train)
    masks = targets = None
    if ijepa:
      views = batch["views1"]
      masks = sample_masks(jax.random.fold_in(rng, 2), views.shape[0], model.token_grid(views), config.loss.ijepa)
      targets, target_tokens = ijepa_batch_targets(model, state.ema, views, masks)
    grads, (terms, batch_stats, z1) = jax.grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, batch, rng, schedules, masks, targets)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = jax.tree_util.tree_map(lambda p, u: p + u, state.params, updates)
    metrics = dict(terms)
    # Behind a barrier XLA cannot share the squares with Adam's second moment: shared, the squares
    # of every gradient were written out as arrays (on the CPU the paper step's 175 M; docs/benchmarks.md).
    metrics["grad_norm"] = _global_norm(jax.lax.optimization_barrier(grads))
    metrics["flow_on"], metrics["vc_scale"], metrics["occlusion_strength"] = schedules
    metrics.update(skipped_update_metrics(opt_state, config.train))
    ema = state.ema
    if ijepa:
      # Collapse check of a JEPA: the spread of the target representations over the batch.
      metrics["embedding_std"] = target_std(target_tokens)
      metrics["ema_momentum"] = ema_momentum(state.step, config.train.total_steps, config.loss.ijepa.momentum)
      ema = ema_update(state.ema, params["encoder"], metrics["ema_momentum"])
    else:
      metrics["embedding_std"] = jnp.mean(jnp.std(z1, axis=0))
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
                              ema=ema)
    return new_state, metrics

  return train_step


def _global_norm(tree):
  return jnp.sqrt(sum(jnp.sum(x.astype(jnp.float32)**2) for x in jax.tree_util.tree_leaves(tree)))
