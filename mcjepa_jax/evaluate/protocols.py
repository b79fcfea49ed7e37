"""The paper's evaluation protocols on real datasets (DESIGN.md 6): flow benchmarks and DAVIS.

Flow: EPE and Fl-all over valid pixels for every configured dataset (for
Sintel also EPE on matched = non-occluded and unmatched = occluded pixels),
next to the zero-flow baseline. DAVIS: label propagation with the frozen
encoder's stride-8 features, J, F and J&F per sequence and their mean, next
to the trivial baseline that repeats the first mask.
"""

import jax
import numpy as np

from mcjepa_jax.data.datasets import Sintel, make_flow_source
from mcjepa_jax.evaluate import davis
from mcjepa_jax.evaluate.flow_eval import evaluate_pairs, pad_to_multiple


def evaluate_flow_source(source, predictor, variables, multiple, mode="pad", max_pairs=None, margin=0,
                         fill_predictor=None, coarse_factor=1):
  """Mean per-pair EPE / Fl-all (and Sintel matched/unmatched EPE) of one source with ground truth.

  `predictor=None` evaluates the zero flow; `mode` and `margin` as `flow_eval.to_stride_grid`;
  `fill_predictor` and `coarse_factor` as `flow_eval.evaluate_pairs`.
  """
  def pairs():
    for index in range(len(source) if max_pairs is None else min(max_pairs, len(source))):
      sample = source[index]
      valid, regions = sample["valid"], {}
      if isinstance(source, Sintel):
        occluded, invalid = source.masks(index)
        if invalid is not None:  # the release marks pixels its flow does not describe
          valid = ~invalid if valid is None else valid & ~invalid
        if occluded is not None:
          usable = np.ones_like(occluded) if invalid is None else ~invalid
          regions = {"matched": usable & ~occluded, "unmatched": usable & occluded}
      yield sample["frame1"], sample["frame2"], sample["flow"], valid, regions

  return evaluate_pairs(predictor, variables, pairs(), multiple, mode, margin, fill_predictor, coarse_factor)[0]


def evaluate_flow_sets(specs, predictor, variables, multiple, mode="pad", max_pairs=None, margin=0,
                       fill_predictor=None, coarse_factor=1):
  """{name: row} for config entries dict(name=..., root=..., [label=...], [constructor arguments])."""
  rows = {}
  for spec in specs:
    spec = dict(spec)
    label = spec.pop("label", None) or spec["name"]
    rows[label] = evaluate_flow_source(make_flow_source(spec), predictor, variables, multiple, mode, max_pairs,
                                        margin, fill_predictor, coarse_factor)
  return rows


def make_feature_fn(model, variables, level):
  """[H, W, 3] frame -> [H/2^level, W/2^level, C] frozen encoder features (frames padded to the stride)."""
  extract = jax.jit(lambda v, x: model.apply(v, x, method=model.features)[0][level - 1])
  stride = model.encoder.total_stride

  def features(frame):
    padded, (height, width) = pad_to_multiple(np.asarray(frame)[None], stride)
    out = np.asarray(extract(variables, padded))[0]
    cells = 2**level
    return out[:-(-height // cells), :-(-width // cells)]

  return features


def evaluate_davis(root, feature_fn, cfg=davis.PropagationConfig(), resolution="480p", split_file=None,
                   max_frames=None, sequences=None):
  """J, F, J&F per sequence and their means, for label propagation and for repeating the first mask.

  `feature_fn=None` evaluates only the repeated-first-mask baseline.
  """
  from mcjepa_jax.console import Progress  # pylint: disable=g-import-not-at-top
  names = sequences or davis.davis_sequences(root, resolution, split_file)
  per_sequence = {}
  progress = Progress(len(names), "DAVIS sequences", every_s=0.0)
  for done, name in enumerate(names, 1):
    frames, masks = davis.load_sequence(root, name, resolution, max_frames)
    row = {"frames": len(frames),
           "first_mask": davis.sequence_scores(np.repeat(masks[:1], len(masks), axis=0), masks)}
    if feature_fn is not None:
      features = np.stack([feature_fn(frame) for frame in frames])
      row["propagation"] = davis.sequence_scores(davis.segment_video(features, masks[0], cfg), masks)
    per_sequence[name] = row
    score = row.get("propagation", row["first_mask"])["J&F"]
    progress.update(done, f"  {name}: J&F {score:.3f}")
  methods = [m for m in ("propagation", "first_mask") if m in next(iter(per_sequence.values()))]
  means = {m: {k: float(np.mean([r[m][k] for r in per_sequence.values()])) for k in ("J", "F", "J&F")}
           for m in methods}
  return {"sequences": per_sequence, "mean": means}


def format_flow_table(rows, baseline=False):
  """The flow results as a table; `baseline`: only the zero-flow columns mean anything."""
  lines = [f"{'dataset':<28}{'pairs':>6}{'EPE':>9}{'Fl-all':>9}{'zero EPE':>10}{'zero Fl':>9}"]
  for name, row in rows.items():
    model = f"{'-':>9}{'-':>9}" if baseline else f"{row['epe']:>9.3f}{100 * row['fl']:>8.2f}%"
    lines.append(f"{name:<28}{row['pairs']:>6}{model}{row['zero_epe']:>10.3f}{100 * row['zero_fl']:>8.2f}%")
    if "epe_matched" in row and not baseline:
      lines.append(f"{'  matched / unmatched EPE':<34}{row['epe_matched']:>9.3f} / {row['epe_unmatched']:.3f}")
    if "epe_filled" in row:
      lines.append(f"{'  occlusions filled: EPE':<34}{row['epe_filled']:>9.3f}  slope {row['slope_filled']:.3f}")
  return "\n".join(lines)


def format_davis_table(result):
  lines = [f"{'DAVIS':<22}{'method':<14}{'J':>8}{'F':>8}{'J&F':>8}"]
  for name, row in list(result["sequences"].items()) + [("mean", None)]:
    scores = result["mean"] if row is None else {k: v for k, v in row.items() if k != "frames"}
    for method, s in scores.items():
      lines.append(f"{name:<22}{method:<14}{s['J']:>8.3f}{s['F']:>8.3f}{s['J&F']:>8.3f}")
  return "\n".join(lines)


KNOWN_RELEASES = ("Sintel/training", "KITTI/training/flow_occ", "data_scene_flow/training/flow_occ",
                  "data_stereo_flow/training/flow_occ", "FlyingChairs_release", "middlebury/other-gt-flow",
                  "DAVIS")


def standard_flow_sets(root):
  """Flow evaluation entries for the release folders found under `root` (Sintel/, KITTI/, FlyingChairs_release/)."""
  import os  # pylint: disable=g-import-not-at-top
  specs = []
  if os.path.isdir(os.path.join(root, "Sintel", "training")):
    specs += [{"name": "sintel", "root": os.path.join(root, "Sintel"), "render": r, "label": f"sintel_{r}"}
              for r in ("clean", "final") if os.path.isdir(os.path.join(root, "Sintel", "training", r))]
  for kitti in ("KITTI", "data_scene_flow", "data_stereo_flow"):
    training = os.path.join(root, kitti, "training")
    if os.path.isdir(os.path.join(training, "flow_occ")):
      # 2015 keeps its frames in image_2/, 2012 in colored_0/.
      for version, images in ((2015, "image_2"), (2012, "colored_0")):
        if os.path.isdir(os.path.join(training, images)):
          specs.append({"name": "kitti", "root": os.path.join(root, kitti), "version": version,
                        "label": f"kitti{version}"})
  for middlebury in ("middlebury", "Middlebury"):
    if os.path.isdir(os.path.join(root, middlebury, "other-gt-flow")):
      specs.append({"name": "middlebury", "root": os.path.join(root, middlebury), "label": "middlebury"})
      break
  chairs = os.path.join(root, "FlyingChairs_release")
  if os.path.isdir(chairs):
    has_split = os.path.exists(os.path.join(chairs, "FlyingChairs_train_val.txt"))
    specs.append({"name": "flyingchairs", "root": chairs, "split": "val" if has_split else "all",
                  "label": "flyingchairs_val" if has_split else "flyingchairs"})
  return specs


def _resized_images(source, size):
  """All images of a source resized to size x size: [N, size, size, 3]."""
  return np.stack([np.asarray(jax.image.resize(source[i]["frame1"], (size, size, 3), "bilinear"))
                   for i in range(len(source))])


def _resized_masks(source, size):
  """All masks of a source at size x size by nearest neighbour: [N, size, size]."""
  from mcjepa_jax.evaluate.probes import nearest_labels  # pylint: disable=g-import-not-at-top
  return np.concatenate([nearest_labels(source[i]["mask"][None], (size, size)) for i in range(len(source))])


def run_classification_probe(model, variables, train_source, test_source, size, cfg):
  """Linear classification on pooled frozen features of two labelled image sources (folder or TFDS)."""
  from mcjepa_jax.evaluate import probes  # pylint: disable=g-import-not-at-top
  train_labels = np.asarray([train_source[i]["label"] for i in range(len(train_source))])
  test_labels = np.asarray([test_source[i]["label"] for i in range(len(test_source))])
  train = probes.extract_features(model, variables, _resized_images(train_source, size))
  test = probes.extract_features(model, variables, _resized_images(test_source, size))
  num_classes = int(max(train_labels.max(), test_labels.max())) + 1
  return probes.classification_probe(train, train_labels, test, test_labels, num_classes, cfg)


def run_segmentation_probe(model, variables, train_source, test_source, size, level, num_classes, cfg):
  """Per-pixel linear segmentation on frozen level-`level` features of two SegmentationFolder sources."""
  from mcjepa_jax.evaluate import probes  # pylint: disable=g-import-not-at-top
  train = probes.extract_features(model, variables, _resized_images(train_source, size), level)
  test = probes.extract_features(model, variables, _resized_images(test_source, size), level)
  return probes.segmentation_probe(train, _resized_masks(train_source, size), test,
                                   _resized_masks(test_source, size), num_classes, cfg)
