"""train_and_evaluate: a killed run resumes to the same parameters; damaged checkpoints are skipped."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from mcjepa_jax.train.loop import train_and_evaluate


@pytest.fixture(scope="module")
def loop_config(tiny_config):
  config = tiny_config.copy_and_resolve_references()
  train = config.train
  train.total_steps, train.warmup_steps = 4, 1
  train.flow_start_steps, train.vc_warmup_steps, train.occlusion_start_steps = 1, 1, 2
  train.video_batch_size, train.image_batch_size = 2, 4
  train.log_every, train.picture_every, train.checkpoint_every, train.keep_checkpoints = 2, 4, 1, 3
  config.data.num_eval = 2
  config.eval.real_samples = False
  return config


@pytest.fixture(scope="module")
def uninterrupted(loop_config, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  state, results = train_and_evaluate(loop_config, workdir)
  return workdir, state, results


def _assert_same_params(a, b):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_run_writes_checkpoints_metrics_pictures_and_eval(uninterrupted):
  workdir, state, results = uninterrupted
  assert int(state.step) == 4
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "3", "4"]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  assert os.path.exists(os.path.join(workdir, "pictures", "heldout_step000004.png"))
  with open(os.path.join(workdir, "eval.json")) as f:
    saved = json.load(f)
  assert saved["flow"]["generated_heldout"]["pairs"] == 2 and np.isfinite(saved["embedding_std"])
  assert results["flow"]["generated_heldout"]["zero_epe"] > 0


def test_killed_run_resumes_to_identical_parameters(loop_config, uninterrupted, tmp_path):
  _, reference, _ = uninterrupted
  workdir = str(tmp_path / "resumed")
  partial, results = train_and_evaluate(loop_config, workdir, max_steps=2)
  assert int(partial.step) == 2 and results is None
  resumed, results = train_and_evaluate(loop_config, workdir)
  assert int(resumed.step) == 4 and results is not None
  _assert_same_params(resumed.params, reference.params)
  _assert_same_params(resumed.opt_state, reference.opt_state)


def test_damaged_latest_checkpoint_falls_back_to_previous(loop_config, uninterrupted, tmp_path, caplog):
  source, _, _ = uninterrupted
  workdir = str(tmp_path / "damaged")
  shutil.copytree(source, workdir)
  latest = os.path.join(workdir, "checkpoints", "4", "state")
  for root, _, files in os.walk(latest):
    for name in files:
      os.remove(os.path.join(root, name))  # a half-written step
  config = loop_config.copy_and_resolve_references()
  config.train.total_steps = 3  # step 3 is the newest intact checkpoint: nothing left to train
  state, _ = train_and_evaluate(config, workdir)
  assert int(state.step) == 3
  assert "checkpoints/4" in caplog.text and "unreadable" in caplog.text
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "4"))  # nothing was deleted


def test_evaluation_cli_on_a_trained_checkpoint(loop_config, uninterrupted, shared_data, tmp_path):
  """Flow, DAVIS propagation and both linear probes run on the checkpoint the loop wrote."""
  from PIL import Image
  from skimage import data as skdata
  from mcjepa_jax.evaluate.davis import load_sequence
  from mcjepa_jax.evaluate.main import run
  workdir, _, _ = uninterrupted
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for label, name in enumerate(("brick", "grass")):
      texture = np.asarray(getattr(skdata, name)())
      folder = tmp_path / split / name
      folder.mkdir(parents=True)
      for i in range(4):
        y, x = rng.integers(0, 300, size=2)
        Image.fromarray(texture[y:y + 96, x:x + 96]).save(folder / f"{i}.png")
  voc = tmp_path / "voc"
  for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    (voc / sub).mkdir(parents=True)
  frames, masks = load_sequence(str(shared_data / "DAVIS"), "blackswan", max_frames=4)
  for i, (frame, mask) in enumerate(zip(frames, masks)):
    Image.fromarray((frame * 255).astype(np.uint8)).save(voc / "JPEGImages" / f"{i}.jpg")
    Image.fromarray(mask.astype(np.uint8), mode="P").save(voc / "SegmentationClass" / f"{i}.png")
  (voc / "ImageSets/Segmentation/train.txt").write_text("0\n1\n2\n")
  (voc / "ImageSets/Segmentation/val.txt").write_text("3\n")

  config = loop_config.copy_and_resolve_references()
  config.eval.probe.steps, config.eval.probe.classify_size, config.eval.probe.segment_size = 50, 64, 128
  config.eval.probe.num_classes = 2
  results = run(config, workdir, str(shared_data), ["flow", "davis", "classify", "segment"], max_pairs=1,
                davis_max_frames=3, classify=(str(tmp_path / "train"), str(tmp_path / "test")),
                segment_root=str(voc))
  assert results["checkpoint_step"] == 4
  assert np.isfinite(results["flow"]["sintel_clean"]["epe"])
  assert 0 <= results["davis"]["mean"]["propagation"]["J&F"] <= 1
  assert results["classify"]["test"] == 8 and 0 <= results["classify"]["top1"] <= 1
  assert 0 <= results["segment"]["miou"] <= 1 and results["segment"]["test"] == 1


def test_checkpoints_of_another_model_stop_the_run_and_are_kept(loop_config, uninterrupted, tmp_path):
  source, _, _ = uninterrupted
  workdir = str(tmp_path / "other_model")
  shutil.copytree(source, workdir)
  config = loop_config.copy_and_resolve_references()
  config.model.flow_head.estimator_widths = tuple(w + 4 for w in config.model.flow_head.estimator_widths)
  with pytest.raises(RuntimeError, match="can be restored into this config"):
    train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == sorted(
      os.listdir(os.path.join(source, "checkpoints")))


def _inject(monkeypatch, at_step, action):
  """Runs `action(batch)` on the batch of step `at_step` (1-based) inside the loop."""
  from mcjepa_jax.train import loop
  original = loop.Training.next_batch

  def next_batch(self):
    batch = original(self)
    return action(batch) if int(self.state.step) + 1 == at_step else batch

  monkeypatch.setattr(loop.Training, "next_batch", next_batch)


def test_a_nan_stops_the_run_naming_step_and_terms_and_keeps_the_last_good_checkpoint(loop_config, tmp_path,
                                                                                      monkeypatch):
  from mcjepa_jax.train.loop import NonFiniteError
  workdir = str(tmp_path / "nan")
  nan_pixel = lambda batch: {**batch, "frames1": batch["frames1"].at[0, 0, 0, 0].set(np.nan)}
  _inject(monkeypatch, 3, nan_pixel)
  with pytest.raises(NonFiniteError, match=r"step 3: non-finite .*flow.*grad_norm.*last good checkpoint, step 2"):
    train_and_evaluate(loop_config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2"]
  monkeypatch.undo()
  # The kept checkpoint resumes (the NaN came from that one batch).
  state, _ = train_and_evaluate(loop_config, workdir, max_steps=1)
  assert int(state.step) == 3 and all(np.isfinite(np.asarray(x)).all()
                                      for x in jax.tree_util.tree_leaves(state.params))


def test_sigterm_saves_at_the_step_boundary_and_the_run_resumes(loop_config, uninterrupted, tmp_path, monkeypatch,
                                                               capsys):
  import signal
  workdir = str(tmp_path / "term")
  config = loop_config.copy_and_resolve_references()
  config.train.checkpoint_every = 100  # only the termination save can write step 2 (Orbax also keeps step 1)

  def terminate(batch):
    os.kill(os.getpid(), signal.SIGTERM)
    return batch

  _inject(monkeypatch, 2, terminate)
  state, results = train_and_evaluate(config, workdir)
  assert int(state.step) == 2 and results is None
  assert "stopped by SIGTERM at step 2: checkpoint saved" in capsys.readouterr().out
  assert "2" in os.listdir(os.path.join(workdir, "checkpoints"))
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the run
  monkeypatch.undo()
  resumed, results = train_and_evaluate(config, workdir)
  assert int(resumed.step) == 4 and results is not None
  _assert_same_params(resumed.params, uninterrupted[1].params)


def test_an_unusable_workdir_is_named_before_anything_is_built(loop_config, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  with pytest.raises(OSError, match=r"workdir .*a_file/run: cannot create it or write there"):
    train_and_evaluate(loop_config, str(blocker / "run"))
