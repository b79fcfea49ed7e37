"""Forward-backward occlusion on a square moving over a static background."""

import jax.numpy as jnp
import numpy as np

from mcjepa_jax.ops import forward_backward_occlusion

SIZE, SIDE, TOP, LEFT, SHIFT = 24, 6, 8, 6, 4


def square_flows():
  """A SIDE x SIDE square at (TOP, LEFT) moves SHIFT pixels right; the background stays."""
  forward = np.zeros((1, SIZE, SIZE, 2), np.float32)
  forward[0, TOP:TOP + SIDE, LEFT:LEFT + SIDE, 0] = SHIFT
  backward = np.zeros((1, SIZE, SIZE, 2), np.float32)
  backward[0, TOP:TOP + SIDE, LEFT + SHIFT:LEFT + SHIFT + SIDE, 0] = -SHIFT
  return jnp.asarray(forward), jnp.asarray(backward)


def test_covered_strip_is_occluded_in_frame_t():
  forward, backward = square_flows()
  visible = np.asarray(forward_backward_occlusion(forward, backward))[0, ..., 0]
  expected = np.ones((SIZE, SIZE), np.float32)
  # Background that the square will cover in frame t+1.
  expected[TOP:TOP + SIDE, LEFT + SIDE:LEFT + SIDE + SHIFT] = 0
  np.testing.assert_array_equal(visible, expected)


def test_uncovered_strip_is_occluded_in_frame_t_plus_1():
  forward, backward = square_flows()
  visible = np.asarray(forward_backward_occlusion(backward, forward))[0, ..., 0]
  expected = np.ones((SIZE, SIZE), np.float32)
  # Background that the square uncovers: seen in t+1, hidden in t.
  expected[TOP:TOP + SIDE, LEFT:LEFT + SHIFT] = 0
  np.testing.assert_array_equal(visible, expected)


def test_consistent_flows_are_fully_visible():
  flow = jnp.ones((1, 10, 10, 2)) * 0.3
  assert np.all(np.asarray(forward_backward_occlusion(flow, -flow)) == 1)
