"""kill -9 at random moments, including during asynchronous saves: the run resumes bit-exactly (issue 15).

Slow (several process starts): `pytest --runslow tests/test_crash_consistency.py`.
"""

import json
import os
import re
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 24
FLAGS = [f"--config.train.total_steps={STEPS}", "--config.train.warmup_steps=2", "--config.train.flow_start_steps=0",
         "--config.train.vc_warmup_steps=2", "--config.train.occlusion_start_steps=4",
         "--config.train.video_batch_size=2", "--config.train.image_batch_size=4", "--config.train.log_every=4",
         "--config.train.picture_every=1000", "--config.train.checkpoint_every=1",
         "--config.train.keep_checkpoints=3", "--config.data.num_eval=2", "--config.eval.real_samples=False",
         "--config.data.num_threads=1"]


def _command(workdir):
  return [sys.executable, "-m", "mcjepa_jax.main", "--config", os.path.join(REPO, "configs", "tiny.py"),
          "--workdir", str(workdir)] + FLAGS


def _env(cache):
  return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def _finished_steps(workdir):
  folder = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(folder):
    return set()
  # Orbax writes into a temporary folder and renames it to the bare step number when finished.
  return {int(name) for name in os.listdir(folder) if name.isdigit()}


def _restore_all(workdir):
  import orbax.checkpoint as ocp
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  step = manager.latest_step()
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                           data=ocp.args.JsonRestore()))
  return step, restored["state"], restored["data"]


@pytest.mark.slow
def test_random_sigkills_resume_bit_exactly(tmp_path):
  cache = tmp_path / "cache"
  reference = tmp_path / "reference"
  done = subprocess.run(_command(reference), env=_env(cache), capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-2000:]

  workdir = tmp_path / "killed"
  rng = np.random.default_rng(0)
  kills, during_save, finished_before = 0, 0, -1
  while True:
    process = subprocess.Popen(_command(workdir), env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    if kills < 6:
      # Wait until this process has written a new checkpoint, then kill it a random moment later
      # (often in the middle of the next asynchronous save: one starts every step).
      before = _finished_steps(workdir)
      deadline = time.time() + 600
      while _finished_steps(workdir) <= before and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
      time.sleep(float(rng.uniform(0.0, 1.5)))
      if process.poll() is None:
        folder = os.path.join(workdir, "checkpoints")
        during_save += any(not name.isdigit() for name in os.listdir(folder))  # a temporary folder exists
        process.kill()
        kills += 1
    output = process.communicate(timeout=900)[0]
    match = re.search(r"resumed from the checkpoint of step (\d+)", output)
    if finished_before >= 0:
      # No checkpoint reported finished before a kill is lost: the next run resumes from it or a later one.
      assert match and int(match.group(1)) >= finished_before, (finished_before, output[-1000:])
    finished_before = max(_finished_steps(workdir), default=-1)
    if process.returncode == 0:
      break
    assert process.returncode == -9, output[-2000:]
  print(f"{kills} SIGKILLs, {during_save} while a save was in progress; resumed and finished at step {STEPS}")
  assert kills >= 5, kills

  ref_step, ref_state, ref_data = _restore_all(str(reference))
  step, state, data = _restore_all(str(workdir))
  assert step == ref_step == STEPS and data == ref_data
  for (path, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree_util.tree_leaves_with_path(ref_state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
  with open(os.path.join(workdir, "eval.json")) as f, open(os.path.join(reference, "eval.json")) as g:
    assert json.load(f)["flow"] == json.load(g)["flow"]
