"""Diagnostics of the flow network (evaluate/diagnostics.py) and the free-flow check of the objective."""

import jax.numpy as jnp
import numpy as np
import pytest

from mcjepa_jax.evaluate.diagnostics import flow_at_level, level_contributions, true_offset_share


def test_true_offset_share_of_shifted_random_features_is_one():
  rng = np.random.default_rng(0)
  base = rng.normal(size=(2, 12, 14, 8)).astype(np.float32)
  base /= np.linalg.norm(base, axis=-1, keepdims=True)  # equal norms: a vector matches itself best
  # target[y, x] = source[y - 1, x + 1]: the content at (x, y) moves to (x - 1, y + 1), flow (-1, +1).
  source = base[:, 1:-1, 1:-1]
  target = base[:, :-2, 2:]
  flow = np.zeros(source.shape[:3] + (2,), np.float32)
  flow[..., 0], flow[..., 1] = -1.0, 1.0
  visible = np.ones(source.shape[:3], bool)
  visible[:, -1], visible[:, :, 0] = False, False  # their true match lies outside the target
  share, count = true_offset_share(source, target, flow, visible, radius=2)
  assert share == 1.0 and count == visible.sum()
  # Offsets beyond the radius are not counted; a wrong flow scores zero.
  assert true_offset_share(source, target, flow * 3, visible, radius=2)[1] == 0
  assert true_offset_share(source, target, -flow, visible, radius=2)[0] == 0.0


def test_flow_at_level_is_the_block_mean_in_level_pixels():
  flow = np.zeros((1, 8, 8, 2), np.float32)
  flow[:, :4, :4] = (4.0, -2.0)
  got = np.asarray(flow_at_level(flow, 2))
  assert got.shape == (1, 2, 2, 2)
  np.testing.assert_allclose(got[0, 0, 0], [1.0, -0.5])
  np.testing.assert_allclose(got[0, 1, 1], [0.0, 0.0])


def test_level_contributions_add_up_by_level():
  coarse = jnp.full((1, 2, 2, 2), 1.0)             # 1 px of level 2 = 4 input px in u and v
  fine = jnp.full((1, 4, 4, 2), 2.0) + 0.5        # upsampled coarse is 2 px of level 1, + 0.5 px residual
  got = level_contributions({2: coarse, 1: fine}, (2, 1), (8, 8))
  assert got[2] == pytest.approx(np.hypot(4.0, 4.0))
  assert got[1] == pytest.approx(np.hypot(1.0, 1.0))
