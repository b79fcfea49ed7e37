"""Evaluation command line: the paper's protocols on a trained checkpoint.

  python -m mcjepa_jax.evaluate.main --workdir DIR --data_root /datasets [--config configs/NAME.py] \
      [--tasks flow,davis,classify,segment] [--mode pad|resize] [--max_pairs N] [--davis_max_frames N]
      [--coarse_factor N]
      [--classify_train DIR --classify_test DIR]  [--segment_root VOC_ROOT] [--out FILE]

DIR is a training workdir (its newest checkpoint; parameters only, so the
training data need not be on disk) or an export (`mcjepa_jax.export`).
--config is needed only for workdirs written without config.json; its
`eval` section (else the run's, else `evaluate/defaults.py`) sets the DAVIS
and probe protocols, the flow's edge margin (`eval.flow_margin`; runs saved
before it existed are evaluated without one, as they were) and whether each
flow row also reports the flow with occlusions filled (`eval.occlusion_fill.radius`
> 0: a second forward pass per pair, `ops.fill_occluded_flow`). Evaluates every release folder found under --data_root
(Sintel/, KITTI/ or data_scene_flow/, FlyingChairs_release/, DAVIS/), prints
the tables and writes --out (default DIR/eval_protocols.json). `--baseline` skips the checkpoint and
reports the zero-flow and repeated-first-mask baselines only. Linear probes:
`classify` trains a linear classifier on pooled features of two labelled image
folders (class = sub-folder); `segment` a per-pixel linear layer on a VOC-layout
root (JPEGImages, SegmentationClass, ImageSets/Segmentation/{train,val}.txt).
"""

from mcjepa_jax.console import quiet_environment

quiet_environment()  # before any import that may load TensorFlow

import json
import os

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config the run was trained with (optional, see above).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (checkpoints/) or export folder.")
_OUT = flags.DEFINE_string("out", None, "Results file (default: WORKDIR/eval_protocols.json).")
_DATA_ROOT = flags.DEFINE_string("data_root", None, "Folder holding the datasets in their release layouts.")
_TASKS = flags.DEFINE_list("tasks", ["flow", "davis"], "Which protocols to run.")
_MODE = flags.DEFINE_enum("mode", "pad", ["pad", "resize"], "Frames to a multiple of the stride by padding "
                          "or by resizing (flow rescaled back exactly).")
_MAX_PAIRS = flags.DEFINE_integer("max_pairs", None, "Evaluate at most this many pairs per flow dataset.")
_DAVIS_FRAMES = flags.DEFINE_integer("davis_max_frames", None, "Use at most this many frames per DAVIS video.")
_COARSE = flags.DEFINE_integer("coarse_factor", 1, "Predict every flow coarse to fine from frames downscaled this "
                               "many times (flow_eval.coarse_to_fine; 1 = at full size only).", lower_bound=1)
_CLASSIFY_TRAIN = flags.DEFINE_string("classify_train", None, "Labelled image folder to fit the probe on.")
_CLASSIFY_TEST = flags.DEFINE_string("classify_test", None, "Labelled image folder to score the probe on.")
_SEGMENT_ROOT = flags.DEFINE_string("segment_root", None, "VOC-layout root for the segmentation probe.")
_BASELINE = flags.DEFINE_bool("baseline", False, "Only the zero-flow / first-mask baselines (no checkpoint).")
flags.mark_flags_as_required(["workdir", "data_root"])


def eval_config(config, workdir):
  """The `eval` settings: from `config`, else the run's config.json, else the package defaults."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.evaluate.defaults import eval_defaults  # pylint: disable=g-import-not-at-top
  if config is not None and "eval" in config:
    return config.eval
  saved = os.path.join(workdir, "config.json")
  if os.path.exists(saved):
    with open(saved) as f:
      run_config = json.load(f)
    if "eval" in run_config:
      return ml_collections.ConfigDict(run_config["eval"])
  return eval_defaults()


def run(config, workdir, data_root, tasks, mode="pad", max_pairs=None, davis_max_frames=None, baseline=False,
        classify=None, segment_root=None, out=None, coarse_factor=1):
  """Runs the protocols; returns the results dict (also written to `out`, default workdir/eval_protocols.json).

  config: the training ConfigDict or None (see the module docstring).
  classify: optional (train folder, test folder) for the classification probe.
  coarse_factor: > 1 predicts every flow coarse to fine (`flow_eval.coarse_to_fine`).
  """
  from mcjepa_jax.data.datasets import ImageFolder, SegmentationFolder  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.evaluate import davis, probes, protocols  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.evaluate.defaults import fill_predictor, flow_margin, occlusion_fill  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.evaluate.flow_eval import make_flow_predictor  # pylint: disable=g-import-not-at-top
  unknown = set(tasks) - {"flow", "davis", "classify", "segment"}
  if unknown:
    raise ValueError(f"--tasks: unknown {sorted(unknown)} (known: flow, davis, classify, segment)")
  if baseline and {"classify", "segment"} & set(tasks):
    raise ValueError("--baseline has no meaning for the linear probes: they need a checkpoint")
  if not os.path.isdir(data_root):
    raise FileNotFoundError(f"--data_root {data_root}: no such folder")
  specs = protocols.standard_flow_sets(data_root) if "flow" in tasks else []
  davis_root = os.path.join(data_root, "DAVIS")
  if {"flow", "davis"} & set(tasks) and not specs and not os.path.isdir(davis_root):
    raise FileNotFoundError(
        f"--data_root {data_root}: holds none of the releases the flow and DAVIS protocols read "
        f"({', '.join(protocols.KNOWN_RELEASES)}); it has {sorted(os.listdir(data_root))[:10]}")
  cfg = eval_config(config, workdir)
  predictor = filled = variables = feature_fn = model = None
  step = None
  if not baseline:
    from mcjepa_jax.inference import load_model  # pylint: disable=g-import-not-at-top
    loaded = load_model(workdir, config)
    model, variables, step = loaded.model, loaded.variables, loaded.step
    predictor, filled = make_flow_predictor(model), fill_predictor(model, cfg)
  margin = flow_margin(cfg)
  results = {"checkpoint_step": step, "mode": mode, "flow_margin": margin, "occlusion_fill": occlusion_fill(cfg),
             "coarse_factor": coarse_factor}
  if "flow" in tasks:
    multiple = model.encoder.total_stride if model is not None else 64
    results["flow"] = protocols.evaluate_flow_sets(specs, predictor, variables, multiple, mode, max_pairs, margin,
                                                   filled, coarse_factor)
    print(protocols.format_flow_table(results["flow"], baseline), flush=True)
  if "davis" in tasks and os.path.isdir(davis_root):
    davis_cfg = cfg.davis
    if not baseline:
      feature_fn = protocols.make_feature_fn(model, variables, davis_cfg.level)
    propagation = davis.PropagationConfig(davis_cfg.n_context, davis_cfg.top_k, davis_cfg.radius,
                                          davis_cfg.temperature)
    results["davis"] = protocols.evaluate_davis(davis_root, feature_fn, propagation, davis_cfg.resolution,
                                                davis_cfg.split_file or None, davis_max_frames)
    print(protocols.format_davis_table(results["davis"]), flush=True)
  probe_cfg = cfg.probe
  probe = probes.ProbeConfig(probe_cfg.steps, probe_cfg.learning_rate, probe_cfg.weight_decay,
                             probe_cfg.batch_size)
  if "classify" in tasks:
    if not classify or not all(classify):
      raise ValueError("--tasks classify needs --classify_train and --classify_test folders")
    results["classify"] = protocols.run_classification_probe(
        model, variables, ImageFolder(classify[0]), ImageFolder(classify[1]), probe_cfg.classify_size, probe)
    print(f"linear classification top-1: {100 * results['classify']['top1']:.2f} %", flush=True)
  if "segment" in tasks:
    if not segment_root:
      raise ValueError("--tasks segment needs --segment_root (a VOC-layout folder)")
    results["segment"] = protocols.run_segmentation_probe(
        model, variables, SegmentationFolder(segment_root, "train"), SegmentationFolder(segment_root, "val"),
        probe_cfg.segment_size, probe_cfg.segment_level, probe_cfg.num_classes, probe)
    print(f"linear segmentation mIoU: {100 * results['segment']['miou']:.2f} %", flush=True)
  out = out or os.path.join(workdir, "eval_protocols.json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(results, f, indent=2)
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from mcjepa_jax.console import quiet_logging  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.inference import ModelLoadError  # pylint: disable=g-import-not-at-top
  quiet_logging()
  try:
    run(_CONFIG.value, _WORKDIR.value, _DATA_ROOT.value, _TASKS.value, _MODE.value, _MAX_PAIRS.value,
        _DAVIS_FRAMES.value, _BASELINE.value, (_CLASSIFY_TRAIN.value, _CLASSIFY_TEST.value), _SEGMENT_ROOT.value,
        _OUT.value, _COARSE.value)
  except (ModelLoadError, FileNotFoundError, ValueError) as e:
    raise SystemExit(f"evaluate: {e}") from None


if __name__ == "__main__":
  app.run(main)
