"""Orbax checkpoints of the train state together with the data-iterator position.

A checkpoint that cannot be restored (a half-written or damaged step) is
reported by name and the next older one is tried: nothing is deleted.
"""

import logging
import os

import orbax.checkpoint as ocp
from etils import epath


def make_manager(workdir, train_cfg):
  """CheckpointManager under `workdir/checkpoints`: async saves every `checkpoint_every` steps, keeps the last N."""
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=train_cfg.checkpoint_every, max_to_keep=train_cfg.keep_checkpoints,
      enable_async_checkpointing=True, create=True)
  # Local paths are made absolute (orbax requires it); bucket paths (gs://...) pass through.
  root = epath.Path(workdir if "://" in str(workdir) else os.path.abspath(workdir))
  return ocp.CheckpointManager(root / "checkpoints", options=options)


def save(manager, step, state, data_state, force=False):
  """Starts an (asynchronous) save of state and data position at `step`; returns whether it saves."""
  args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state))
  return manager.save(step, args=args, force=force)


def restore_latest(manager, abstract_state):
  """(state, data_state, step) of the newest restorable checkpoint, or None if there is none.

  `abstract_state` gives the structure, dtypes and shardings to restore into
  (so a checkpoint restores onto any mesh).

  Raises:
    RuntimeError: checkpoints exist but none restores (typically a config whose
      model differs from the one that wrote them). Starting over instead would
      let the manager delete them as new steps are saved.
  """
  failures = []
  for step in sorted(manager.all_steps(), reverse=True):
    path = os.path.join(str(manager.directory), str(step))
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("checkpoint %s is unreadable (%s: %s); trying an older one", path, type(e).__name__, e)
      failures.append(f"{path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
      continue
    return restored["state"], restored["data"], step
  if failures:
    raise RuntimeError(
        f"none of the {len(failures)} checkpoints in {manager.directory} can be restored into this config's "
        "train state (was it written with another model config?); nothing was deleted. Use the config that "
        "wrote them, or another workdir.\n" + "\n".join(failures))
  return None
