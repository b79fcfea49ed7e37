"""The evaluation at the end of a training run: held-out generated pairs, real sample pairs, collapse check.

Flow EPE next to the zero-flow baseline and the least-squares slope on the
held-out generated pairs, on scikit-image's bundled Middlebury `motorcycle`
stereo pair (every install has it) and on the real samples of `shared/data`
when present (also coarse to fine, `eval.coarse_factor`); the std of the
content branch's embeddings (collapse check). Prints a table, writes eval.json
and one picture per real set (enlarged for display).
"""

import json

import jax
import jax.numpy as jnp
from etils import epath

from mcjepa_jax.data.pipeline import heldout_source, stack_samples
from mcjepa_jax.evaluate.defaults import coarse_factor, fill_predictor, flow_margin, occlusion_fill
from mcjepa_jax.evaluate.flow_eval import evaluate_pairs
from mcjepa_jax.evaluate.samples import default_data_root, load_pairs, motorcycle_pair, real_sample_sets, reduce_pair
from mcjepa_jax.evaluate.visualize import enlarge_for_display, flow_panel, save_png

MOTORCYCLE_REDUCTION = 8


def evaluate_run(config, model, variables, step, predictor, workdir):
  """Evaluates `variables` as `config.eval` says; returns the results dict (also WORKDIR/eval.json).

  Args:
    config: the training ConfigDict (data for the held-out pairs, eval for the real sets).
    model, variables: the flax Module and its {"params", "batch_stats"}.
    step: training step, recorded in the results.
    predictor: `flow_eval.make_flow_predictor(model)`.
    workdir: where eval.json and pictures/ go (the caller runs this on one process).
  """
  stride = model.encoder.total_stride
  margin = flow_margin(config.eval)
  filled = fill_predictor(model, config.eval)
  source = heldout_source(config.data, config.seed)
  heldout = [source[i] for i in range(len(source))]
  rows = {"generated_heldout": evaluate_pairs(
      predictor, variables, ((s["frame1"], s["frame2"], s["flow"], None) for s in heldout), stride,
      margin=margin, fill_predictor=filled)[0]}
  pictures = epath.Path(workdir) / "pictures"
  sets = {}  # row name -> (pairs(), coarse-to-fine factor)
  if config.eval.real_samples:
    sets[f"motorcycle_stereo_1/{MOTORCYCLE_REDUCTION}"] = (lambda: [motorcycle_pair(MOTORCYCLE_REDUCTION)], 1)
    root = config.eval.data_root or default_data_root()
    full_size = {name: lambda paths=paths: load_pairs(paths) for name, paths in
                 (real_sample_sets(root) if root else {}).items()}
    sets.update((name, (pairs, 1)) for name, pairs in full_size.items())
    reduction = config.eval.get("chairs_reduction", 0)
    if reduction and "flyingchairs" in full_size:
      chairs = full_size["flyingchairs"]
      sets[f"flyingchairs_1/{reduction}"] = (lambda: (reduce_pair(*pair, reduction) for pair in chairs()), 1)
    factor = coarse_factor(config.eval)
    if factor > 1:
      sets.update((f"{name}_from_1/{factor}", (pairs, factor)) for name, pairs in full_size.items())
  for name, (pairs, factor) in sets.items():
    rows[name], first = evaluate_pairs(predictor, variables, pairs(), stride, margin=margin, fill_predictor=filled,
                                       coarse_factor=factor)
    pictures.mkdir(parents=True, exist_ok=True)
    save_png(pictures / f"{name.replace('/', '_')}.png", enlarge_for_display(flow_panel(*first)))

  # Collapse check: per-dimension std over held-out images of what the content loss regularises.
  images = stack_samples(heldout)["frame1"]
  size = config.data.views.size
  images = jax.image.resize(jnp.asarray(images), (images.shape[0], size, size, 3), "bilinear")
  embeddings = jax.jit(lambda v, x: model.apply(v, x, method=model.embedding))(variables, images)
  embedding_std = float(jnp.mean(jnp.std(embeddings, axis=0)))

  results = {"step": int(step), "flow_margin": margin, "occlusion_fill": occlusion_fill(config.eval),
             "coarse_factor": coarse_factor(config.eval),
             "flow": rows, "embedding_std": embedding_std,
             "content_objective": model.content_objective}
  (epath.Path(workdir) / "eval.json").write_text(json.dumps(results, indent=2))
  print(format_table(results), flush=True)
  return results


def write_sample_frames(workdir):
  """Writes the full-size motorcycle pair to WORKDIR/samples/ (frames to try `infer` on); returns the paths."""
  from skimage import data  # pylint: disable=g-import-not-at-top
  folder = epath.Path(workdir) / "samples"
  folder.mkdir(parents=True, exist_ok=True)
  left, right, _ = data.stereo_motorcycle()
  paths = [folder / "motorcycle_left.png", folder / "motorcycle_right.png"]
  for path, image in zip(paths, (left, right)):
    save_png(path, image)
  return [str(p) for p in paths]


def format_table(results):
  """The evaluation results as a plain-text table."""
  filled = any("epe_filled" in row for row in results["flow"].values())
  lines = [f"Evaluation at step {results['step']}",
           f"{'dataset':<32}{'pairs':>6}{'EPE':>10}{'zero-flow EPE':>16}{'EPE/zero':>10}{'slope':>8}"
           + (f"{'| occlusions filled: EPE':>26}{'slope':>8}" if filled else "")]
  for name, row in results["flow"].items():
    line = (f"{name:<32}{row['pairs']:>6}{row['epe']:>10.3f}{row['zero_epe']:>16.3f}"
            f"{row['epe'] / row['zero_epe']:>10.2f}{row['slope']:>8.3f}")
    if "epe_filled" in row:
      line += f"{row['epe_filled']:>26.3f}{row['slope_filled']:>8.3f}"
    lines.append(line)
  # VICReg: the expander's output; I-JEPA: the encoder's pooled tokens. Near 0 means collapsed.
  what = {"ijepa": "I-JEPA encoder (pooled tokens)"}.get(results.get("content_objective"), "VICReg expander")
  lines.append(f"embedding std, {what} (collapse check, > 0.1 is healthy): {results['embedding_std']:.3f}")
  return "\n".join(lines)
