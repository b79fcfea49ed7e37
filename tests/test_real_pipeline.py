"""Training input from real release folders (data.name = "real"), and content images from TFDS."""

import numpy as np
import pytest

from mcjepa_jax.data.pipeline import TrainInput, make_sources


def test_real_mixture_feeds_training_batches(tiny_config, shared_data):
  config = tiny_config.copy_and_resolve_references()
  data = config.data
  data.name = "real"
  data.flow_sets = [
      dict(name="sintel", root=str(shared_data / "Sintel"), render="final", with_flow=False, repeat=2),
      dict(name="flyingchairs", root=str(shared_data / "FlyingChairs_release"), split="all", repeat=1),
      dict(name="frames", root=str(shared_data / "video" / "tree.avi"), repeat=1)]
  data.image_set = dict(name="folder", root=str(shared_data / "DAVIS" / "JPEGImages" / "480p"))
  pairs, images = make_sources(data, seed=0)
  assert len(pairs) == 2 * 3 + 9 + 67 and len(images) > 100
  batch = next(TrainInput(config, seed=0))
  assert batch["frames1"].shape == (2, 64, 64, 3) and batch["views1"].shape == (8, 64, 64, 3)
  assert 0.0 <= batch["frames1"].min() and batch["frames1"].max() <= 1.0


def test_upscales_frames_smaller_than_the_crop(tiny_config):
  from mcjepa_jax.data.augment import augment_pair
  cfg = tiny_config.data.pairs.copy_and_resolve_references()
  cfg.jitter_prob = 0.0
  frame = np.random.default_rng(0).uniform(size=(40, 100, 3)).astype(np.float32)
  flow = np.ones((40, 100, 2), np.float32)
  out = augment_pair(np.random.default_rng(1), {"frame1": frame, "frame2": frame, "flow": flow}, cfg)
  assert out["frame1"].shape == (64, 64, 3)
  np.testing.assert_allclose(out["flow"], 1.6, rtol=1e-5)  # scaled with the image (64 / 40)


def test_empty_flow_sets_and_unknown_names_are_config_errors(tiny_config):
  data = tiny_config.data.copy_and_resolve_references()
  data.name = "real"
  with pytest.raises(ValueError, match="flow_sets is empty"):
    make_sources(data, 0)
  data.name = "imagenet"
  with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
    make_sources(data, 0)


def test_tfds_image_source_reads_a_data_source():
  import tensorflow_datasets as tfds
  from mcjepa_jax.data.datasets import make_image_source
  with tfds.testing.mock_data(num_examples=5):
    source = make_image_source({"name": "imagenet2012", "data_dir": "", "split": "train"})
    sample = source[3]
  assert len(source) == 5 and sample["frame1"].ndim == 3 and sample["frame1"].shape[-1] == 3
  assert sample["frame1"].dtype == np.float32 and 0 <= sample["frame1"].max() <= 1
