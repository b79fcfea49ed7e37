"""DAVIS video object segmentation by label propagation with frozen features (DESIGN.md 6).

Protocol of DINO / CRW: the first frame's object masks are given; every later
frame takes its labels from the k most similar feature-grid cells of a
context of frames (the first frame and the last `n_context` predictions),
restricted to a spatial neighbourhood. Scores: J (region IoU) and F
(boundary F-measure with the DAVIS tolerance), averaged over objects and
over frames except the first and the last, J&F = their mean.
"""

import dataclasses
import os

import numpy as np
from scipy import ndimage

from mcjepa_jax.data.formats import DataFormatError, read_image, read_mask

# DAVIS's boundary tolerance: a fraction of the image diagonal.
BOUNDARY_TOLERANCE = 0.008


# ---------------------------------------------------------------- metrics

def region_similarity(pred, gt):
  """J: IoU of two boolean masks [H, W]; 1 when both are empty."""
  pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
  union = np.logical_or(pred, gt).sum()
  return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def boundary_map(mask):
  """Boundary pixels of a boolean mask: where it differs from its right, lower or lower-right neighbour."""
  mask = np.asarray(mask, bool)
  edge = np.zeros_like(mask)
  edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
  edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
  edge[:-1, :-1] |= mask[:-1, :-1] != mask[1:, 1:]
  return edge


def boundary_f_measure(pred, gt, tolerance=BOUNDARY_TOLERANCE):
  """F: harmonic mean of boundary precision and recall, each boundary pixel matching within
  ceil(tolerance * image diagonal) pixels of the other boundary; 1 when both are empty."""
  pred_edge, gt_edge = boundary_map(pred), boundary_map(gt)
  if not pred_edge.any() and not gt_edge.any():
    return 1.0
  if not pred_edge.any() or not gt_edge.any():
    return 0.0
  radius = int(np.ceil(tolerance * np.hypot(*pred_edge.shape)))
  # Within `radius` of the other boundary = inside its dilation by a Euclidean disk; the distance
  # transform gives the same set in linear time (the dilation dominated a DAVIS evaluation).
  precision = (ndimage.distance_transform_edt(~gt_edge)[pred_edge] <= radius).mean()
  recall = (ndimage.distance_transform_edt(~pred_edge)[gt_edge] <= radius).mean()
  return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def sequence_scores(predictions, annotations):
  """J and F of one video: [T, H, W] predicted and ground-truth object ids (0 = background).

  Averages over objects (ids present in the first annotation) and over frames
  1..T-2 (DAVIS leaves out the given first frame and the last one).
  """
  predictions, annotations = np.asarray(predictions), np.asarray(annotations)
  if predictions.shape != annotations.shape:
    raise ValueError(f"predictions {predictions.shape} and annotations {annotations.shape} differ in shape")
  objects = [i for i in np.unique(annotations[0]) if i != 0]
  frames = range(1, len(annotations) - 1) if len(annotations) > 2 else range(len(annotations))
  j = [np.mean([region_similarity(predictions[t] == i, annotations[t] == i) for t in frames]) for i in objects]
  f = [np.mean([boundary_f_measure(predictions[t] == i, annotations[t] == i) for t in frames]) for i in objects]
  return {"J": float(np.mean(j)), "F": float(np.mean(f)), "J&F": float((np.mean(j) + np.mean(f)) / 2),
          "objects": len(objects)}


# ---------------------------------------------------------------- propagation

@dataclasses.dataclass(frozen=True)
class PropagationConfig:
  """Label propagation hyper-parameters (DINO's DAVIS settings)."""
  n_context: int = 7          # previous frames used besides the first
  top_k: int = 5              # neighbours kept per query cell
  radius: int = 12            # spatial neighbourhood, in feature-grid cells
  temperature: float = 0.07   # softmax temperature over the kept similarities


def propagate_labels(features, first_labels, num_classes, cfg=PropagationConfig()):
  """Label probabilities of every frame from the first frame's labels.

  Every cell of frame t takes the softmax(similarity / temperature)-weighted
  labels of its `top_k` most similar cells among the context frames (frame 0
  and the `n_context` previous ones), within `radius` cells. One compiled
  function per video size does a whole frame (the former numpy version, which
  spent most of a DAVIS evaluation in `argpartition`, is the reference in
  tests/test_davis.py).

  Args:
    features: [T, h, w, C] frame features (any scale; they are L2-normalised here).
    first_labels: [h, w, num_classes] label distribution of frame 0 at feature resolution.
    num_classes: number of labels (background included).
    cfg: `PropagationConfig`.

  Returns:
    [T, h, w, num_classes] probabilities; frame 0 is `first_labels`.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  features = jnp.asarray(features, jnp.float32)
  steps, height, width, _ = features.shape
  features = features / jnp.maximum(jnp.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
  slots = cfg.n_context + 1
  labels = np.zeros((steps, height, width, num_classes), np.float32)
  labels[0] = first_labels
  frame_fn = _propagation_fn(cfg.radius, cfg.top_k, cfg.temperature)
  for t in range(1, steps):
    context = [0] + list(range(max(1, t - cfg.n_context), t))
    valid = np.zeros(slots, bool)
    valid[:len(context)] = True
    context = context + [0] * (slots - len(context))  # padding slots, masked out by `valid`
    labels[t] = np.asarray(frame_fn(features[t], features[np.asarray(context)], jnp.asarray(labels[context]),
                                    jnp.asarray(valid)))
  return labels


_PROPAGATION_FNS = {}


def _propagation_fn(radius, top_k, temperature, chunk_rows=8):
  """jitted (query [h, w, C], context [n, h, w, C], labels [n, h, w, K], valid [n]) -> [h, w, K].

  Query rows go `chunk_rows` at a time (`lax.map`), each compared by one matrix product with the
  rows within `radius` of every context frame (masked to the square neighbourhood): matrix
  products beat a local correlation volume's (2r+1)^2 shifted slices here (0.9 s per 480p frame).
  """
  key = (radius, top_k, temperature, chunk_rows)
  if key in _PROPAGATION_FNS:
    return _PROPAGATION_FNS[key]
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def propagate(query, context, context_labels, valid):
    height, width, _ = query.shape
    num_classes = context_labels.shape[-1]
    chunks = -(-height // chunk_rows)
    pad_rows = chunks * chunk_rows - height
    # Rows padded so that every chunk sees `radius` key rows above and below (masked outside).
    query = jnp.pad(query, ((0, pad_rows), (0, 0), (0, 0)))
    keys = jnp.pad(context, ((0, 0), (radius, radius + pad_rows), (0, 0), (0, 0)))
    values = jnp.pad(context_labels, ((0, 0), (radius, radius + pad_rows), (0, 0), (0, 0)))
    window = chunk_rows + 2 * radius
    q_rows = np.arange(chunk_rows)[:, None, None, None, None]
    q_cols = np.arange(width)[None, :, None, None, None]
    k_rows = np.arange(window)[None, None, None, :, None] - radius      # relative to the chunk's first row
    k_cols = np.arange(width)[None, None, None, None, :]
    near = (np.abs(q_rows - k_rows) <= radius) & (np.abs(q_cols - k_cols) <= radius)
    slot_ok = valid[None, None, :, None, None]

    def chunk(r0):
      q = jax.lax.dynamic_slice_in_dim(query, r0, chunk_rows, axis=0)                     # [r, w, C]
      k = jax.lax.dynamic_slice_in_dim(keys, r0, window, axis=1)                          # [n, win, w, C]
      v = jax.lax.dynamic_slice_in_dim(values, r0, window, axis=1)                        # [n, win, w, K]
      absolute = r0 + k_rows
      inside = (absolute >= 0) & (absolute < height)
      similarity = jnp.einsum("rqc,nkwc->rqnkw", q, k, precision=jax.lax.Precision.HIGHEST)
      similarity = jnp.where(near & slot_ok & inside, similarity, -jnp.inf)
      top, index = jax.lax.top_k(similarity.reshape(chunk_rows * width, -1), top_k)
      weights = jax.nn.softmax(top / temperature, axis=-1)
      picked = v.reshape(-1, num_classes)[index]                                          # [q, k, K]
      return jnp.einsum("qk,qkc->qc", weights, picked).reshape(chunk_rows, width, num_classes)

    out = jax.lax.map(chunk, jnp.arange(chunks) * chunk_rows)
    return out.reshape(chunks * chunk_rows, width, num_classes)[:height]

  _PROPAGATION_FNS[key] = jax.jit(propagate)
  return _PROPAGATION_FNS[key]


def _downsample_labels(mask, num_classes, size):
  """[H, W] ids -> [h, w, num_classes] area-averaged one-hot."""
  one_hot = np.eye(num_classes, dtype=np.float32)[mask]
  zoom = (size[0] / mask.shape[0], size[1] / mask.shape[1], 1)
  return np.clip(ndimage.zoom(one_hot, zoom, order=1), 0, None)


def _upsample_to_ids(probs, size):
  """[h, w, K] probabilities -> [H, W] ids by bilinear upsampling then argmax."""
  zoom = (size[0] / probs.shape[0], size[1] / probs.shape[1], 1)
  return np.argmax(ndimage.zoom(probs, zoom, order=1), axis=-1).astype(np.int32)


def segment_video(features, first_mask, cfg=PropagationConfig()):
  """Predicted [T, H, W] object ids of a video given frame 0's mask.

  Args:
    features: [T, h, w, C] frozen features of the T frames (e.g. stride 8).
    first_mask: [H, W] int ids of frame 0.
  """
  features = np.asarray(features)
  num_classes = int(first_mask.max()) + 1
  first = _downsample_labels(first_mask, num_classes, features.shape[1:3])
  probs = propagate_labels(features, first, num_classes, cfg)
  size = first_mask.shape
  predictions = [np.asarray(first_mask, np.int32)]
  predictions += [_upsample_to_ids(p, size) for p in probs[1:]]
  return np.stack(predictions)


# ---------------------------------------------------------------- dataset

def davis_sequences(root, resolution="480p", split_file=None):
  """Sequence names under `root`/JPEGImages/<resolution>, or those listed in an ImageSets split file."""
  images = os.path.join(root, "JPEGImages", resolution)
  if not os.path.isdir(images):
    raise DataFormatError(f"{images}: DAVIS frames folder not found (expected DAVIS/JPEGImages/{resolution})")
  if split_file:
    with open(split_file) as f:
      return [line.strip() for line in f if line.strip()]
  return sorted(d for d in os.listdir(images) if os.path.isdir(os.path.join(images, d)))


def load_sequence(root, name, resolution="480p", max_frames=None):
  """(frames [T, H, W, 3] float32, masks [T, H, W] int32) of one DAVIS sequence.

  DAVIS 2016 masks are binary 0/255, DAVIS 2017 masks palette object ids;
  `read_mask` returns ids for both.
  """
  image_dir = os.path.join(root, "JPEGImages", resolution, name)
  mask_dir = os.path.join(root, "Annotations", resolution, name)
  stems = sorted(os.path.splitext(f)[0] for f in os.listdir(image_dir) if f.endswith(".jpg"))
  if max_frames:
    stems = stems[:max_frames]
  frames, masks = [], []
  for stem in stems:
    frame = read_image(os.path.join(image_dir, stem + ".jpg"))
    mask = read_mask(os.path.join(mask_dir, stem + ".png"))
    if mask.shape != frame.shape[:2]:
      raise DataFormatError(f"{os.path.join(mask_dir, stem + '.png')}: mask is {mask.shape}, frame is "
                            f"{frame.shape[:2]}")
    frames.append(frame)
    masks.append(mask)
  return np.stack(frames), np.stack(masks)
