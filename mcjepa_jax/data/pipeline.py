"""grain input pipelines: one batch of video pairs and one of two-view images per step (DESIGN.md 1, 5).

Every element's randomness comes from grain's per-index Generator, so a
pipeline is a pure function of (config, seed, position): two runs with one
seed yield identical batches, and a restored iterator state resumes with the
exact next batch. Each process reads only its own slice of the sources.
"""

import grain
import numpy as np

from mcjepa_jax.data.augment import augment_pair, augment_view
from mcjepa_jax.data.datasets import make_flow_mixture, make_image_source
from mcjepa_jax.data.synthetic import SyntheticChairs

# Seed offsets that keep the sources independent: pairs, content images, held-out pairs.
_PAIR_STREAM, _IMAGE_STREAM, _EVAL_STREAM = 0, 1, 2


def make_sources(data_cfg, seed):
  """(pair source, image source) for `config.data`; items are dicts with "frame1" (and "frame2" for pairs).

  data.name "synthetic": the embedded generated dataset. "real": pairs from the
  mixture `data.flow_sets` (see data/datasets.py) and content images from
  `data.image_set` (an ImageNet TFDS directory or a folder of images).
  """
  if data_cfg.name == "synthetic":
    pairs = SyntheticChairs(data_cfg.source_size, data_cfg.num_train, seed=seed * 10 + _PAIR_STREAM)
    images = SyntheticChairs(data_cfg.source_size, data_cfg.num_train, seed=seed * 10 + _IMAGE_STREAM,
                             single_frame=True)
    return pairs, images
  if data_cfg.name == "real":
    if not data_cfg.get("flow_sets"):
      raise ValueError("config.data.flow_sets is empty: list the flow datasets to train on (see configs/)")
    return make_flow_mixture(data_cfg.flow_sets), make_image_source(data_cfg.image_set)
  raise ValueError(f"config.data.name: unknown dataset {data_cfg.name!r} (known: 'synthetic', 'real')")


def heldout_source(data_cfg, seed):
  """Generated pairs never seen in training, at the training crop size, for EPE evaluation."""
  return SyntheticChairs(tuple(data_cfg.pairs.crop), data_cfg.num_eval, seed=seed * 10 + _EVAL_STREAM)


def _pair_transform(cfg):
  def transform(sample, rng):
    out = augment_pair(rng, {"frame1": sample["frame1"], "frame2": sample["frame2"]}, cfg)
    out["frames1"], out["frames2"] = out.pop("frame1"), out.pop("frame2")
    return out
  return transform


def _view_transform(cfg):
  def transform(sample, rng):
    image = sample["frame1"]
    return {"views1": augment_view(rng, image, cfg, cfg.blur_probs[0], cfg.solarize_probs[0]),
            "views2": augment_view(rng, image, cfg, cfg.blur_probs[1], cfg.solarize_probs[1])}
  return transform


def _batched(source, transform, local_batch_size, seed, process_index, process_count, num_threads):
  """Process `process_index`'s batches: its contiguous block of each global batch.

  The augmentation seed of an element comes from its global position and
  process p takes local batches p, p + P, p + 2P, ... of the global order, so
  the global batch assembled from all processes is exactly the one a single
  process would read (multi-host runs reproduce single-host ones).
  """
  dataset = grain.MapDataset.source(source).shuffle(seed=seed).random_map(transform, seed=seed)
  dataset = dataset.batch(local_batch_size, drop_remainder=True)[process_index::process_count].repeat()
  return dataset.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2))


class TrainInput:
  """Iterator of training batches with a checkpointable state.

  Each `next()` returns {"frames1", "frames2": [B_pairs, H, W, 3], "views1",
  "views2": [B_images, h, w, 3]} float32 in [0, 1], the process-local part
  of the global batch (global batch sizes / process_count); with
  `data.pairs.full_image_margin` also "wide1", "wide2", "wide_valid" (`augment_pair`).
  """

  def __init__(self, config, seed, process_index=0, process_count=1):
    train, data = config.train, config.data
    for name in ("video_batch_size", "image_batch_size"):
      if train[name] % process_count:
        raise ValueError(f"config.train.{name}={train[name]} is not divisible by {process_count} processes")
    pairs, images = make_sources(data, seed)
    threads = data.num_threads
    self._pairs = iter(_batched(pairs, _pair_transform(data.pairs), train.video_batch_size // process_count,
                                seed, process_index, process_count, threads))
    self._images = iter(_batched(images, _view_transform(data.views), train.image_batch_size // process_count,
                                 seed + 1, process_index, process_count, threads))

  def __iter__(self):
    return self

  def __next__(self):
    batch = dict(next(self._pairs))
    batch.update(next(self._images))
    return batch

  def get_state(self):
    """JSON-serialisable position of both streams."""
    return {"pairs": self._pairs.get_state(), "images": self._images.get_state()}

  def set_state(self, state):
    self._pairs.set_state(state["pairs"])
    self._images.set_state(state["images"])


def stack_samples(samples):
  """list of dicts of arrays -> dict of stacked arrays."""
  return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
