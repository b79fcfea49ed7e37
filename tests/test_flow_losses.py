"""Flow loss terms on hand-built cases (DESIGN.md 4)."""

import jax.numpy as jnp
import numpy as np
import pytest

from mcjepa_jax.losses import (cycle_loss, feature_regression_loss, photometric_loss, pyramid_photometric_loss,
                               smoothness_loss)


def shifted_pair(shift_x, size=16, channels=3, seed=0):
  """Frame 2 is frame 1 moved `shift_x` pixels right; returns stacked images and exact stacked flows.

  frame1[x] = base[x + s] and frame2[x] = base[x], so frame1[x] = frame2[x + s]: the
  backward warp of frame 2 needs u = +s.
  """
  base = np.random.default_rng(seed).uniform(size=(1, size, size + shift_x, channels)).astype(np.float32)
  frame1 = base[:, :, shift_x:]
  frame2 = base[:, :, :size]
  images = np.concatenate([frame1, frame2])
  flow = np.zeros((2, size, size, 2), np.float32)
  flow[0, ..., 0] = shift_x
  flow[1, ..., 0] = -shift_x
  return jnp.asarray(images), jnp.asarray(flow)


def test_true_flow_beats_zero_flow_photometrically():
  images, flow = shifted_pair(2)
  args = (1.0, 0.0, 1.0, 0.0, 7, 0.01, 0.5)
  right = float(photometric_loss(images, flow, *args, occlusion_strength=0.0))
  wrong = float(photometric_loss(images, jnp.zeros_like(flow), *args, occlusion_strength=0.0))
  assert right < 0.2 * wrong
  # Only the 2-pixel strip that leaves the image is wrong; occlusion masking removes it
  # (exactly for L1; SSIM windows next to the strip still see it).
  l1_only = (1.0, 0.0, 0.0, 0.0, 7, 0.01, 0.5)
  assert float(photometric_loss(images, flow, *l1_only, occlusion_strength=1.0)) < 1e-6
  assert float(photometric_loss(images, flow, *l1_only, occlusion_strength=0.0)) > 1e-2
  assert float(photometric_loss(images, flow, *args, occlusion_strength=1.0)) < 0.5 * right


def test_pyramid_photometric_loss_pools_images_to_each_level():
  # A 4-pixel shift is a 2- and 1-pixel shift of the 2x2 and 4x4 block means.
  images, flow = shifted_pair(4)
  flows = {1: flow[:, ::2, ::2] / 2, 2: flow[:, ::4, ::4] / 4}
  l1_only = (1.0, 0.0, 0.0, 0.01, 0.5)
  assert float(pyramid_photometric_loss(images, flows, *l1_only, occlusion_strength=1.0)) < 1e-6
  zero = {level: jnp.zeros_like(f) for level, f in flows.items()}
  assert float(pyramid_photometric_loss(images, zero, *l1_only, occlusion_strength=1.0)) > 1e-2
  # A level at the input resolution is the plain photometric loss.
  args = (1.0, 0.0, 1.0, 0.01, 0.5)
  np.testing.assert_allclose(float(pyramid_photometric_loss(images, {0: flow}, *args, occlusion_strength=0.0)),
                             float(photometric_loss(images, flow, 1.0, 0.0, 1.0, 0.0, 7, 0.01, 0.5, 0.0)),
                             rtol=1e-6)


def test_identical_frames_zero_flow_give_zero_losses():
  images = jnp.asarray(np.random.default_rng(1).uniform(size=(4, 8, 8, 3)).astype(np.float32))
  images = jnp.concatenate([images[:2], images[:2]])
  zero = jnp.zeros((4, 8, 8, 2))
  assert float(photometric_loss(images, zero, 1.0, 1.0, 1.0, 0.0, 3, 0.01, 0.5)) < 1e-6
  # Census adds UFlow's robust penalty (|d| + 0.01)^0.4, which is 0.01^0.4 at d = 0.
  census_only = float(photometric_loss(images, zero, 0.0, 0.0, 0.0, 1.0, 3, 0.01, 0.5))
  assert census_only == pytest.approx(0.01**0.4, rel=1e-5)
  pyramid = [images, images]
  flows = {1: zero, 2: zero}
  assert float(feature_regression_loss(pyramid, flows, "l1", 0.01, 0.5)) == 0.0
  assert float(cycle_loss(pyramid, flows)) == 0.0


def test_feature_regression_l1_and_l2_by_hand():
  a = np.zeros((2, 4, 4, 1), np.float32)
  a[1] = 0.5  # frame t+1 features differ from frame t by 0.5 everywhere
  flows = {1: jnp.zeros((2, 4, 4, 2))}
  l1 = float(feature_regression_loss([jnp.asarray(a)], flows, "l1", 0.01, 0.5))
  l2 = float(feature_regression_loss([jnp.asarray(a)], flows, "l2", 0.01, 0.5))
  assert l1 == pytest.approx(0.5) and l2 == pytest.approx(0.25)
  with pytest.raises(ValueError, match="config.loss.reg.norm"):
    feature_regression_loss([jnp.asarray(a)], flows, "l3", 0.01, 0.5)


def test_cycle_loss_counts_content_lost_off_the_image():
  features = np.ones((2, 4, 6, 1), np.float32)
  flow = np.zeros((2, 4, 6, 2), np.float32)
  flow[..., 0] = 1.0  # sampling one pixel to the right loses the last column in each warp
  got = float(cycle_loss([jnp.asarray(features)], {1: jnp.asarray(flow)}))
  # After two warps by +1 column, the last two columns read zero: 2 of 6 columns wrong by 1.
  assert got == pytest.approx(2 / 6)


def test_smoothness_of_linear_flow():
  ys, xs = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
  flow = np.stack([0.5 * xs, 0.25 * ys], axis=-1)[None].astype(np.float32)
  flat = jnp.zeros((1, 8, 8, 3))
  assert float(smoothness_loss(jnp.asarray(flow), flat, 2, 10.0)) == pytest.approx(0.0, abs=1e-7)
  # First order on a flat image: mean |du/dx| + |dv/dx| ... averaged over the two axes.
  want = ((0.5 + 0.0) / 2 + (0.0 + 0.25) / 2) / 2
  assert float(smoothness_loss(jnp.asarray(flow), flat, 1, 10.0)) == pytest.approx(want)


def test_smoothness_is_switched_off_at_image_edges():
  flow = np.zeros((1, 8, 8, 2), np.float32)
  flow[:, :, 4:, 0] = 3.0  # a motion boundary between columns 3 and 4
  image = np.zeros((1, 8, 8, 3), np.float32)
  plain = float(smoothness_loss(jnp.asarray(flow), jnp.asarray(image), 1, 10.0))
  image[:, :, 4:] = 1.0    # an image edge at the same place
  edge = float(smoothness_loss(jnp.asarray(flow), jnp.asarray(image), 1, 10.0))
  assert edge == pytest.approx(plain * np.exp(-10.0))
  with pytest.raises(ValueError, match="order"):
    smoothness_loss(jnp.asarray(flow), jnp.asarray(image), 3, 10.0)


def test_smoothness_units():
  flow = np.random.default_rng(4).normal(size=(1, 8, 8, 2)).astype(np.float32)
  image = jnp.zeros((1, 8, 8, 3))
  for order in (1, 2):
    pixel = float(smoothness_loss(jnp.asarray(flow), image, order, 10.0, units="pixel"))
    pwc = float(smoothness_loss(jnp.asarray(flow), image, order, 10.0, units="pwc"))
    assert pwc == pytest.approx(pixel / 20.0, rel=1e-5)
  with pytest.raises(ValueError, match="config.loss.smooth.units"):
    smoothness_loss(jnp.asarray(flow), image, 1, 10.0, units="px")


@pytest.mark.parametrize("order", [1, 2])
def test_image_unit_smoothness_does_not_depend_on_the_image_size(order):
  # One smooth motion field u = 3 sin(2 pi x / L) sampled at 32 and at 64 pixels (flow in pixels
  # of each grid): in image units both give the same loss, in pixel units they do not.
  def field(size):
    xs = (np.arange(size) + 0.5) / size
    u = 3.0 * size / 32 * np.sin(2 * np.pi * xs)
    flow = np.zeros((1, size, size, 2), np.float32)
    flow[..., 0] = u[None, :]
    return jnp.asarray(flow), jnp.zeros((1, size, size, 3))

  small, large = field(32), field(64)
  image_units = [float(smoothness_loss(f, i, order, 10.0, units="image")) for f, i in (small, large)]
  pixel_units = [float(smoothness_loss(f, i, order, 10.0, units="pixel")) for f, i in (small, large)]
  assert image_units[1] == pytest.approx(image_units[0], rel=0.03)
  if order == 2:
    assert pixel_units[1] == pytest.approx(pixel_units[0] / 2, rel=0.03)


def test_normalised_photometric_loss_is_the_mean_over_kept_pixels():
  images, flow = shifted_pair(2)
  l1_only = (1.0, 0.0, 0.0, 0.0, 7, 0.01, 0.5)
  zero = jnp.zeros_like(flow)
  # Zero flow, no occlusion masking: every pixel is kept, so both normalisations agree.
  plain = float(photometric_loss(images, zero, *l1_only, occlusion_strength=0.0))
  normalised = float(photometric_loss(images, zero, *l1_only, occlusion_strength=0.0, normalize=True))
  assert normalised == pytest.approx(plain, rel=1e-5)
  # The true flow, out-of-frame pixels excluded: the 2 columns that leave the frame are dropped,
  # and the normalised loss is exactly zero while the kept pixels are all matched.
  out = float(photometric_loss(images, flow, *l1_only, occlusion_strength=0.0, exclude_out_of_frame=True,
                               normalize=True))
  assert out < 1e-6
  # With everything kept, the unnormalised loss counts those columns: 2 of 16 columns in each direction.
  kept = float(photometric_loss(images, flow, *l1_only, occlusion_strength=0.0))
  assert kept > 1e-2


def wide_shifted_pair(shift_x, margin, size=16, seed=0):
  """`shifted_pair` cut from a larger image: also the frames with `margin` pixels of it each side."""
  base = np.random.default_rng(seed).uniform(size=(1, size + 2 * margin, size + 2 * margin + shift_x, 3))
  base = base.astype(np.float32)
  wide1, wide2 = base[:, :, shift_x:], base[:, :, :size + 2 * margin]
  crop = lambda x: x[:, margin:margin + size, margin:margin + size]
  images = np.concatenate([crop(wide1), crop(wide2)])
  flow = np.zeros((2, size, size, 2), np.float32)
  flow[0, ..., 0], flow[1, ..., 0] = shift_x, -shift_x
  wide = (jnp.asarray(np.concatenate([wide1, wide2])), jnp.ones((2,) + wide1.shape[1:3] + (1,)))
  return jnp.asarray(images), jnp.asarray(flow), wide


def test_full_image_warping_compares_pixels_that_leave_the_crop():
  images, flow, wide = wide_shifted_pair(2, margin=4)
  l1_only = (1.0, 0.0, 0.0, 0.0, 7, 0.01, 0.5)
  kwargs = dict(occlusion_strength=1.0, exclude_out_of_frame=True, normalize=True)
  # The true flow matches every pixel of the wider frames, the two columns leaving the crop too.
  assert float(photometric_loss(images, flow, *l1_only, **kwargs, wide=wide)) < 1e-6
  # A wrong flow on exactly those columns: invisible to the crop's loss (they leave its frame),
  # seen by the full-image loss.
  wrong = np.array(flow)
  wrong[0, :, -2:, 0] += 0.5
  wrong[1, :, :2, 0] -= 0.5
  wrong = jnp.asarray(wrong)
  assert float(photometric_loss(images, wrong, *l1_only, **kwargs)) < 1e-6
  assert float(photometric_loss(images, wrong, *l1_only, **kwargs, wide=wide)) > 1e-3


def test_full_image_warping_with_an_empty_margin_is_the_crop_loss():
  # Wide frames that are the crop padded with invalid pixels carry nothing more: every setting
  # (SSIM, census, forward-backward masking, both normalisations) gives the crop's own loss.
  rng = np.random.default_rng(5)
  images = jnp.asarray(rng.uniform(size=(4, 16, 16, 3)).astype(np.float32))
  flow = jnp.asarray(rng.uniform(-3, 3, size=(4, 16, 16, 2)).astype(np.float32))
  pad = ((0, 0), (3, 3), (3, 3), (0, 0))
  wide = (jnp.pad(images, pad), jnp.pad(jnp.ones((4, 16, 16, 1)), pad))
  for normalize in (False, True):
    args = (1.0, 0.5, 1.0, 0.3, 3, 0.01, 0.5, 0.7, True, normalize)
    np.testing.assert_allclose(float(photometric_loss(images, flow, *args, wide=wide)),
                               float(photometric_loss(images, flow, *args)), rtol=1e-5)
