"""`train_and_evaluate(config, workdir)`: the whole MC-JEPA training story, top to bottom.

Sections: config check, mesh, input, model, the step compiled from shapes, state
(restored from a checkpoint or initialised), loop with metrics / pictures /
checkpoints, evaluation.
Importable from a notebook; `mcjepa_jax.main` is the command-line entry.
"""

import dataclasses
import json
import logging
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from mcjepa_jax.data.pipeline import TrainInput, heldout_source
from mcjepa_jax.config_checks import validate_config
from mcjepa_jax.console import format_duration
from mcjepa_jax.evaluate.defaults import flow_margin
from mcjepa_jax.evaluate.demo import evaluate_run, write_sample_frames
from mcjepa_jax.evaluate.flow_eval import make_flow_predictor, predict_flow
from mcjepa_jax.evaluate.visualize import enlarge_for_display, flow_panel, save_png
from mcjepa_jax.models import build_model
from mcjepa_jax.models.params import init_variables
from mcjepa_jax.train import checkpoint
from mcjepa_jax.train.host_memory import release_freed_host_memory
from mcjepa_jax.train.optimizer import make_optimizer
from mcjepa_jax.train.sharding import (batch_sharding, check_batch_sizes, make_mesh, replicated,
                                      state_shardings)
from mcjepa_jax.train.step import (TrainState, abstract_train_state, batch_shapes, init_inputs,
                                   initial_train_state, make_train_step, step_compiler_options)


def _global_batch(local_batch, sharding):
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


@dataclasses.dataclass
class Training:
  """Everything a run needs, placed on the mesh and restored from `workdir` if it holds a checkpoint.

  `step_fn(state, global_batch) -> (state, metrics)` is the compiled step;
  `next_batch()` reads this process's part of the next batch and assembles
  the global array.
  """
  config: Any
  workdir: str
  mesh: jax.sharding.Mesh
  model: Any
  schedules: dict
  data: TrainInput
  state: TrainState
  step_fn: Callable
  manager: Any
  restored_step: Optional[int]

  def next_batch(self):
    return _global_batch(next(self.data), batch_sharding(self.mesh))

  def save(self, force=False):
    return checkpoint.save(self.manager, int(self.state.step), self.state, self.data.get_state(), force=force)


def prepare(config, workdir, devices=None, compile_step=True):
  """Builds mesh, input and model, compiles the step, then restores the newest checkpoint or initialises.

  The step is compiled from shapes before any state exists, so the compiler's working memory
  (about 2.7 GiB of host memory for the paper step on the CPU) is returned to the OS before the
  state (2.0 GiB there) is allocated instead of adding to it (docs/benchmarks.md, "The loop's own peak").

  Args:
    config: ConfigDict from `configs/*.py`.
    workdir: checkpoint directory root (created).
    devices: optional device list for the mesh (default: all devices of all processes).
    compile_step: False leaves `step_fn` a `jax.jit` function that compiles on its first call
      (for callers that only read or write state).
  """
  validate_config(config)  # before anything is built or compiled
  _check_workdir(workdir)
  train_cfg = config.train
  mesh = make_mesh(config.mesh, devices)
  check_batch_sizes(train_cfg, mesh)
  data = TrainInput(config, config.seed, jax.process_index(), jax.process_count())

  model = build_model(config.model)
  optimizer, schedules = make_optimizer(train_cfg)
  rng = jax.random.PRNGKey(config.seed)
  # Shardings from shapes alone; variables are then created already in place,
  # so no device ever holds the whole of an fsdp-sharded state.
  min_size = config.mesh.fsdp_min_size
  abstract_state, abstract_variables = abstract_train_state(model, optimizer, config, rng)
  shardings = state_shardings(abstract_state, mesh, min_size)
  abstract = jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                    abstract_state, shardings)
  step_fn = jax.jit(make_train_step(model, optimizer, config), in_shardings=(shardings, batch_sharding(mesh)),
                    out_shardings=(shardings, replicated(mesh)), donate_argnums=0,
                    compiler_options=step_compiler_options())
  if compile_step:
    abstract_batch = {k: jax.ShapeDtypeStruct(s, jnp.float32, sharding=batch_sharding(mesh))
                      for k, s in batch_shapes(config).items()}
    step_fn = step_fn.lower(abstract, abstract_batch).compile()
    release_freed_host_memory()  # XLA frees its working memory, glibc keeps the pages

  manager = checkpoint.make_manager(workdir, train_cfg)
  restored = checkpoint.restore_latest(manager, abstract)
  restored_step = None
  if restored is not None:
    state, data_state, restored_step = restored
    data.set_state(data_state)
    logging.info("resumed from step %d in %s", restored_step, workdir)
  else:  # initialised only when nothing restores, so a resumed run never holds two states
    variables = init_variables(model, rng, *init_inputs(config),
                               out_shardings=state_shardings(abstract_variables, mesh, min_size))
    state = jax.device_put(initial_train_state(variables, optimizer, config, rng), shardings)
    del variables
    release_freed_host_memory()  # the initialiser's compile
  return Training(config=config, workdir=workdir, mesh=mesh, model=model, schedules=schedules, data=data,
                  state=state, step_fn=step_fn, manager=manager, restored_step=restored_step)


def train_and_evaluate(config, workdir, max_steps=None):
  """Trains MC-JEPA as `config` says, checkpointing into and resuming from `workdir`.

  Args:
    config: ConfigDict from `configs/*.py`.
    workdir: directory for checkpoints, TensorBoard events, pictures and eval.json.
    max_steps: stop after this many steps in this call, as a kill would (for
      tests and time-sliced jobs); the next call resumes.

  Returns:
    (final TrainState, evaluation results dict: None if stopped early, and on
    every process but 0 of a multi-process run).
  """
  # clu's writers import TensorFlow (seconds): only the full loop needs them, not `prepare`.
  from clu import metric_writers, periodic_actions  # pylint: disable=g-import-not-at-top
  train_cfg = config.train
  # Every process trains and takes part in checkpointing; only process 0 writes logs and pictures.
  is_main = jax.process_index() == 0
  run = prepare(config, workdir)
  if run.restored_step is not None:
    _say(is_main, f"resumed from the checkpoint of step {run.restored_step}")
  model = run.model
  predictor = make_flow_predictor(model)
  eval_pair = heldout_source(config.data, config.seed)[0]

  writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
  if is_main:
    write_run_config(workdir, config)
  if is_main and run.restored_step is None:
    writer.write_hparams(_flatten(config.to_dict()))
  report = periodic_actions.ReportProgress(num_train_steps=train_cfg.total_steps, writer=writer,
                                           every_steps=train_cfg.log_every)
  step = int(run.state.step)
  stop = train_cfg.total_steps if max_steps is None else min(train_cfg.total_steps, step + max_steps)
  window = []
  started = time.time()
  # One process cannot stop a multi-host run alone (the save is collective): there, Orbax's
  # preemption notice, which every process sees at the same step, does it.
  terminate = _TerminationRequest(install=jax.process_count() == 1)
  try:
    while step < stop:
      run.state, metrics = run.step_fn(run.state, run.next_batch())
      step += 1
      window.append(metrics)
      report(step)
      # Orbax's preemption notice (TPU pods, multi-host) or SIGTERM (SLURM, Kubernetes, a user).
      preempted = terminate.requested or run.manager.reached_preemption(step)
      if preempted or run.manager.should_save(step) or step == stop:
        # Nothing non-finite may reach a checkpoint: check every step since the last check first.
        _check_finite(window, step, run.manager)
      if preempted:
        run.save(force=True)
        run.manager.wait_until_finished()
        writer.flush()
        _say(is_main, f"stopped by {terminate.reason or 'a preemption notice'} at step {step}: checkpoint saved in "
             f"{run.manager.directory}; run the same command again to resume")
        return run.state, None
      if step % train_cfg.log_every == 0 or step == stop:
        _check_finite(window, step, run.manager)
        # Steps whose update was skipped (non-finite) stay out of the averages.
        kept = [m for m in window if not float(m.get("update_skipped", 0.0))] or window
        scalars = {k: float(np.mean([float(m[k]) for m in kept])) for k in kept[0]}
        if "skipped_updates" in window[-1]:
          scalars["skipped_updates"] = float(window[-1]["skipped_updates"])  # a running total
        scalars.update({f"lr/{g}": float(s(step)) for g, s in run.schedules.items()})
        writer.write_scalars(step, scalars)
        _say(is_main, f"step {step}/{train_cfg.total_steps}  total {scalars['total']:.4f}  flow {scalars['flow']:.4f}"
             f"  content {scalars['content']:.3f}  emb-std {scalars['embedding_std']:.3f}"
             f"  ({(time.time() - started) / len(window):.3f} s/step, "
             f"ETA {format_duration((stop - step) * (time.time() - started) / len(window))})"
             + (f"  skipped non-finite updates: {scalars['skipped_updates']:.0f}"
                if scalars.get("skipped_updates") else ""))
        window, started = [], time.time()
      if step % train_cfg.picture_every == 0 or step == train_cfg.total_steps:
        _write_picture(writer, workdir, step, predictor, run.state, eval_pair, model, flow_margin(config.eval),
                       is_main)
      run.save(force=step == stop)
  finally:
    terminate.restore()
  run.manager.wait_until_finished()
  writer.flush()

  if step < train_cfg.total_steps:
    return run.state, None
  results = evaluate_on_main(config, model, run.state, predictor, workdir)
  if results is not None:
    writer.write_scalars(step, {f"eval/{k}/epe": v["epe"] for k, v in results["flow"].items()}
                         | {"eval/embedding_std": results["embedding_std"]})
  writer.flush()
  run.manager.close()
  if is_main:
    frames = write_sample_frames(workdir)
    print(f"Try the trained model on a pair of frames (or --video FILE; see README 'Use a trained model'):\n"
          f"  python -m mcjepa_jax.infer flow --model {workdir} {' '.join(frames)} --out {workdir}/infer "
          f"--max_size {config.data.pairs.crop[1] * 3 // 2} --arrows", flush=True)
  return run.state, results


def evaluate_on_main(config, model, state, predictor, workdir):
  """The end-of-training evaluation, once per run: on process 0, on its first local device.

  Every process must call it (the parameters of a multi-process run are gathered
  first, a collective); returns the results on process 0 and None elsewhere.
  """
  variables = _variables(state)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    variables = multihost_utils.process_allgather(variables, tiled=True)
    if jax.process_index() != 0:
      return None
    variables = jax.device_put(variables, jax.local_devices()[0])
  return evaluate_run(config, model, variables, int(state.step), predictor, workdir)


def _check_workdir(workdir):
  """Creates `workdir` and writes a probe file there: an unusable workdir is named before training starts."""
  path = epath.Path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_probe_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise OSError(f"workdir {workdir}: cannot create it or write there ({type(e).__name__}: "
                  f"{e.strerror or e}); nothing was trained or deleted") from None


class NonFiniteError(FloatingPointError):
  """A loss term or the gradient norm became NaN or Inf; the message names the step and terms."""


def _check_finite(window, step, manager):
  """Raises NonFiniteError if any metric of the steps in `window` (the last of which is `step`) is not finite.

  Waits for pending saves first, so the last good checkpoint is complete; no later one is written.
  """
  for offset, metrics in enumerate(window):
    if float(metrics.get("update_skipped", 0.0)):
      continue  # train.skip_nonfinite_updates dropped this step's update: parameters are unchanged
    bad = sorted(k for k, v in metrics.items() if not np.isfinite(np.asarray(v)).all())
    if bad:
      manager.wait_until_finished()
      first = step - len(window) + 1 + offset
      latest = manager.latest_step()
      kept = (f"the last good checkpoint, step {latest}, is kept in {manager.directory}" if latest is not None
              else "there is no checkpoint yet")
      raise NonFiniteError(f"step {first}: non-finite {', '.join(bad)}; training stopped, {kept} and no "
                           "later one was saved. Lower the learning rates or check the data (a NaN pixel?).")


class _TerminationRequest:
  """SIGTERM -> finish the current step, save and exit cleanly (main thread of a process only)."""

  def __init__(self, install=True):
    import signal  # pylint: disable=g-import-not-at-top
    import threading  # pylint: disable=g-import-not-at-top
    self.requested, self.reason, self._previous = False, None, None
    if install and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.requested, self.reason = True, "SIGTERM"

  def restore(self):
    import signal  # pylint: disable=g-import-not-at-top
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None


def write_run_config(workdir, config):
  """WORKDIR/config.json: what `load_pretrained`, `infer` and `evaluate` read to rebuild the model."""
  (epath.Path(workdir) / "config.json").write_text(config.to_json_best_effort(indent=2))


def _flatten(tree, prefix=""):
  """Nested config dict -> {"a.b.c": scalar or str} for TensorBoard hparams."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
  return flat


def _say(is_main, text):
  if is_main:
    print(text, flush=True)


def _variables(state):
  return {"params": state.params, "batch_stats": state.batch_stats}


def _write_picture(writer, workdir, step, predictor, state, sample, model, margin, is_main):
  flow = predict_flow(predictor, _variables(state), sample["frame1"], sample["frame2"],
                      model.encoder.total_stride, margin=margin)
  panel = flow_panel(sample["frame1"], sample["frame2"], flow, sample["flow"])
  writer.write_images(step, {"flow/heldout_pair": panel[None]})
  if is_main:
    pictures = epath.Path(workdir) / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    save_png(pictures / f"heldout_step{step:06d}.png", enlarge_for_display(panel))
