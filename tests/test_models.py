"""Model structure: pyramid shapes, the exact ConvNeXt-T parameter count, flow head outputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcjepa_jax.models import build_model
from mcjepa_jax.models.params import abstract_variables, count_params, init_variables


def conv(kh, kw, cin, cout):
  return kh * kw * cin * cout + cout


def layer_norm(c):
  return 2 * c


def convnext_block(c):
  depthwise = 7 * 7 * c + c
  mlp = (c * 4 * c + 4 * c) + (4 * c * c + c)
  return depthwise + layer_norm(c) + mlp + c  # + layer scale


def convnext_stages(widths=(96, 192, 384, 768), depths=(3, 3, 9, 3), stem_out=96):
  total, previous = 0, stem_out
  for i, (w, d) in enumerate(zip(widths, depths)):
    if i > 0:  # downsampling layer between stages: LayerNorm + 2x2 conv
      total += layer_norm(previous) + conv(2, 2, previous, w)
    total += d * convnext_block(w)
    previous = w
  return total


def test_layer_formulas_reproduce_convnext_t_backbone():
  standard_stem = conv(4, 4, 3, 96) + layer_norm(96)
  assert standard_stem + convnext_stages() == 27_818_592


def test_paper_encoder_parameter_count(paper_config):
  split_stem = (conv(4, 4, 3, 48) + layer_norm(48) + conv(3, 3, 48, 48) + layer_norm(48)
                + layer_norm(48) + conv(2, 2, 48, 96))
  expected = split_stem + convnext_stages()
  assert expected == 27_855_648
  variables = abstract_variables(build_model(paper_config.model), (1, 64, 64, 3), (2, 64, 64, 3))
  params = variables["params"]
  assert count_params(params["encoder"]) == expected


def test_paper_expander_parameter_count(paper_config):
  variables = abstract_variables(build_model(paper_config.model), (1, 64, 64, 3), (2, 64, 64, 3))
  d = 8192
  expected = (768 * d + d + 2 * d) + (d * d + d + 2 * d) + d * d
  assert count_params(variables["params"]["expander"]) == expected
  assert count_params(variables["batch_stats"]) == 4 * d


def test_paper_pyramid_shapes(paper_config):
  model = build_model(paper_config.model)
  variables = abstract_variables(model, (1, 128, 192, 3), (2, 64, 64, 3))
  frames = jax.ShapeDtypeStruct((1, 128, 192, 3), jnp.float32)
  out = jax.eval_shape(lambda v, f: model.apply(v, f, f, method=model.video), variables, frames)
  shapes = [x.shape for x in out["pyramid"]]
  channels = (48, 48, 96, 192, 384, 768)
  assert shapes == [(2, 128 // 2**l, 192 // 2**l, c) for l, c in zip(range(1, 7), channels)]
  assert out["pooled"].shape == (2, 768)
  assert out["flow"].shape == (2, 128, 192, 2)
  assert {l: f.shape for l, f in out["flows"].items()} == {l: (2, 128 // 2**l, 192 // 2**l, 2) for l in (6, 5, 4, 3, 2)}


HEAD_OPTIONS = {
    "paper": dict(source_features=True),
    "pair": dict(normalize_features="pair"),
    "convex": dict(upsample="convex"),
    # Every option of the head at once (each was measured on the demo: docs/benchmarks.md).
    "all": dict(normalize_features="pixel", feature_widths=(8,), corr_activation=True, pass_features=True,
                image_cost=True, source_features=True, context_source_features=True, upsample="convex",
                refine_passes=1),
}


@pytest.mark.parametrize("options", sorted(HEAD_OPTIONS))
def test_flow_head_on_identical_images_gives_finite_full_size_flow(tiny_config, options):
  config = tiny_config.copy_and_resolve_references()  # the fixture is shared by the session
  config.model.flow_head.update(HEAD_OPTIONS[options])
  model = build_model(config.model)
  image = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 64, 64, 3)).astype(np.float32))
  views = jnp.asarray(np.random.default_rng(1).uniform(size=(4, 64, 64, 3)).astype(np.float32))
  variables = init_variables(model, jax.random.key(0), image, image, views, views)
  noise = np.random.default_rng(2)
  variables = jax.tree_util.tree_map(lambda p: p + 0.05 * noise.normal(size=p.shape).astype(np.float32), variables)
  out = jax.jit(lambda v, x: model.apply(v, x, x, method=model.video))(variables, image)
  assert out["flow"].shape == (2, 64, 64, 2)
  assert np.all(np.isfinite(np.asarray(out["flow"])))
  # Same frames both ways: forward and backward flows coincide.
  np.testing.assert_allclose(np.asarray(out["flow"][:1]), np.asarray(out["flow"][1:]), rtol=1e-4, atol=1e-4)
  assert np.abs(np.asarray(out["flow"])).max() > 0  # perturbed weights: a non-trivial flow
  content = jax.jit(lambda v, x: model.apply(v, x, x, method=model.content))(variables, views)
  z1, z2 = content["embeddings"]
  assert z1.shape == (4, 64) and np.all(np.isfinite(np.asarray(z1)))


def test_depthwise_shifts_equal_the_grouped_convolution_in_values_and_gradients():
  from mcjepa_jax.models.convnext import DepthwiseConv
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 12, 5)), jnp.float32)
  conv = DepthwiseConv(5, 7, "conv")
  variables = conv.init(jax.random.key(0), x)
  assert jax.tree_util.tree_map(jnp.shape, variables["params"]) == {"kernel": (7, 7, 1, 5), "bias": (5,)}
  variables = jax.tree_util.tree_map(lambda v: v + 0.1, variables)  # a non-zero bias too
  shifts = DepthwiseConv(5, 7, "shifts")
  np.testing.assert_allclose(shifts.apply(variables, x), conv.apply(variables, x), atol=1e-5)
  loss = lambda module: lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))
  for a, b in zip(jax.tree_util.tree_leaves(jax.grad(loss(shifts), argnums=(0, 1))(variables, x)),
                  jax.tree_util.tree_leaves(jax.grad(loss(conv), argnums=(0, 1))(variables, x))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  # An even kernel pads unevenly (SAME: one more after): the hand-written backward pass must swap it.
  even, even_conv = DepthwiseConv(5, 4, "shifts"), DepthwiseConv(5, 4, "conv")
  even_variables = jax.tree_util.tree_map(lambda v: v + 0.1, even_conv.init(jax.random.key(1), x))
  np.testing.assert_allclose(even.apply(even_variables, x), even_conv.apply(even_variables, x), atol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(jax.grad(loss(even), argnums=(0, 1))(even_variables, x)),
                  jax.tree_util.tree_leaves(jax.grad(loss(even_conv), argnums=(0, 1))(even_variables, x))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  # Same layout as the nn.Conv it replaced: checkpoints of either implementation load into the other.
  reference = nn.Conv(5, (7, 7), padding="SAME", feature_group_count=5)
  np.testing.assert_allclose(reference.apply(variables, x), conv.apply(variables, x), atol=1e-5)


def test_gelu_is_x_phi_x_in_values_and_gradient():
  """The erf-written GELU against x Phi(x) and its derivative Phi(x) + x phi(x) in float64 (math.erf),
  and against flax's erfc-written exact GELU."""
  import math
  from mcjepa_jax.models.pyramid import gelu
  x64 = np.concatenate([np.linspace(-8.0, 8.0, 321), [-30.0, -5.6, -1e-3, 0.0, 1e-3, 30.0]])
  phi_cdf = np.array([0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x64])
  pdf = np.exp(-0.5 * x64 ** 2) / math.sqrt(2.0 * math.pi)
  x = jnp.asarray(x64, jnp.float32)
  # 1 + erf carries Phi to float32's absolute rounding near 1: |x| 1e-7 apart where Phi is tiny.
  tolerance = 1e-7 * (1.0 + np.abs(x64))
  for reference in (x64 * phi_cdf, np.asarray(nn.gelu(x, approximate=False), np.float64)):
    error = np.abs(np.asarray(gelu(x), np.float64) - reference)
    assert np.all(error <= tolerance + 1e-6 * np.abs(reference)), x64[np.argmax(error - tolerance)]
  np.testing.assert_allclose(jax.vmap(jax.grad(gelu))(x), phi_cdf + x64 * pdf, rtol=1e-5, atol=1e-6)
  # bfloat16 in, bfloat16 out, within bfloat16 rounding of the float64 value (Phi kept in float32).
  x_bf16 = x.astype(jnp.bfloat16)
  y = gelu(x_bf16)
  assert y.dtype == jnp.bfloat16
  xb = np.asarray(x_bf16, np.float64)
  expected = np.array([v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in xb])
  error = np.abs(np.asarray(y, np.float64) - expected)
  assert np.all(error <= 2 ** -8 * np.abs(expected) + 1e-6), xb[np.argmax(error)]


def test_flow_prediction_as_taps_equals_the_convolution_in_values_and_gradients():
  from mcjepa_jax.models.flow_head import FlowPrediction, conv3x3_taps
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 7, 10, 6)), jnp.float32)
  kernel = rng.normal(size=(3, 3, 6, 2))
  # Independent reference: the SAME cross-correlation as a loop over pixels and taps.
  padded = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  loop = np.zeros((2, 7, 10, 2))
  for i in range(7):
    for j in range(10):
      loop[:, i, j] = np.einsum("bklc,klco->bo", padded[:, i:i + 3, j:j + 3], kernel)
  np.testing.assert_allclose(conv3x3_taps(x, jnp.asarray(kernel, jnp.float32)), loop, rtol=1e-5, atol=1e-5)
  conv = FlowPrediction("conv")
  variables = conv.init(jax.random.key(0), x)
  # Same layout as the nn.Conv it replaced, zero-initialised: checkpoints load into either.
  assert jax.tree_util.tree_map(jnp.shape, variables["params"]) == {"kernel": (3, 3, 6, 2), "bias": (2,)}
  assert not any(np.any(np.asarray(v)) for v in jax.tree_util.tree_leaves(variables))
  variables = {"params": {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray([0.3, -0.2])}}
  reference = nn.Conv(2, (3, 3), padding="SAME")
  np.testing.assert_array_equal(conv.apply(variables, x), reference.apply(variables, x))
  taps = FlowPrediction("taps")
  np.testing.assert_allclose(taps.apply(variables, x), conv.apply(variables, x), rtol=1e-5, atol=1e-5)
  loss = lambda module: lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))
  for a, b in zip(jax.tree_util.tree_leaves(jax.grad(loss(taps), argnums=(0, 1))(variables, x)),
                  jax.tree_util.tree_leaves(jax.grad(loss(conv), argnums=(0, 1))(variables, x))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  # bfloat16 inputs: the taps accumulate in float32, so they stay within bfloat16 rounding of float32.
  half = FlowPrediction("taps", dtype=jnp.bfloat16).apply(variables, x)
  np.testing.assert_allclose(np.asarray(half, np.float32), loop + [0.3, -0.2], rtol=0.05, atol=0.1)
  with pytest.raises(ValueError, match="predict_impl='fft'"):
    FlowPrediction("fft").init(jax.random.key(0), x)


@pytest.mark.parametrize("shape,features", [((2, 7, 9, 20), 4), ((1, 5, 6, 6), 5)])
def test_matmul_kernel_gradient_equals_the_convolutions(shape, features):
  """`HeadConv("matmul_grad")`: nn.Conv's parameters and forward values, and the gradients XLA takes of
  the convolution itself (inputs, kernel, bias), borders and several images included."""
  from mcjepa_jax.models.flow_head import HeadConv
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  reference = nn.Conv(features, (3, 3), padding="SAME", name="conv0")
  matmul = HeadConv(features, (3, 3), padding="SAME", impl="matmul_grad", name="conv0")
  variables = reference.init(jax.random.key(0), x)
  # Same initialisation and layout: checkpoints load into either.
  for a, b in zip(jax.tree_util.tree_leaves(matmul.init(jax.random.key(0), x)), jax.tree_util.tree_leaves(variables)):
    np.testing.assert_array_equal(a, b)
  variables = jax.tree_util.tree_map(lambda v: v + 0.1, variables)  # a non-zero bias
  np.testing.assert_array_equal(matmul.apply(variables, x), reference.apply(variables, x))
  weights = jnp.asarray(rng.normal(size=shape[:3] + (features,)), jnp.float32)
  loss = lambda module: lambda v, x: jnp.sum(jnp.tanh(module.apply(v, x)) * weights)
  got = jax.grad(loss(matmul), argnums=(0, 1))(variables, x)
  want = jax.grad(loss(reference), argnums=(0, 1))(variables, x)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # bfloat16 compute, float32 parameters: the kernel gradient comes back float32, near float32's.
  half = HeadConv(features, (3, 3), padding="SAME", impl="matmul_grad", dtype=jnp.bfloat16)
  half_grads = jax.grad(loss(half), argnums=0)({"params": variables["params"]}, x)
  assert half_grads["params"]["kernel"].dtype == jnp.float32
  want_kernel = want[0]["params"]["kernel"]
  np.testing.assert_allclose(half_grads["params"]["kernel"], want_kernel, rtol=0.05,
                             atol=0.02 * float(jnp.abs(want_kernel).max()))


def test_auto_conv_takes_the_matmul_gradient_only_where_it_pays():
  from mcjepa_jax.models.flow_head import HeadConv
  x = jnp.ones((1, 4, 4, 16))
  uses_matmul = lambda conv: "custom_vjp" in str(jax.make_jaxpr(lambda v: conv.apply(v, x))(conv.init(jax.random.key(0), x)))
  assert uses_matmul(HeadConv(4, (3, 3), padding="SAME", impl="auto")) == (jax.default_backend() == "cpu")
  assert uses_matmul(HeadConv(10, (3, 3), padding="SAME", impl="auto")) == (jax.default_backend() == "cpu")
  assert not uses_matmul(HeadConv(12, (3, 3), padding="SAME", impl="auto"))  # 16 -> 12: not clearly faster
  assert not uses_matmul(HeadConv(4, (3, 3), kernel_dilation=(2, 2), padding="SAME", impl="matmul_grad"))
  with pytest.raises(ValueError, match="conv_impl='fft'"):
    HeadConv(4, (3, 3), impl="fft").init(jax.random.key(0), x)


def test_expander_on_both_views_at_once_equals_one_call_per_view():
  """The views share each Linear pass but keep their own BatchNorm statistics: outputs and the
  running statistics equal two separate calls (VICReg's projector applied to each view)."""
  from mcjepa_jax.models.expander import Expander
  expander = Expander(widths=(32, 32, 16), bn_momentum=0.9, bn_eps=1e-5)
  rng = np.random.default_rng(3)
  # The views differ in mean and spread, so pooled statistics would give other outputs.
  x1 = jnp.asarray(rng.normal(size=(6, 12)), jnp.float32)
  x2 = jnp.asarray(rng.normal(size=(6, 12)) * 3 + 1, jnp.float32)
  variables = expander.init(jax.random.key(0), x1)
  both, both_stats = expander.apply(variables, jnp.concatenate([x1, x2]), train=True, views=2,
                                    mutable=["batch_stats"])

  def per_view(v):
    z1, stats = expander.apply(v, x1, train=True, mutable=["batch_stats"])
    z2, stats = expander.apply({"params": v["params"], **stats}, x2, train=True, mutable=["batch_stats"])
    return jnp.concatenate([z1, z2]), stats

  separate, separate_stats = per_view(variables)
  np.testing.assert_allclose(np.asarray(both), np.asarray(separate), rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(both_stats), jax.tree_util.tree_leaves(separate_stats)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  pooled, _ = expander.apply(variables, jnp.concatenate([x1, x2]), train=True, mutable=["batch_stats"])
  assert np.abs(np.asarray(pooled) - np.asarray(separate)).max() > 1e-2
  with pytest.raises(ValueError, match="does not split into 2 views"):
    expander.apply(variables, x1[:5], train=True, views=2, mutable=["batch_stats"])
