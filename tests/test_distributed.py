"""Multi-process training and checkpoints across topologies, each in real subprocesses.

Two processes joined by `jax.distributed` (coordinator on 127.0.0.1, gloo CPU
collectives), each reading half of the batch, must take the same step as one
process, evaluate once (on process 0) with the single process's result; their
checkpoint must restore in one process; a checkpoint saved on 8
(fake) devices with fsdp-sharded state must continue on 2 and on 1 device with
the same next-step loss, after restoring bit-identical parameters.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")


def _env(devices, cache_dir):
  # One or two steps run: XLA's backend optimisation would cost more compile time than it saves.
  flags = f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
  return dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache_dir,
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")


def _result(process):
  stdout, stderr = process.communicate(timeout=1200)
  assert process.returncode == 0, stderr[-4000:]
  lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
  return json.loads(lines[-1][len("RESULT "):]) if lines else None


def _start(args, devices, cache_dir):
  return subprocess.Popen([sys.executable, WORKER, *map(str, args)], env=_env(devices, cache_dir),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(args, devices, cache_dir):
  return _result(_start(args, devices, cache_dir))


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _params(path):
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def _max_relative_difference(a, b):
  assert a.keys() == b.keys()
  scale = max(float(np.abs(v).max()) for v in b.values())
  return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a) / scale


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("xla_cache"))


def test_two_processes_take_the_single_process_step_and_their_checkpoint_restores_in_one(tmp_path, cache_dir):
  pair, single = tmp_path / "pair", tmp_path / "single"
  port = _free_port()
  workers = [_start(["step_and_evaluate", pair, tmp_path / f"pair{i}.npz", 1, i, 2, port], 1, cache_dir)
             for i in range(2)]
  outputs = [w.communicate(timeout=1200) for w in workers]
  assert all(w.returncode == 0 for w in workers), outputs[1][1][-4000:] + outputs[0][1][-4000:]
  pair_result = json.loads(outputs[0][0].split("RESULT ")[-1])
  assert pair_result["processes"] == 2 and pair_result["devices"] == 2 and pair_result["step"] == 1
  # The end-of-training evaluation runs once: on process 0, whose table alone is printed.
  assert "EVALUATED 0 True" in outputs[0][0] and "EVALUATED 1 False" in outputs[1][0]
  assert [out.count("Evaluation at step") for out, _ in outputs] == [1, 0]
  assert json.loads((pair / "eval.json").read_text())["step"] == 1
  single_result = _run(["step_and_evaluate", single, tmp_path / "single.npz", 1], 1, cache_dir)
  assert single_result["processes"] == 1 and single_result["evaluated"]

  assert abs(pair_result["loss"] - single_result["loss"]) <= 1e-5 * abs(single_result["loss"])
  assert abs(pair_result["heldout_epe"] - single_result["heldout_epe"]) <= 1e-4 * single_result["heldout_epe"]
  assert _max_relative_difference(_params(tmp_path / "pair0.npz"), _params(tmp_path / "single.npz")) < 1e-5

  restored = _run(["restore", pair, tmp_path / "restored.npz", 1], 1, cache_dir)
  assert restored["restored_step"] == 1
  np.testing.assert_array_equal(np.concatenate([v.ravel() for v in _params(tmp_path / "restored.npz").values()]),
                                np.concatenate([v.ravel() for v in _params(tmp_path / "pair0.npz").values()]))


@pytest.mark.slow  # about 3 minutes; fsdp numerics stay covered by test_sharding.py, exports across meshes by test_inference.py
def test_checkpoint_saved_on_8_devices_continues_on_2_and_1(tmp_path, cache_dir):
  saved = tmp_path / "eight"
  # Step 1 on 8 devices (data=4, fsdp=2), save, then step 2 there: the reference next-step loss.
  eight = _run(["save_and_continue", saved, tmp_path / "eight.npz", 2], 8, cache_dir)
  assert eight["devices"] == 8 and eight["step"] == 2
  saved_params = _params(tmp_path / "eight_saved.npz")
  for name, devices, fsdp in (("on2", 2, 2), ("on1", 1, 1)):
    workdir = tmp_path / name
    shutil.copytree(saved, workdir)
    shutil.rmtree(workdir / "checkpoints" / "2", ignore_errors=True)
    result = _run(["step", workdir, tmp_path / f"{name}.npz", fsdp], devices, cache_dir)
    assert result["restored_step"] == 1 and result["step"] == 2 and result["devices"] == devices
    restored = _params(tmp_path / f"{name}_restored.npz")
    assert all(np.array_equal(restored[k], saved_params[k]) for k in saved_params), name
    assert abs(result["loss"] - eight["loss"]) <= 1e-5 * abs(eight["loss"]), (name, result, eight)
  # (Parameters after the next step are not compared leaf by leaf: Adam turns the float32
  # noise of gradients that are zero in exact arithmetic into full-size updates.)
