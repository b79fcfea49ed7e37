"""Backward warp against PyTorch's grid_sample(align_corners=True, zeros) (DESIGN.md 3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mcjepa_jax.ops import (bilinear_upsample_weights, convex_upsample, resize_flow, upsample_flow, warp,
                            warp_edge, warp_with_mask)


def torch_warp(x, flow, padding_mode="zeros"):
  """Reference: grid_sample at pixel (x + u, y + v), coordinates normalised by W-1, H-1."""
  x = x.permute(0, 3, 1, 2)
  _, _, height, width = x.shape
  ys, xs = torch.meshgrid(torch.arange(height, dtype=x.dtype), torch.arange(width, dtype=x.dtype), indexing="ij")
  grid_x = 2.0 * (xs + flow[..., 0]) / (width - 1) - 1.0
  grid_y = 2.0 * (ys + flow[..., 1]) / (height - 1) - 1.0
  grid = torch.stack([grid_x, grid_y], dim=-1)
  out = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
  return out.permute(0, 2, 3, 1)


def random_inputs(seed, shape=(2, 9, 11, 4), flow_scale=4.0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape).astype(np.float32)
  # Large enough that many samples fall partly or wholly outside the image.
  flow = (rng.normal(size=shape[:3] + (2,)) * flow_scale).astype(np.float32)
  return x, flow


def test_values_match_grid_sample():
  x, flow = random_inputs(0)
  got = np.asarray(warp(jnp.asarray(x), jnp.asarray(flow)))
  want = torch_warp(torch.from_numpy(x), torch.from_numpy(flow)).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert np.any(got == 0.0)  # some samples are fully outside


def test_edge_warp_matches_grid_sample_border_padding():
  x, flow = random_inputs(3)
  got = np.asarray(warp_edge(jnp.asarray(x), jnp.asarray(flow)))
  want = torch_warp(torch.from_numpy(x), torch.from_numpy(flow), "border").numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # Samples far outside read the border pixel, never zero.
  far = np.full_like(flow, 100.0)
  np.testing.assert_array_equal(np.asarray(warp_edge(jnp.asarray(x), jnp.asarray(far))),
                                np.broadcast_to(x[:, -1:, -1:], x.shape))


def test_gradients_match_grid_sample():
  x, flow = random_inputs(1)
  cotangent = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
  loss = lambda x, f: jnp.sum(warp(x, f) * cotangent)
  grad_x, grad_flow = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(flow))

  tx = torch.from_numpy(x).requires_grad_(True)
  tflow = torch.from_numpy(flow).requires_grad_(True)
  (torch_warp(tx, tflow) * torch.from_numpy(cotangent)).sum().backward()
  np.testing.assert_allclose(np.asarray(grad_x), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(grad_flow), tflow.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_zero_flow_is_identity():
  x, _ = random_inputs(2)
  warped, valid = warp_with_mask(jnp.asarray(x), jnp.zeros(x.shape[:3] + (2,)))
  np.testing.assert_array_equal(np.asarray(warped), x)
  assert np.all(np.asarray(valid) == 1.0)


def test_integer_shift_moves_pixels_exactly():
  x, _ = random_inputs(3, shape=(1, 8, 10, 3))
  flow = np.zeros((1, 8, 10, 2), np.float32)
  flow[..., 0] = 2.0   # sample two pixels to the right
  flow[..., 1] = -1.0  # and one pixel up
  warped, valid = warp_with_mask(jnp.asarray(x), jnp.asarray(flow))
  warped, valid = np.asarray(warped), np.asarray(valid)[..., 0]
  np.testing.assert_array_equal(warped[0, 1:, :8], x[0, :7, 2:])
  assert np.all(warped[0, 0] == 0) and np.all(warped[0, :, 8:] == 0)
  assert np.all(valid[0, 1:, :8] == 1) and np.all(valid[0, 0] == 0) and np.all(valid[0, :, 8:] == 0)


def test_validity_mask_is_warped_ones():
  x, flow = random_inputs(4)
  _, valid = warp_with_mask(jnp.asarray(x), jnp.asarray(flow))
  ones = torch_warp(torch.ones(x.shape), torch.from_numpy(flow)).numpy()[..., :1]
  np.testing.assert_array_equal(np.asarray(valid), (ones > 0.999).astype(np.float32))


def test_full_image_warp_equals_warping_the_full_grid_then_cropping():
  # A crop's flow sampling the uncropped frame (origin = the crop's corner) must read exactly
  # what the same flow, placed on the full grid, reads there: values and validity.
  rng = np.random.default_rng(11)
  full = rng.uniform(size=(2, 12, 14, 3)).astype(np.float32)
  top, left, height, width = 3, 2, 6, 8
  flow = rng.uniform(-4, 4, size=(2, height, width, 2)).astype(np.float32)
  full_flow = np.zeros((2, 12, 14, 2), np.float32)
  full_flow[:, top:top + height, left:left + width] = flow
  warped, valid = warp_with_mask(jnp.asarray(full), jnp.asarray(flow), origin=(top, left))
  ref, ref_valid = warp_with_mask(jnp.asarray(full), jnp.asarray(full_flow))
  np.testing.assert_allclose(np.asarray(warped), np.asarray(ref)[:, top:top + height, left:left + width], atol=1e-6)
  np.testing.assert_array_equal(np.asarray(valid), np.asarray(ref_valid)[:, top:top + height, left:left + width])
  # Pixels that leave the crop but not the frame are valid: the point of full-image warping.
  _, crop_valid = warp_with_mask(jnp.asarray(full[:, top:top + height, left:left + width]), jnp.asarray(flow))
  assert np.sum(np.asarray(valid)) > np.sum(np.asarray(crop_valid))


def test_full_image_warp_rejects_a_grid_outside_the_image():
  with pytest.raises(ValueError, match="origin"):
    warp_with_mask(jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 6, 6, 2)), origin=(3, 0))


def test_resize_flow_scales_values():
  flow = np.ones((1, 4, 6, 2), np.float32) * np.array([1.5, -2.0], np.float32)
  up = np.asarray(upsample_flow(jnp.asarray(flow), 2))
  assert up.shape == (1, 8, 12, 2)
  np.testing.assert_allclose(up[..., 0], 3.0, rtol=1e-6)
  np.testing.assert_allclose(up[..., 1], -4.0, rtol=1e-6)
  down = np.asarray(resize_flow(jnp.asarray(flow), (2, 2)))
  np.testing.assert_allclose(down[..., 0], 1.5 / 3, rtol=1e-6)
  np.testing.assert_allclose(down[..., 1], -2.0 / 2, rtol=1e-6)


def test_upsampled_linear_flow_matches_torch_interpolate():
  """Bilinear x2 with half-pixel centres equals torch's interpolate(align_corners=False)."""
  flow = np.random.default_rng(5).normal(size=(1, 5, 7, 2)).astype(np.float32)
  got = np.asarray(upsample_flow(jnp.asarray(flow), 2))
  ref = F.interpolate(torch.from_numpy(flow).permute(0, 3, 1, 2), scale_factor=2, mode="bilinear",
                      align_corners=False).permute(0, 2, 3, 1).numpy() * 2
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def brute_force_convex_upsample(flow, logits, factor):
  """Reference: per fine pixel, softmax over its parent cell's 3 x 3 neighbours (edge-clamped)."""
  batch, height, width, _ = flow.shape
  out = np.zeros((batch, height * factor, width * factor, 2))
  for n in range(batch):
    for y in range(height * factor):
      for x in range(width * factor):
        weights = np.exp(logits[n, y, x] - logits[n, y, x].max())
        weights /= weights.sum()
        for k, (dy, dx) in enumerate((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
          row = min(max(y // factor + dy, 0), height - 1)
          col = min(max(x // factor + dx, 0), width - 1)
          out[n, y, x] += weights[k] * flow[n, row, col] * factor
  return out


def test_convex_upsample_matches_brute_force_loop():
  rng = np.random.default_rng(6)
  flow = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
  logits = (2 * rng.normal(size=(2, 6, 8, 9))).astype(np.float32)
  got = np.asarray(convex_upsample(jnp.asarray(flow), jnp.asarray(logits), 2))
  np.testing.assert_allclose(got, brute_force_convex_upsample(flow, logits, 2), rtol=1e-5, atol=1e-5)


def test_convex_upsample_with_bilinear_weights_is_bilinear_upsampling():
  """Its prior: log-bilinear weights reproduce jax.image.resize's bilinear upsampling, borders included."""
  flow = np.random.default_rng(7).normal(size=(1, 5, 7, 2)).astype(np.float32)
  for factor in (2, 3, 4):
    weights = bilinear_upsample_weights(factor)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-12)
    with np.errstate(divide="ignore"):
      logits = np.log(np.tile(weights, (5, 7, 1)))[None].astype(np.float32)
    got = np.asarray(convex_upsample(jnp.asarray(flow), jnp.asarray(logits), factor))
    ref = np.asarray(jax.image.resize(flow, (1, 5 * factor, 7 * factor, 2), "bilinear")) * factor
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_convex_upsample_all_weight_on_the_parent_repeats_each_cell():
  flow = np.random.default_rng(8).normal(size=(1, 3, 3, 2)).astype(np.float32)
  logits = np.full((1, 6, 6, 9), -1e4, np.float32)
  logits[..., 4] = 0.0  # neighbour (0, 0): the parent cell itself
  got = np.asarray(convex_upsample(jnp.asarray(flow), jnp.asarray(logits), 2))
  np.testing.assert_allclose(got, 2 * flow.repeat(2, axis=1).repeat(2, axis=2), rtol=1e-6)
