"""Middlebury colour coding of flow."""

import numpy as np

from mcjepa_jax.evaluate.visualize import flow_panel, flow_to_rgb


def test_colour_wheel_directions():
  flow = np.zeros((1, 4, 2), np.float32)
  flow[0, 1] = (1, 0)    # right
  flow[0, 2] = (-1, 0)   # left
  flow[0, 3] = (0, 1)    # down
  rgb = flow_to_rgb(flow, max_magnitude=1.0).astype(int)
  assert tuple(rgb[0, 0]) == (255, 255, 255)          # no motion is white
  assert rgb[0, 1, 0] > 200 and rgb[0, 1, 2] < 80     # right is red
  assert rgb[0, 2, 2] > 150 and rgb[0, 2, 0] < 80     # left is blue-cyan, opposite of red
  assert rgb[0, 3, 1] > 150 and rgb[0, 3, 2] < 80     # down is yellow-green


def test_panel_layout():
  frame = np.zeros((8, 10, 3), np.float32)
  flow = np.ones((8, 10, 2), np.float32)
  assert flow_panel(frame, frame, flow).shape == (8, 30, 3)
  assert flow_panel(frame, frame, flow, flow).shape == (8, 40, 3)
