"""The jaxpr FLOP counter against hand-counted multiply-adds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcjepa_jax.models.flops import count_flops

F32 = jnp.float32


def conv(x, w, stride=1, groups=1):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=groups)


def test_matmul_and_batched_einsum():
  a, b = jax.ShapeDtypeStruct((5, 7), F32), jax.ShapeDtypeStruct((7, 3), F32)
  assert count_flops(jnp.matmul, a, b) == 2 * 5 * 7 * 3
  x, y = jax.ShapeDtypeStruct((4, 5, 7), F32), jax.ShapeDtypeStruct((4, 7, 3), F32)
  assert count_flops(lambda p, q: jnp.einsum("bij,bjk->bik", p, q), x, y) == 4 * 2 * 5 * 7 * 3


@pytest.mark.parametrize("stride,groups", [(1, 1), (2, 1), (1, 4)])
def test_convolution_counts_output_pixels_times_window_times_input_features(stride, groups):
  x = jax.ShapeDtypeStruct((2, 8, 8, 8), F32)
  w = jax.ShapeDtypeStruct((3, 3, 8 // groups, 12), F32)
  out_pixels = 2 * (8 // stride)**2
  assert count_flops(lambda a, b: conv(a, b, stride, groups), x, w) == 2 * out_pixels * 12 * 9 * (8 // groups)


def test_gradient_of_a_convolution_is_three_convolutions_and_scan_counts_every_step():
  x = jax.ShapeDtypeStruct((2, 8, 8, 8), F32)
  w = jax.ShapeDtypeStruct((3, 3, 8, 12), F32)
  forward = count_flops(conv, x, w)
  both = count_flops(jax.grad(lambda a, b: conv(a, b).sum(), argnums=(0, 1)), x, w)
  assert both == 3 * forward
  m = jax.ShapeDtypeStruct((6, 6), F32)

  def repeated(a):
    return jax.lax.scan(lambda c, _: (c @ a, None), jnp.eye(6), None, length=5)[0]

  assert count_flops(repeated, m) == 5 * 2 * 6**3
  assert count_flops(jax.jit(repeated), m) == 5 * 2 * 6**3
  np.testing.assert_equal(count_flops(lambda a: jnp.tanh(a) + 1, m), 0)
