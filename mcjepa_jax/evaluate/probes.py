"""Linear probes on frozen features (DESIGN.md 6): classification and per-pixel segmentation.

Features come from the frozen encoder; only a linear layer is trained (AdamW
on the cross-entropy, features standardised with training-set statistics).
Classification reads the pooled representation; segmentation reads one
pyramid level, predicts per feature cell, and is scored at the label
resolution after bilinear upsampling of the logits (mIoU over classes,
label 255 ignored as in VOC).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

IGNORE_LABEL = 255


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  steps: int = 500
  learning_rate: float = 1e-2
  weight_decay: float = 1e-4
  batch_size: int = 256
  seed: int = 0


# ---------------------------------------------------------------- features

def extract_features(model, variables, images, level=None, batch_size=32):
  """Frozen features of [N, H, W, 3] images in [0, 1] (H, W multiples of the encoder stride).

  Returns [N, D] pooled features (level None) or [N, H/2^level, W/2^level, C].
  """
  @jax.jit
  def apply(x):
    pyramid, pooled = model.apply(variables, x, method=model.features)
    return pooled if level is None else pyramid[level - 1]

  return np.concatenate([np.asarray(apply(jnp.asarray(images[i:i + batch_size])))
                         for i in range(0, len(images), batch_size)])


# ---------------------------------------------------------------- the linear layer

def _standardiser(features):
  flat = features.reshape(-1, features.shape[-1])
  mean, std = flat.mean(axis=0), flat.std(axis=0) + 1e-6
  return lambda x: (x - mean) / std


def train_linear(features, labels, num_classes, cfg=ProbeConfig()):
  """Fits logits = x W + b on [M, D] features and [M] int labels (IGNORE_LABEL rows are skipped).

  Returns a function [..., D] -> [..., num_classes] logits (features standardised inside).
  """
  standardise = _standardiser(features)
  keep = labels != IGNORE_LABEL
  x = jnp.asarray(standardise(features[keep]), jnp.float32)
  y = jnp.asarray(labels[keep], jnp.int32)
  if x.shape[0] == 0:
    raise ValueError("linear probe: no labelled training samples")
  params = {"w": jnp.zeros((x.shape[-1], num_classes)), "b": jnp.zeros((num_classes,))}
  optimizer = optax.adamw(optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps), weight_decay=cfg.weight_decay)
  opt_state = optimizer.init(params)

  def loss_fn(p, xb, yb):
    return optax.softmax_cross_entropy_with_integer_labels(xb @ p["w"] + p["b"], yb).mean()

  @jax.jit
  def step(p, state, key):
    index = jax.random.randint(key, (min(cfg.batch_size, x.shape[0]),), 0, x.shape[0])
    grads = jax.grad(loss_fn)(p, x[index], y[index])
    updates, state = optimizer.update(grads, state, p)
    return optax.apply_updates(p, updates), state

  key = jax.random.PRNGKey(cfg.seed)
  for i in range(cfg.steps):
    params, opt_state = step(params, opt_state, jax.random.fold_in(key, i))
  w, b = np.asarray(params["w"]), np.asarray(params["b"])
  return lambda feats: standardise(np.asarray(feats, np.float32)) @ w + b


# ---------------------------------------------------------------- metrics

def confusion_matrix(pred, gt, num_classes):
  """[K, K] counts, rows = ground truth, columns = prediction; IGNORE_LABEL pixels skipped."""
  pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
  keep = gt != IGNORE_LABEL
  return np.bincount(gt[keep] * num_classes + pred[keep], minlength=num_classes**2).reshape(num_classes,
                                                                                           num_classes)


def mean_iou(confusion):
  """Mean over classes present (in prediction or ground truth) of TP / (TP + FP + FN)."""
  tp = np.diag(confusion).astype(np.float64)
  union = confusion.sum(0) + confusion.sum(1) - tp
  present = union > 0
  return float(np.mean(tp[present] / union[present]))


# ---------------------------------------------------------------- probes

def classification_probe(train_features, train_labels, test_features, test_labels, num_classes,
                         cfg=ProbeConfig()):
  """Top-1 accuracy of a linear classifier on [N, D] pooled features."""
  predict = train_linear(train_features, np.asarray(train_labels), num_classes, cfg)
  predictions = np.argmax(predict(test_features), axis=-1)
  return {"top1": float(np.mean(predictions == np.asarray(test_labels))), "train": len(train_labels),
          "test": len(test_labels)}


def nearest_labels(masks, size):
  """Nearest-neighbour [N, H, W] labels at the feature grid [N, h, w] (cell centres)."""
  height, width = masks.shape[1:]
  ys = ((np.arange(size[0]) + 0.5) * height / size[0]).astype(int)
  xs = ((np.arange(size[1]) + 0.5) * width / size[1]).astype(int)
  return masks[:, ys][:, :, xs]


def segmentation_probe(train_features, train_masks, test_features, test_masks, num_classes, cfg=ProbeConfig()):
  """mIoU of a per-cell linear classifier on [N, h, w, C] features against [N, H, W] label maps."""
  size = train_features.shape[1:3]
  cells = nearest_labels(np.asarray(train_masks), size)
  predict = train_linear(train_features.reshape(-1, train_features.shape[-1]), cells.ravel(), num_classes, cfg)
  confusion = np.zeros((num_classes, num_classes), np.int64)
  for features, mask in zip(test_features, np.asarray(test_masks)):
    logits = predict(features)
    upsampled = jax.image.resize(jnp.asarray(logits), (*mask.shape, num_classes), "bilinear")
    confusion += confusion_matrix(np.argmax(np.asarray(upsampled), axis=-1), mask, num_classes)
  return {"miou": mean_iou(confusion), "pixel_accuracy": float(np.trace(confusion) / confusion.sum()),
          "train": len(train_features), "test": len(test_features)}
