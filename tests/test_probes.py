"""Linear probes: metrics against hand computations, the probe on features with known structure, and
feature extraction from the model."""

import os

import jax
import numpy as np
import pytest
from scipy import ndimage

from mcjepa_jax.evaluate import probes

FAST = probes.ProbeConfig(steps=200, learning_rate=5e-2, batch_size=128)


def test_confusion_and_mean_iou_hand_case():
  gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
  pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]])
  confusion = probes.confusion_matrix(pred, gt, 3)
  np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 3, 0], [1, 0, 1]])
  # IoU: class 0: 1 / (1+1+1) ; class 1: 3 / (3+1+0) ; class 2: 1 / (1+0+1)
  assert probes.mean_iou(confusion) == pytest.approx(np.mean([1 / 3, 3 / 4, 1 / 2]))


def test_classification_probe_learns_separable_features_and_not_noise():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, size=600)
  features = np.eye(4)[labels] @ rng.normal(size=(4, 32)) + 0.3 * rng.normal(size=(600, 32))
  result = probes.classification_probe(features[:400], labels[:400], features[400:], labels[400:], 4, FAST)
  assert result["top1"] > 0.95
  shuffled = rng.permutation(labels)
  chance = probes.classification_probe(features[:400], shuffled[:400], features[400:], shuffled[400:], 4, FAST)
  assert chance["top1"] < 0.45


def test_segmentation_probe_on_real_masks(shared_data):
  from mcjepa_jax.evaluate.davis import load_sequence
  _, masks = load_sequence(str(shared_data / "DAVIS"), "blackswan", max_frames=6)
  rng = np.random.default_rng(1)
  # Features: the object mask at stride 8 plus noise; a linear probe must recover the masks.
  cells = np.stack([ndimage.zoom(m.astype(np.float32), 1 / 8, order=1) for m in masks])
  features = np.stack([cells, 1 - cells], -1) @ rng.normal(size=(2, 16)) + 0.05 * rng.normal(
      size=(*cells.shape, 16))
  result = probes.segmentation_probe(features[:4], masks[:4], features[4:], masks[4:], 2, FAST)
  pred_iou = result["miou"]
  assert pred_iou > 0.8 and result["pixel_accuracy"] > 0.95
  constant = probes.mean_iou(probes.confusion_matrix(np.zeros_like(masks[4:]), masks[4:], 2))
  assert pred_iou > constant + 0.3


@pytest.mark.parametrize("encoder", ["convnext", "vit"])
def test_extract_features_shapes(tiny_config, encoder):
  """Pooled and dense features for the probes, and DAVIS's per-frame features at the config's level."""
  from mcjepa_jax.config_utils import load_config
  from mcjepa_jax.evaluate.protocols import make_feature_fn
  from mcjepa_jax.models import build_model
  from mcjepa_jax.models.params import init_variables
  config = tiny_config if encoder == "convnext" else load_config(
      os.path.join(os.path.dirname(__file__), "..", "configs", "vit_ijepa_demo.py"))
  model = build_model(config.model)
  images = np.random.default_rng(2).uniform(size=(3, 64, 64, 3)).astype(np.float32)
  variables = init_variables(model, jax.random.PRNGKey(0), images, images, images, images)
  pooled = probes.extract_features(model, variables, images, batch_size=2)
  dense = probes.extract_features(model, variables, images, level=3, batch_size=2)
  width = config.model.encoder.widths[-1] if encoder == "convnext" else config.model.encoder.width
  level3 = config.model.encoder.widths[0] if encoder == "convnext" else config.model.encoder.adapter_widths[0]
  assert pooled.shape == (3, width) and dense.shape == (3, 8, 8, level3)
  # DAVIS: a frame of any size, padded to the stride, features cropped back to its cells.
  level = config.eval.davis.level
  frame_features = make_feature_fn(model, variables, level)(images[0, :50, :40])
  assert frame_features.shape[:2] == (-(-50 // 2**level), -(-40 // 2**level))
