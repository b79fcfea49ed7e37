"""Time DAVIS label propagation and scoring on the shared samples: compiled propagation vs the numpy one.

  python benchmarks/davis_speed.py --model exports/demo [--data_root ../shared/data] [--frames 20]

Prints seconds per frame for feature extraction, propagation (compiled, and
the former numpy/argpartition version from tests/test_davis.py) and scoring.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", required=True)
  parser.add_argument("--data_root", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
  parser.add_argument("--frames", type=int, default=20)
  args = parser.parse_args()
  from mcjepa_jax.console import quiet_logging
  quiet_logging()
  from mcjepa_jax.evaluate import davis
  from mcjepa_jax.evaluate.protocols import make_feature_fn
  from mcjepa_jax.inference import load_pretrained
  from test_davis import _numpy_propagation  # the former implementation
  model, variables = load_pretrained(args.model)
  root = os.path.join(args.data_root, "DAVIS")
  cfg = davis.PropagationConfig()
  print(f"{'sequence':<14}{'frames':>7}{'features s/f':>14}{'compiled s/f':>14}{'numpy s/f':>11}{'scoring s/f':>13}")
  for name in davis.davis_sequences(root):
    frames, masks = davis.load_sequence(root, name, max_frames=args.frames)
    feature_fn = make_feature_fn(model, variables, 3)
    feature_fn(frames[0])  # compile
    t0 = time.time()
    features = np.stack([feature_fn(f) for f in frames])
    t1 = time.time()
    num_classes = int(masks[0].max()) + 1
    first = davis._downsample_labels(masks[0], num_classes, features.shape[1:3])  # pylint: disable=protected-access
    davis.propagate_labels(features[:2], first, num_classes, cfg)  # compile
    t2 = time.time()
    fast = davis.propagate_labels(features, first, num_classes, cfg)
    t3 = time.time()
    slow = _numpy_propagation(features, first, num_classes, cfg)
    t4 = time.time()
    predictions = davis.segment_video(features, masks[0], cfg)
    t5 = time.time()
    davis.sequence_scores(predictions, masks)
    t6 = time.time()
    n = len(frames)
    agree = float(np.mean(fast.argmax(-1) == slow.argmax(-1)))
    print(f"{name:<14}{n:>7}{(t1 - t0) / n:>14.3f}{(t3 - t2) / n:>14.3f}{(t4 - t3) / n:>11.3f}{(t6 - t5) / n:>13.3f}   labels agree {100 * agree:.1f} %")


if __name__ == "__main__":
  main()
