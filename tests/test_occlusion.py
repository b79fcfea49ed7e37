"""Forward-backward occlusion on a square moving over a static background."""

import jax.numpy as jnp
import numpy as np

from mcjepa_jax.ops import fill_occluded_flow, forward_backward_occlusion

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


def _fill_reference(flow, visible, image, radius, sigma, inside):
  """Pixel loop of the colour-weighted fill over [H, W] arrays (one image)."""
  height, width = visible.shape
  out = flow.copy()
  for y in range(height):
    for x in range(width):
      if visible[y, x] or not inside[y, x]:
        continue
      num, den = np.zeros(2), 0.0
      for qy in range(max(0, y - radius), min(height, y + radius + 1)):
        for qx in range(max(0, x - radius), min(width, x + radius + 1)):
          if visible[qy, qx]:
            w = np.exp(-np.sum((image[y, x] - image[qy, qx]) ** 2) / sigma**2
                       - ((qy - y) ** 2 + (qx - x) ** 2) / (2.0 * radius**2))
            num, den = num + w * flow[qy, qx], den + w
      if den > 1e-12:
        out[y, x] = num / den
  return out


def test_fill_matches_a_pixel_loop():
  rng = np.random.default_rng(0)
  flow = rng.normal(0, 0.5, (2, 12, 10, 2)).astype(np.float32)
  flow[0, :3] += 8.0  # some flow leaves the frame: kept as predicted
  flow_back = rng.normal(0, 0.5, (2, 12, 10, 2)).astype(np.float32)
  image = rng.uniform(0, 1, (2, 12, 10, 3)).astype(np.float32)
  radius, sigma = 3, 0.5
  visible = np.asarray(forward_backward_occlusion(jnp.asarray(flow), jnp.asarray(flow_back)))[..., 0] > 0
  assert 0.1 < visible.mean() < 0.9  # both kinds of pixels are exercised
  filled = np.asarray(fill_occluded_flow(jnp.asarray(flow), jnp.asarray(flow_back), jnp.asarray(image), radius,
                                         sigma))
  ys, xs = np.mgrid[:12, :10]
  for b in range(2):
    inside = ((xs + flow[b, ..., 0] >= 0) & (xs + flow[b, ..., 0] <= 9)
              & (ys + flow[b, ..., 1] >= 0) & (ys + flow[b, ..., 1] <= 11))
    np.testing.assert_allclose(filled[b], _fill_reference(flow[b], visible[b], image[b], radius, sigma, inside),
                               rtol=1e-5, atol=1e-5)


def test_fill_gives_the_covered_strip_the_background_motion():
  """The square's motion smeared over the strip it covers (the blob of a learned flow) is undone."""
  forward, backward = square_flows()
  blob = np.asarray(forward).copy()
  blob[0, TOP:TOP + SIDE, LEFT + SIDE:LEFT + SIDE + SHIFT, 0] = SHIFT
  image = np.full((1, SIZE, SIZE, 3), 0.2, np.float32)
  image[0, TOP:TOP + SIDE, LEFT:LEFT + SIDE] = 0.8
  filled = np.asarray(fill_occluded_flow(jnp.asarray(blob), backward, jnp.asarray(image), 5, 0.1))
  np.testing.assert_allclose(filled, np.asarray(forward), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(fill_occluded_flow(jnp.asarray(blob), backward, jnp.asarray(image), 0,
                                                              0.1)), blob)
