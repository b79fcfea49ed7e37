"""Export a trained MC-JEPA: its variables as an Orbax checkpoint, with the model config and metadata.

  python -m mcjepa_jax.export --workdir W --out DIR [--parts encoder,flow_head,...] [--config C]

Parts: encoder, flow_head, and the content head (expander for VICReg; predictor and
target_encoder, the EMA encoder, for I-JEPA); all that the model has by default.

DIR/variables/ holds {"params", "batch_stats"} of the chosen parts (no
optimizer state), DIR/config.json the model config and DIR/metadata.json the
training step, the run's evaluation results, parameter counts per part, the
input convention and the package version. `mcjepa_jax.load_pretrained(DIR)`
reads it back on any device count. Local and gs:// paths both work; on a
multi-host run every process calls `export_variables` (Orbax writes the
shards together) and process 0 alone writes the JSON files.
"""

from mcjepa_jax.console import quiet_environment

quiet_environment()  # before any import that may load TensorFlow

import datetime
import json

import jax
from absl import app, flags

from mcjepa_jax import __version__
from mcjepa_jax.inference import (CONFIG_FILE, EXPORT_FORMAT, EXPORT_KIND, METADATA_FILE, PARTS, VARIABLES_DIR,
                                  ModelLoadError, as_path, select_parts, load_model)
from mcjepa_jax.models.params import count_params


def export_variables(out, model, model_config, variables, parts=None, step=None, evaluation=None):
  """Writes an export of `variables` (any sharding) to `out`; returns the metadata dict.

  Args:
    out: destination folder (local or gs://); must not hold anything yet.
    model: the flax Module (for the input convention).
    model_config: its `config.model` ConfigDict.
    variables: {"params", "batch_stats"} of the full model.
    parts: which of `PARTS` to include (default: every part `variables` has).
    step: training step the variables come from.
    evaluation: evaluation results to record (e.g. the run's eval.json).

  The JSON files are written after the variables, metadata.json last: a
  folder without it is an interrupted export, which `load_pretrained` refuses.
  """
  parts = tuple(p for p in PARTS if p in variables["params"]) if parts is None else tuple(parts)
  unknown = [p for p in parts if p not in PARTS]
  if unknown or not parts:
    raise ValueError(f"--parts: unknown or empty {unknown or list(parts)} (known: {','.join(PARTS)})")
  absent = [p for p in parts if p not in variables["params"]]
  if absent:
    raise ValueError(f"--parts: the model has no {absent} to export (it has {sorted(variables['params'])})")
  root = as_path(out)
  if root.exists() and any(root.iterdir()):
    raise FileExistsError(f"{root}: already exists and is not empty; choose a new --out (nothing was written)")
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  selected = select_parts(variables, parts)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(root / VARIABLES_DIR, selected)
  checkpointer.wait_until_finished()
  metadata = {
      "kind": EXPORT_KIND,
      "format": EXPORT_FORMAT,
      "package_version": __version__,
      "jax_version": jax.__version__,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "step": step,
      "parts": list(parts),
      "parameters": {p: count_params(selected["params"][p]) for p in parts},
      "input": {"range": [0.0, 1.0], "channels": "RGB", "pixel_mean": list(model.pixel_mean),
                "pixel_std": list(model.pixel_std), "size_multiple": model.encoder.total_stride,
                "note": "frames of other sizes are padded or resized by mcjepa_jax.predict_flow"},
      "evaluation": evaluation,
  }
  if jax.process_index() == 0:
    (root / CONFIG_FILE).write_text(model_config.to_json_best_effort(indent=2))
    (root / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
  return metadata


def export_run(workdir, out, parts=None, config=None):
  """Exports the newest checkpoint of a training workdir (or re-exports an export, e.g. with fewer parts)."""
  loaded = load_model(workdir, config)
  return export_variables(out, loaded.model, loaded.model_config, loaded.variables, parts, loaded.step,
                          loaded.evaluation)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from mcjepa_jax.console import quiet_logging  # pylint: disable=g-import-not-at-top
  quiet_logging()
  args = flags.FLAGS
  try:
    metadata = export_run(args.workdir, args.out, args.parts, args.config)
  except (ModelLoadError, ValueError, FileExistsError) as e:
    raise SystemExit(f"export: {e}") from None
  counts = ", ".join(f"{k} {v:,}" for k, v in metadata["parameters"].items())
  print(f"exported step {metadata['step']} to {args.out} ({counts} parameters)")


def _define_flags():
  # Defined only when run as a program: the evaluation command line, imported beside this
  # module in the same process, has flags of the same names.
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "Training workdir (or an export) to export from.")
  flags.DEFINE_string("out", None, "Destination folder (new or empty; local or gs://).")
  flags.DEFINE_list("parts", None, f"Model parts to include, of {','.join(PARTS)} (default: all the model has).")
  config_flags.DEFINE_config_file("config", None, "Training config, for workdirs without config.json.")
  flags.mark_flags_as_required(["workdir", "out"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
