"""AdamW with warm-up + cosine schedules and per-group learning rates (DESIGN.md 5).

Parameter groups are the model's top-level modules: the encoder and the
content head (VICReg expander or I-JEPA predictor) train at `encoder_lr`, the flow head at `flow_head_lr`
(optax.multi_transform). Biases, norm scales and layer scales (every
parameter with fewer than two dimensions) get no weight decay; the encoder
group decays by `weight_decay`, the flow head by `flow_head_weight_decay`.
"""

import jax
import optax

# Top-level parameter collections -> optimizer group.
PARAM_GROUPS = {"encoder": "encoder", "expander": "encoder", "predictor": "encoder", "flow_head": "flow_head"}


def learning_rate_schedule(peak_lr, train_cfg):
  """Linear warm-up to `peak_lr`, then cosine decay to `end_lr_fraction * peak_lr`."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_lr, warmup_steps=train_cfg.warmup_steps,
      decay_steps=max(train_cfg.total_steps, train_cfg.warmup_steps + 1),
      end_value=peak_lr * train_cfg.end_lr_fraction)


def param_labels(params):
  """Pytree of group names matching `params` (keyed by top-level module)."""
  unknown = set(params) - set(PARAM_GROUPS)
  if unknown:
    raise ValueError(f"parameters {sorted(unknown)} belong to no optimizer group {sorted(PARAM_GROUPS)}")
  return {name: jax.tree_util.tree_map(lambda _, g=PARAM_GROUPS[name]: g, sub) for name, sub in params.items()}


def _decay_mask(params):
  return jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)


def make_optimizer(train_cfg):
  """optax transformation for the whole parameter tree; returns (optimizer, schedules by group)."""
  schedules = {"encoder": learning_rate_schedule(train_cfg.encoder_lr, train_cfg),
               "flow_head": learning_rate_schedule(train_cfg.flow_head_lr, train_cfg)}
  decays = {"encoder": train_cfg.weight_decay, "flow_head": train_cfg.flow_head_weight_decay}
  groups = {name: optax.adamw(schedule, weight_decay=decays[name], mask=_decay_mask)
            for name, schedule in schedules.items()}
  optimizer = optax.multi_transform(groups, param_labels)
  if train_cfg.grad_clip_norm:
    optimizer = optax.chain(optax.clip_by_global_norm(train_cfg.grad_clip_norm), optimizer)
  if train_cfg.get("skip_nonfinite_updates", 0):
    # A NaN/Inf gradient leaves parameters and moments as they were, up to N times in a row.
    optimizer = optax.apply_if_finite(optimizer, max_consecutive_errors=train_cfg.skip_nonfinite_updates)
  return optimizer, schedules


def skipped_update_metrics(opt_state, train_cfg):
  """{"update_skipped": 1.0 if this step's update was dropped, "skipped_updates": total so far} ({} when off)."""
  if not isinstance(opt_state, optax.ApplyIfFiniteState):
    return {}
  consecutive = opt_state.notfinite_count
  # Past the limit apply_if_finite applies the update anyway: that step counts as not skipped,
  # so the loop's non-finite guard stops the run.
  skipped = (consecutive > 0) & (consecutive <= train_cfg.skip_nonfinite_updates)
  return {"update_skipped": skipped.astype(jax.numpy.float32),
          "skipped_updates": opt_state.total_notfinite.astype(jax.numpy.float32)}
