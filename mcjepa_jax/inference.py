"""A trained MC-JEPA in one call: load an export or a training run, predict flow, extract features.

  model, variables = mcjepa_jax.load_pretrained("exports/demo")      # or a training workdir
  flow = mcjepa_jax.predict_flow(model, variables, frame1, frame2)    # [H, W, 2] in pixels
  maps = mcjepa_jax.features(model, variables, images, level=3)       # [N, H/8, W/8, C]

Nothing here needs the training config, the data pipeline or an optimizer:
the model is rebuilt from the model config stored beside the weights, and
only the parameters (and BatchNorm statistics) are read, onto one device.
"""

import dataclasses
import json
import logging
import os
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from mcjepa_jax.evaluate.defaults import FLOW_MARGIN, OCCLUSION_FILL_COLOR_SIGMA
from mcjepa_jax.evaluate.flow_eval import make_flow_predictor, predict_flows, to_stride_grid
from mcjepa_jax.models import build_model
from mcjepa_jax.models.params import abstract_variables

# Bumped whenever the layout of an export changes in a way older readers cannot follow.
EXPORT_FORMAT = 1
EXPORT_KIND = "mcjepa_jax.export"
# "target_encoder": the EMA encoder of an I-JEPA run (TrainState.ema), an optional part.
PARTS = ("encoder", "flow_head", "expander", "predictor", "target_encoder")
TARGET_ENCODER = "target_encoder"
# What each use of a model needs from it.
_NEEDS = {"flow": ("encoder", "flow_head"), "features": ("encoder",), "embeddings": ("encoder", "expander")}
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
VARIABLES_DIR = "variables"


class ModelLoadError(ValueError):
  """A model folder that cannot be loaded: the message names the folder and what is wrong."""


def as_path(path):
  """An etils path; local paths made absolute (Orbax needs them so), bucket paths (gs://...) as given."""
  return epath.Path(path if "://" in str(path) else os.path.abspath(str(path)))


def abstract_model_variables(model):
  """Shapes and dtypes of every variable of `model` (no computation; independent of the image size),
  with the I-JEPA target encoder beside the encoder when the model has a predictor."""
  stride = model.encoder.total_stride
  shape = (1, stride, stride, 3)
  variables = abstract_variables(model, shape, shape)
  # A model without BatchNorm (no VICReg expander) has none; exports and the loaded
  # variables always hold the collection, empty or not.
  variables = {"params": dict(variables["params"]), "batch_stats": variables.get("batch_stats", {})}
  if model.content_objective == "ijepa":
    variables["params"][TARGET_ENCODER] = variables["params"]["encoder"]
  return variables


def single_device_targets(tree):
  """ShapeDtypeStructs of `tree` placed on the first local device: restore targets for any device count."""
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def select_parts(tree, parts):
  """{"params": ..., "batch_stats": ...} restricted to the top-level model parts named in `parts`."""
  return {collection: {k: v for k, v in values.items() if k in parts} for collection, values in tree.items()}


def _read_json(path, what):
  try:
    return json.loads(path.read_text())
  except FileNotFoundError:
    raise ModelLoadError(f"{path}: missing ({what})") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ModelLoadError(f"{path}: not valid JSON ({e})") from None


def is_export(path):
  """Whether `path` holds a complete export (metadata.json is written last)."""
  return (as_path(path) / METADATA_FILE).exists() and (as_path(path) / VARIABLES_DIR).exists()


@dataclasses.dataclass
class LoadedModel:
  """A model read from disk: the Module, its variables and where they came from."""
  model: Any
  variables: dict
  model_config: ml_collections.ConfigDict
  step: Optional[int]
  evaluation: Optional[dict]


def load_pretrained(path, config=None):
  """(model, variables) from an export (`mcjepa_jax.export`) or from a training workdir.

  Args:
    path: an export folder, or a training workdir (its newest restorable
      checkpoint is read; the model config comes from the `config.json` the
      training loop writes there).
    config: optional full training ConfigDict (or its `model` part) for
      workdirs written before `config.json` existed.

  Returns:
    (model, variables): a flax Module and {"params", "batch_stats"} holding
    the parts present, on the first local device. Put them on a mesh with
    `jax.device_put` for multi-device inference.

  Raises:
    ModelLoadError: the folder is empty, not a model, from an incompatible
      export format, or has a part missing.
  """
  loaded = load_model(path, config)
  return loaded.model, loaded.variables


def load_model(path, config=None):
  """`load_pretrained` with the model config, training step and recorded evaluation: a LoadedModel."""
  root = as_path(path)
  if not root.exists():
    raise ModelLoadError(f"{root}: no such folder")
  if is_export(root):
    return _load_export(root)
  if (root / "checkpoints").exists():
    return _load_workdir(root, config)
  contents = sorted(p.name for p in root.iterdir()) if root.is_dir() else None
  raise ModelLoadError(
      f"{root}: neither an export (config.json, metadata.json, variables/) nor a training workdir "
      f"(checkpoints/); it holds {contents if contents else 'nothing'}")


def _load_export(root):
  metadata = _read_json(root / METADATA_FILE, "export metadata")
  if metadata.get("kind") != EXPORT_KIND:
    raise ModelLoadError(f"{root / METADATA_FILE}: not an mcjepa_jax export (kind {metadata.get('kind')!r})")
  version = metadata.get("format")
  if version != EXPORT_FORMAT:
    raise ModelLoadError(
        f"{root}: export format {version} (written by mcjepa_jax {metadata.get('package_version')}); this "
        f"version reads format {EXPORT_FORMAT}. Re-export the training run with this version.")
  model_config = ml_collections.ConfigDict(_read_json(root / CONFIG_FILE, "the export's model config"))
  model = build_model(model_config)
  parts = tuple(metadata.get("parts", ()))
  unknown = set(parts) - set(PARTS)
  if unknown or not parts:
    raise ModelLoadError(f"{root / METADATA_FILE}: parts {sorted(unknown) or '[]'} (known: {list(PARTS)})")
  target = single_device_targets(select_parts(abstract_model_variables(model), parts))
  try:
    variables = ocp.StandardCheckpointer().restore(root / VARIABLES_DIR, target)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).splitlines()[0] if str(e) else ""
    raise ModelLoadError(f"{root / VARIABLES_DIR}: cannot restore the parts {list(parts)} of this model "
                         f"config ({type(e).__name__}: {first}); the export is damaged or incomplete") from None
  return LoadedModel(model, variables, model_config, metadata.get("step"), metadata.get("evaluation"))


def _load_workdir(root, config):
  if config is not None:
    model_config = config.model if "model" in config else config
  elif (root / CONFIG_FILE).exists():
    saved = _read_json(root / CONFIG_FILE, "training config")
    model_config = ml_collections.ConfigDict(saved["model"] if "model" in saved else saved)
  else:
    raise ModelLoadError(f"{root}: a training workdir without {CONFIG_FILE}; pass the config it was trained "
                         "with (--config on the command line, config= in Python)")
  model = build_model(model_config)
  target = single_device_targets(abstract_model_variables(model))
  variables, step = restore_variables(root, target)
  evaluation = json.loads((root / "eval.json").read_text()) if (root / "eval.json").exists() else None
  return LoadedModel(model, variables, model_config, step, evaluation)


def restore_variables(workdir, target):
  """(variables, step) from the newest checkpoint of a training workdir that restores into `target`.

  Reads only params and batch statistics of the train state (no optimizer
  state), and the EMA target encoder as params["target_encoder"] when
  `target` has one. Unreadable checkpoints are reported and the next older one is
  tried; nothing is deleted.

  Raises:
    ModelLoadError: no checkpoint, or none restores into `target`.
  """
  directory = as_path(workdir) / "checkpoints"
  options = ocp.CheckpointManagerOptions(create=False)
  if TARGET_ENCODER in target["params"]:
    params = dict(target["params"])
    target = dict(target, params=params, ema=params.pop(TARGET_ENCODER))
  failures = []
  with ocp.CheckpointManager(directory, options=options) as manager:
    steps = sorted(manager.all_steps(), reverse=True)
    for step in steps:
      try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                         restore_args=ocp.checkpoint_utils.construct_restore_args(target))))
      except Exception as e:  # pylint: disable=broad-except
        first = str(e).splitlines()[0] if str(e) else ""
        logging.warning("checkpoint %s/%d is unreadable (%s: %s); trying an older one", directory, step,
                        type(e).__name__, first)
        failures.append(f"{directory}/{step}: {type(e).__name__}: {first}")
        continue
      state = restored["state"]
      params = dict(state["params"])
      if "ema" in state:
        params[TARGET_ENCODER] = state["ema"]
      return {"params": params, "batch_stats": state.get("batch_stats", {})}, step
  if not steps:
    raise ModelLoadError(f"{directory}: no checkpoint (train first)")
  raise ModelLoadError(f"none of the checkpoints in {directory} restores into this model config (was it "
                       "trained with another one?):\n" + "\n".join(failures))


def check_parts(variables, use):
  """Raises ModelLoadError if `variables` lack a part that `use` ("flow", "features", "embeddings") needs."""
  present = set(variables.get("params", {}))
  missing = [p for p in _NEEDS[use] if p not in present]
  if missing:
    raise ModelLoadError(f"{use} needs the model parts {list(_NEEDS[use])}, but {missing} were not exported "
                         f"(re-export with --parts {','.join(_NEEDS[use])})")


def as_float_images(images, what="images"):
  """uint8 [0, 255] or float [0, 1] images [..., H, W, 3] -> float32 in [0, 1]."""
  images = np.asarray(images)
  if images.ndim < 3 or images.shape[-1] != 3:
    raise ValueError(f"{what} have shape {images.shape}: expected [..., H, W, 3] RGB")
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  if images.dtype == np.uint16:
    return images.astype(np.float32) / 65535.0
  return images.astype(np.float32)


def _flow_fn(model, fill_radius, fill_color_sigma):
  return _compiled(model, ("flow", fill_radius, fill_color_sigma),
                   lambda: make_flow_predictor(model, fill_radius, fill_color_sigma))


def _features_fn(model):
  return _compiled(model, "features", lambda: jax.jit(lambda v, x: model.apply(v, x, method=model.features)))


_COMPILED = {}


def _compiled(model, use, build):
  # One compiled function per (model, use): jit caches per shape after that, so a video's
  # frames compile once. Keyed by the model's hash (flax modules hash by their fields).
  key = (hash(model), use)
  if key not in _COMPILED:
    _COMPILED[key] = build()
  return _COMPILED[key]


def predict_flow(model, variables, frame1, frame2, mode="pad", margin=FLOW_MARGIN, fill_radius=0,
                 fill_color_sigma=OCCLUSION_FILL_COLOR_SIGMA, coarse_factor=1):
  """Forward optical flow from `frame1` to `frame2`, at the frames' own resolution.

  Args:
    model, variables: from `load_pretrained`.
    frame1, frame2: [H, W, 3] or [B, H, W, 3] RGB, uint8 or float in [0, 1],
      any size ("pad": edge-padded to the encoder's stride and cropped back;
      "resize": resized to the nearest multiple, flow resized and rescaled back).
    mode: "pad" or "resize".
    margin: pixels of edge replication around the frames, cropped off the flow
      (`evaluate.flow_eval.to_stride_grid`: the flow near the border shrinks less).
    fill_radius: > 0 replaces the flow of pixels that fail the forward-backward
      check by the colour-weighted flow of visible pixels within this radius
      (`ops.fill_occluded_flow`, `fill_color_sigma` in [0, 1] RGB units): a
      post-process, lower EPE on every measured set (docs/benchmarks.md table 13).
    coarse_factor: integer > 1 predicts first on frames downscaled by it, then
      the residual at full resolution (`evaluate.flow_eval.coarse_to_fine`):
      for motion much longer than the training pairs' (the demo model on
      FlyingChairs at full size: EPE 8.93 -> 4.48 with 4, docs/benchmarks.md table 14).

  Returns:
    numpy [H, W, 2] (or [B, H, W, 2]) flow (u, v) in pixels of the input frames.
  """
  check_parts(variables, "flow")
  frame1, frame2 = as_float_images(frame1, "frame1"), as_float_images(frame2, "frame2")
  if frame1.shape != frame2.shape:
    raise ValueError(f"frame1 and frame2 must have the same shape, got {frame1.shape} and {frame2.shape}")
  single = frame1.ndim == 3
  frames1, frames2 = (frame1[None], frame2[None]) if single else (frame1, frame2)
  flow = predict_flows(_flow_fn(model, fill_radius, fill_color_sigma), variables, frames1, frames2,
                       model.encoder.total_stride, mode, margin, coarse_factor)
  return flow[0] if single else flow


def features(model, variables, images, level=None, mode="pad"):
  """Frozen encoder features of images of any size.

  Args:
    model, variables: from `load_pretrained`.
    images: [H, W, 3] or [N, H, W, 3] RGB, uint8 or float in [0, 1].
    level: None for the pooled representation [N, D]; 1..6 for the pyramid
      level at stride 2^level, [N, ceil(H / 2^level), ceil(W / 2^level), C_l]
      (in "pad" mode the cells covering only padding are cropped off).
    mode: "pad" or "resize" (the map is then on the resized grid).

  Returns:
    numpy array (without the leading N for a single image).
  """
  check_parts(variables, "features")
  images = as_float_images(images)
  single = images.ndim == 3
  batch = images[None] if single else images
  levels = len(model.encoder.stem_widths) + len(model.encoder.depths)
  if level is not None and not 1 <= level <= levels:
    raise ValueError(f"level must be in 1..{levels} (or None for pooled features), got {level}")
  grid, _ = to_stride_grid(batch, model.encoder.total_stride, mode)
  pyramid, pooled = _features_fn(model)(variables, grid)
  if level is None:
    out = np.asarray(pooled)
  else:
    out = np.asarray(pyramid[level - 1])
    if mode == "pad":
      cells = 2**level
      out = out[:, :-(-batch.shape[1] // cells), :-(-batch.shape[2] // cells)]
  return out[0] if single else out
