"""Export, one-call loading, the inference command line and their bad inputs (issue 13)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from mcjepa_jax.inference import ModelLoadError, features, load_model, load_pretrained, predict_flow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _small_config(tiny_config):
  config = tiny_config.copy_and_resolve_references()
  config.train.video_batch_size, config.train.image_batch_size = 2, 4
  config.data.num_threads = 1
  config.mesh.fsdp_min_size = 0
  return config


@pytest.fixture(scope="module")
def trained(tiny_config, tmp_path_factory):
  """A training workdir holding one checkpoint of perturbed weights (no step compiled: fast)."""
  from mcjepa_jax.train.loop import prepare, write_run_config
  config = _small_config(tiny_config)
  workdir = str(tmp_path_factory.mktemp("run"))
  run = prepare(config, workdir, compile_step=False)
  # Weights that are not the initialisation, so a loader that re-initialises would be caught.
  leaves, tree = jax.tree_util.tree_flatten(run.state.params)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  params = tree.unflatten([x + 0.01 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])
  run.state = run.state.replace(params=params, step=run.state.step + 3)
  run.save(force=True)
  run.manager.wait_until_finished()
  run.manager.close()
  write_run_config(workdir, config)
  variables = jax.device_get({"params": run.state.params, "batch_stats": run.state.batch_stats})
  return workdir, config, run.model, variables


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
  from mcjepa_jax.export import export_run
  workdir, _, _, _ = trained
  out = str(tmp_path_factory.mktemp("exports") / "full")
  metadata = export_run(workdir, out)
  return out, metadata


def _frames(seed=0, size=(50, 70)):
  rng = np.random.default_rng(seed)
  frame1 = rng.uniform(size=(*size, 3)).astype(np.float32)
  return frame1, np.roll(frame1, 2, axis=1)


def _assert_trees_equal(a, b):
  flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_export_writes_variables_config_and_metadata(trained, exported):
  _, config, _, variables = trained
  out, metadata = exported
  assert sorted(os.listdir(out)) == ["config.json", "metadata.json", "variables"]
  with open(os.path.join(out, "metadata.json")) as f:
    saved = json.load(f)
  assert saved == metadata and saved["step"] == 3 and saved["format"] == 1
  assert saved["parts"] == ["encoder", "flow_head", "expander"]
  assert saved["parameters"]["encoder"] == sum(x.size for x in jax.tree_util.tree_leaves(
      variables["params"]["encoder"]))
  assert saved["input"]["size_multiple"] == 64 and saved["input"]["pixel_mean"] == list(config.model.pixel_mean)
  with open(os.path.join(out, "config.json")) as f:
    assert json.load(f)["flow_head"]["levels"] == list(config.model.flow_head.levels)
  # Only model variables travel: no optimizer state.
  assert not any("opt_state" in root or "opt_state" in d for root, d, _ in os.walk(out))


def test_export_and_workdir_load_the_checkpoint_weights_and_give_identical_flow(trained, exported):
  from mcjepa_jax.evaluate.flow_eval import make_flow_predictor, predict_flow as eval_predict, to_stride_grid
  from mcjepa_jax.ops import forward_backward_occlusion
  workdir, _, model, variables = trained
  out, _ = exported
  from_export = load_model(out)
  from_workdir = load_model(workdir)
  assert from_export.step == from_workdir.step == 3
  _assert_trees_equal(from_export.variables, variables)
  _assert_trees_equal(from_workdir.variables, variables)
  frame1, frame2 = _frames()
  from mcjepa_jax.evaluate.defaults import FLOW_MARGIN
  reference = eval_predict(make_flow_predictor(model), variables, frame1, frame2, 64, margin=FLOW_MARGIN)
  flow = predict_flow(from_export.model, from_export.variables, frame1, frame2)
  assert flow.shape == (50, 70, 2)
  np.testing.assert_array_equal(flow, reference)
  unpadded = predict_flow(from_export.model, from_export.variables, frame1, frame2, margin=0)
  np.testing.assert_array_equal(unpadded, eval_predict(make_flow_predictor(model), variables, frame1, frame2, 64))
  # The occlusion fill: the evaluation's filled predictor, and the network's flow wherever the check passes.
  filled = predict_flow(from_export.model, from_export.variables, frame1, frame2, fill_radius=5)
  np.testing.assert_array_equal(filled, eval_predict(make_flow_predictor(model, 5), variables, frame1, frame2, 64,
                                                     margin=FLOW_MARGIN))
  grid, undo = to_stride_grid(np.stack([frame1, frame2]), 64, "pad", FLOW_MARGIN)
  both = model.apply(variables, grid[:1], grid[1:], method=model.video)["flow"]
  visible = undo(forward_backward_occlusion(both[:1], both[1:]))[0, ..., 0] > 0
  np.testing.assert_array_equal(filled[visible], flow[visible])
  # uint8 frames are the same frames; a batch gives each pair's flow.
  batch = predict_flow(from_export.model, from_export.variables, np.stack([frame1, frame2]),
                       np.stack([frame2, frame1]))
  np.testing.assert_allclose(batch[0], flow, atol=1e-5)
  resized = predict_flow(from_export.model, from_export.variables, frame1, frame2, mode="resize")
  assert resized.shape == flow.shape and np.isfinite(resized).all()


def test_features_pooled_and_per_level(exported):
  model, variables = load_pretrained(exported[0])
  images = (np.random.default_rng(1).uniform(size=(2, 40, 72, 3)) * 255).astype(np.uint8)
  pooled = features(model, variables, images)
  assert pooled.shape == (2, model.encoder.widths[-1])
  level3 = features(model, variables, images, level=3)
  assert level3.shape == (2, 5, 9, model.encoder.widths[0])
  np.testing.assert_allclose(features(model, variables, images[0], level=3), level3[0], atol=1e-5)
  with pytest.raises(ValueError, match="level must be in 1..6"):
    features(model, variables, images, level=7)


def test_partial_export_refuses_the_uses_it_cannot_serve(trained, tmp_path):
  from mcjepa_jax.export import export_run
  out = str(tmp_path / "encoder_only")
  metadata = export_run(trained[0], out, parts=["encoder"])
  assert metadata["parts"] == ["encoder"] and set(metadata["parameters"]) == {"encoder"}
  model, variables = load_pretrained(out)
  assert set(variables["params"]) == {"encoder"}
  frame1, frame2 = _frames()
  assert features(model, variables, frame1).shape == (model.encoder.widths[-1],)
  with pytest.raises(ModelLoadError, match=r"flow needs the model parts .*'flow_head'.* not exported"):
    predict_flow(model, variables, frame1, frame2)


def test_bad_model_folders_get_one_clear_error(exported, tmp_path):
  import shutil
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ModelLoadError, match="neither an export .* nor a training workdir.*holds nothing"):
    load_pretrained(str(empty))
  with pytest.raises(ModelLoadError, match="no such folder"):
    load_pretrained(str(tmp_path / "absent"))
  future = tmp_path / "future"
  shutil.copytree(exported[0], future)
  metadata = json.loads((future / "metadata.json").read_text())
  metadata["format"], metadata["package_version"] = 99, "9.0.0"
  (future / "metadata.json").write_text(json.dumps(metadata))
  with pytest.raises(ModelLoadError, match="export format 99 .*9.0.0.*reads format 1"):
    load_pretrained(str(future))
  interrupted = tmp_path / "interrupted"
  shutil.copytree(exported[0], interrupted)
  (interrupted / "metadata.json").unlink()
  with pytest.raises(ModelLoadError, match="neither an export"):
    load_pretrained(str(interrupted))
  damaged = tmp_path / "damaged"
  shutil.copytree(exported[0], damaged)
  metadata = json.loads((damaged / "metadata.json").read_text())
  for root, _, files in os.walk(damaged / "variables"):
    for name in files:
      if name != "_METADATA" and "manifest" not in name:
        (damaged / root / name).unlink()
  with pytest.raises(ModelLoadError, match="damaged or incomplete"):
    load_pretrained(str(damaged))
  assert metadata["parts"]


def test_export_refuses_a_non_empty_destination_and_unknown_parts(trained, exported, tmp_path):
  from mcjepa_jax.export import export_run
  before = sorted(os.listdir(exported[0]))
  with pytest.raises(FileExistsError, match="not empty"):
    export_run(trained[0], exported[0])
  assert sorted(os.listdir(exported[0])) == before
  with pytest.raises(ValueError, match=r"--parts: unknown .*'decoder'"):
    export_run(trained[0], str(tmp_path / "x"), parts=["decoder"])
  assert not os.path.exists(tmp_path / "x")


_EIGHT_DEVICE_EXPORT = """
import os, sys, numpy as np, jax
sys.path.insert(0, {tests!r})
from mcjepa_jax.config_utils import load_config
from mcjepa_jax.train.loop import prepare
from mcjepa_jax.export import export_variables
config = load_config({config!r})
config.train.video_batch_size, config.train.image_batch_size = 8, 8
config.mesh.fsdp, config.mesh.fsdp_min_size = 2, 0
run = prepare(config, {workdir!r}, compile_step=False)
assert len(jax.devices()) == 8
sharded = [x for x in jax.tree_util.tree_leaves(run.state.params) if len(x.sharding.device_set) == 8]
assert any(not x.sharding.is_fully_replicated for x in sharded), "nothing is fsdp-sharded"
variables = {{"params": run.state.params, "batch_stats": run.state.batch_stats}}
export_variables({out!r}, run.model, config.model, variables, step=0)
leaves = jax.tree_util.tree_leaves(jax.device_get(variables))
np.savez({npz!r}, *leaves)
"""


def test_an_export_made_on_eight_devices_loads_on_one(tmp_path):
  out, npz = str(tmp_path / "export8"), str(tmp_path / "params.npz")
  script = _EIGHT_DEVICE_EXPORT.format(tests=os.path.dirname(__file__), config=os.path.join(REPO, "configs/tiny.py"),
                                       workdir=str(tmp_path / "w"), out=out, npz=npz)
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert len(jax.devices()) == 1
  _, variables = load_pretrained(out)
  saved = np.load(npz)
  leaves = jax.tree_util.tree_leaves(variables)
  assert len(leaves) == len(saved.files)
  for i, leaf in enumerate(leaves):
    np.testing.assert_array_equal(np.asarray(leaf), saved[f"arr_{i}"])
    assert len(leaf.sharding.device_set) == 1


# ---- the inference command line ----

def _infer(*args):
  from mcjepa_jax.infer import main
  return main([str(a) for a in args])


def _save(path, array, mode=None):
  Image.fromarray(array, mode=mode).save(path)
  return path


def test_infer_flow_on_image_files_writes_flo_png_and_arrows(exported, tmp_path, capsys):
  from mcjepa_jax.data.formats import read_flo
  frame1, frame2 = _frames(size=(48, 80))
  frame3 = np.roll(frame2, 1, axis=0)
  paths = [_save(tmp_path / f"f{i}.png", (f * 255).round().astype(np.uint8)) for i, f in
           enumerate((frame1, frame2, frame3))]
  out = tmp_path / "out"
  assert _infer("flow", "--model", exported[0], *paths, "--out", out, "--arrows", "--batch", 1) == 0
  assert sorted(os.listdir(out)) == ["f0.flo", "f0_arrows.png", "f0_flow.png", "f1.flo", "f1_arrows.png",
                                     "f1_flow.png"]
  model, variables = load_pretrained(exported[0])
  quantized = [np.asarray(Image.open(p), np.float32) / 255 for p in paths]
  flow, _ = read_flo(str(out / "f0.flo"))
  np.testing.assert_allclose(flow, predict_flow(model, variables, quantized[0], quantized[1]), atol=1e-5)
  assert np.asarray(Image.open(out / "f1_arrows.png")).shape == (48, 80, 3)
  assert "wrote 6 file(s)" in capsys.readouterr().out


def test_infer_converts_grey_rgba_and_16_bit_frames(exported, tmp_path):
  rng = np.random.default_rng(3)
  grey = (rng.uniform(size=(40, 40)) * 255).astype(np.uint8)
  rgba = np.concatenate([np.repeat(grey[..., None], 3, -1), np.full((40, 40, 1), 128, np.uint8)], -1)
  deep = grey.astype(np.uint16) * 257
  paths = [_save(tmp_path / "grey.png", grey), _save(tmp_path / "rgba.png", rgba),
           _save(tmp_path / "deep.png", deep)]
  out = tmp_path / "out"
  assert _infer("flow", "--model", exported[0], *paths, "--out", out) == 0
  from mcjepa_jax.data.formats import read_flo
  # The three frames hold the same picture: no motion to find, and identical inputs.
  grey_to_rgba, _ = read_flo(str(out / "grey.flo"))
  rgba_to_deep, _ = read_flo(str(out / "rgba.flo"))
  np.testing.assert_allclose(grey_to_rgba, rgba_to_deep, atol=1e-5)


@pytest.mark.parametrize("option, value, keyword", [("--fill_occlusions", 5, "fill_radius"),
                                                    ("--coarse_factor", 2, "coarse_factor")])
def test_infer_options_give_the_predict_flow_of_the_same_option(exported, tmp_path, option, value, keyword):
  from mcjepa_jax.data.formats import read_flo
  frame1, frame2 = ((f * 255).round().astype(np.uint8) for f in _frames())
  paths = [_save(tmp_path / "one.png", frame1), _save(tmp_path / "two.png", frame2)]
  assert _infer("flow", "--model", exported[0], *paths, "--out", tmp_path / "out", option, value) == 0
  model, variables = load_pretrained(exported[0])
  expected = predict_flow(model, variables, frame1, frame2, **{keyword: value})
  np.testing.assert_allclose(read_flo(str(tmp_path / "out" / "one.flo"))[0], expected, atol=1e-5)
  assert np.abs(expected - predict_flow(model, variables, frame1, frame2)).max() > 1e-3  # the option did something


@pytest.mark.parametrize("case", ["different_sizes", "single_image", "missing_file", "corrupt_file",
                                  "empty_model", "bad_video"])
def test_infer_bad_input_is_one_message_and_writes_nothing(exported, tmp_path, capsys, case):
  a = _save(tmp_path / "a.png", np.zeros((32, 32, 3), np.uint8))
  b = _save(tmp_path / "b.png", np.zeros((32, 48, 3), np.uint8))
  c = _save(tmp_path / "c.png", np.zeros((32, 32, 3), np.uint8))
  corrupt = tmp_path / "corrupt.png"
  corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
  video = tmp_path / "broken.mp4"
  video.write_bytes(b"\x00" * 1000)
  empty = tmp_path / "empty_model"
  empty.mkdir()
  out = tmp_path / "out"
  args, expected = {
      "different_sizes": ((a, b), "frames differ in size: .*a.png is 32x32, .*b.png is 48x32"),
      "single_image": ((a,), "flow needs at least two frames"),
      "missing_file": ((a, tmp_path / "nope.png"), "nope.png: image file not found"),
      "corrupt_file": ((a, corrupt), "corrupt.png: cannot decode image"),
      "empty_model": ((a, c), "--model: .*empty_model: neither an export"),
      "bad_video": (("--video", video), "broken.mp4: cannot open video"),
  }[case]
  model = empty if case == "empty_model" else exported[0]
  assert _infer("flow", "--model", model, *args, "--out", out) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("infer: ")
  assert __import__("re").search(expected, err), err
  assert not out.exists()


def test_infer_video_streams_pairs_into_a_flow_video(exported, tmp_path):
  import av
  from mcjepa_jax.data.formats import read_flo
  path = str(tmp_path / "in.mp4")
  with av.open(path, mode="w") as container:
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    base = (np.random.default_rng(0).uniform(size=(48, 96, 3)) * 255).astype(np.uint8)
    for t in range(7):
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, t:t + 64]), format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  out = tmp_path / "out"
  assert _infer("flow", "--model", exported[0], "--video", path, "--out", out, "--flo", "--batch", 4) == 0
  assert sorted(os.listdir(out)) == ["flow.mp4"] + [f"frame_{i:06d}.flo" for i in range(6)]
  with av.open(str(out / "flow.mp4")) as container:
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
  assert len(frames) == 6 and frames[0].shape == (48, 128, 3)
  assert read_flo(str(out / "frame_000005.flo"))[0].shape == (48, 64, 2)


def test_infer_features_writes_pooled_and_levels(exported, tmp_path):
  paths = [_save(tmp_path / f"{i}.png", np.full((40, 56, 3), 40 * i, np.uint8)) for i in range(3)]
  out = tmp_path / "feats.npz"
  assert _infer("features", "--model", exported[0], *paths, "--out", out, "--levels", "2,4") == 0
  saved = np.load(out)
  model, _ = load_pretrained(exported[0])
  assert saved["pooled"].shape == (3, model.encoder.widths[-1])
  assert saved["level2"].shape == (3, 10, 14, model.encoder.stem_widths[1])
  assert saved["level4"].shape == (3, 3, 4, model.encoder.widths[1])
  assert list(saved["files"]) == [str(p) for p in paths]


def test_infer_on_the_shared_sintel_pair_matches_the_evaluation(exported, shared_data, tmp_path):
  from mcjepa_jax.data.formats import read_flo
  from mcjepa_jax.evaluate.main import run
  folder = shared_data / "Sintel" / "training" / "clean" / "alley_1"
  out = tmp_path / "out"
  assert _infer("flow", "--model", exported[0], folder / "frame_0002.png", folder / "frame_0003.png",
                "--out", out) == 0
  from mcjepa_jax.data.datasets import Sintel
  from mcjepa_jax.evaluate.flow_eval import endpoint_error
  flow, _ = read_flo(str(out / "frame_0002.flo"))
  gt, _ = read_flo(str(shared_data / "Sintel" / "training" / "flow" / "alley_1" / "frame_0002.flo"))
  _, invalid = Sintel(str(shared_data / "Sintel")).masks(0)  # the evaluation leaves these pixels out
  epe = endpoint_error(flow, gt, None if invalid is None else ~invalid)
  results = run(None, exported[0], str(shared_data), ["flow"], max_pairs=1, out=str(tmp_path / "eval.json"))
  assert results["checkpoint_step"] == 3
  assert epe == pytest.approx(results["flow"]["sintel_clean"]["epe"], rel=1e-6)
  assert os.path.exists(tmp_path / "eval.json")


def test_evaluation_refuses_a_data_root_without_known_releases(exported, tmp_path):
  from mcjepa_jax.evaluate.main import run
  with pytest.raises(FileNotFoundError, match="no such folder"):
    run(None, exported[0], str(tmp_path / "absent"), ["flow"])
  (tmp_path / "stuff").mkdir()
  with pytest.raises(FileNotFoundError, match="holds none of the releases .*Sintel/training"):
    run(None, exported[0], str(tmp_path / "stuff"), ["flow", "davis"])
