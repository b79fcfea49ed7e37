"""Subprocess worker for test_distributed.py: one training step in a given topology.

  python distributed_worker.py step WORKDIR PARAMS_NPZ FSDP [PROCESS_ID NUM_PROCESSES PORT]
      Joins the multi-process runtime when NUM_PROCESSES > 1 (coordinator on
      127.0.0.1, gloo CPU collectives), restores WORKDIR's newest checkpoint if
      any, takes one step, saves it, prints JSON with the step's loss and
      writes the parameters after it to PARAMS_NPZ (and the restored ones,
      if any, to PARAMS_restored.npz).
  python distributed_worker.py step_and_evaluate ...
      "step", then the loop's end-of-training evaluation (`evaluate_on_main`, on
      the generated held-out pairs only); every process reports whether it
      evaluated and process 0 its held-out EPE.
  python distributed_worker.py save_and_continue WORKDIR PARAMS_NPZ FSDP
      The same, then one more step without saving: its loss is the "next-step
      loss" a restored run must reproduce (parameters after the save go to
      PARAMS_saved.npz).
  python distributed_worker.py restore WORKDIR PARAMS_NPZ FSDP
      Restores WORKDIR's newest checkpoint and writes its parameters.

Device count comes from XLA_FLAGS (--xla_force_host_platform_device_count).
"""

import json
import os
import sys

import jax
import numpy as np


def tiny_config(fsdp):
  from mcjepa_jax.config_utils import load_config  # pylint: disable=g-import-not-at-top
  config = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "tiny.py"))
  train = config.train
  train.total_steps, train.warmup_steps = 4, 1
  train.flow_start_steps, train.vc_warmup_steps, train.occlusion_start_steps = 0, 1, 0
  train.video_batch_size, train.image_batch_size = 8, 8
  train.checkpoint_every = 1
  config.mesh.fsdp = fsdp
  config.mesh.fsdp_min_size = 0
  config.data.num_threads = 1
  config.eval.real_samples = False
  return config


def gathered(params):
  """Parameters as host numpy arrays, whatever their sharding (all processes must call this)."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(params, tiled=True))


def main():
  mode, workdir, out_path, fsdp = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
  if len(sys.argv) > 5:
    process_id, num_processes, port = (int(x) for x in sys.argv[5:8])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id)
  from mcjepa_jax.train.loop import prepare  # pylint: disable=g-import-not-at-top
  run = prepare(tiny_config(fsdp), workdir)
  out = {"restored_step": run.restored_step, "devices": jax.device_count(), "processes": jax.process_count()}
  if mode in ("step", "step_and_evaluate", "save_and_continue"):
    if run.restored_step is not None:
      _write_params(out_path.replace(".npz", "_restored.npz"), run.state.params)
    run.state, metrics = run.step_fn(run.state, run.next_batch())
    run.save(force=True)
    run.manager.wait_until_finished()
    if mode == "save_and_continue":
      _write_params(out_path.replace(".npz", "_saved.npz"), run.state.params)
      run.state, metrics = run.step_fn(run.state, run.next_batch())
    out["loss"] = float(metrics["total"])
    out["step"] = int(run.state.step)
  if mode == "step_and_evaluate":
    from mcjepa_jax.evaluate.flow_eval import make_flow_predictor  # pylint: disable=g-import-not-at-top
    from mcjepa_jax.train.loop import evaluate_on_main  # pylint: disable=g-import-not-at-top
    results = evaluate_on_main(run.config, run.model, run.state, make_flow_predictor(run.model), workdir)
    out["evaluated"] = results is not None
    if results is not None:
      out["heldout_epe"] = results["flow"]["generated_heldout"]["epe"]
    # Each process says for itself whether it evaluated (process 0 alone prints RESULT).
    print(f"EVALUATED {jax.process_index()} {out['evaluated']}", flush=True)
  _write_params(out_path, run.state.params)
  run.manager.close()
  if jax.process_index() == 0:
    print("RESULT " + json.dumps(out), flush=True)


def _write_params(path, params):
  """Gathers the parameters from all processes; process 0 writes them as .npz."""
  leaves = jax.tree_util.tree_leaves_with_path(gathered(params))
  if jax.process_index() == 0:
    np.savez(path, **{jax.tree_util.keystr(k): v for k, v in leaves})


if __name__ == "__main__":
  main()
