"""The seed's variant: ViT encoder + multi-scale adapter, I-JEPA masks, predictor and EMA target (issue 16)."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mcjepa_jax.config_checks import validate_config
from mcjepa_jax.config_utils import load_config
from mcjepa_jax.losses.ijepa import block_targets, ema_update, ijepa_loss, normalize_tokens
from mcjepa_jax.models import build_model
from mcjepa_jax.models.params import abstract_variables, count_params, init_variables
from mcjepa_jax.ops.masks import _block, context_tokens, sample_masks, target_tokens
from mcjepa_jax.train.step import ijepa_batch_targets

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


def _vit_demo(**train):
  config = load_config(os.path.join(CONFIGS, "vit_ijepa_demo.py") + ":steps=8")
  config.train.update(train)
  # Two blocks and a one-block predictor: the same code paths, less to compile.
  config.model.encoder.depth, config.model.predictor.depth = 2, 1
  return config


def _vit_backbone_params(patch, width, depth):
  """Patch embedding + `depth` pre-norm blocks + final LayerNorm, from the layer formulas."""
  patch_embed = patch * patch * 3 * width + width
  attention = 4 * width * width + 4 * width          # q, k, v, out projections with biases
  mlp = 2 * 4 * width * width + 4 * width + width    # D -> 4D -> D with biases
  norms = 2 * 2 * width
  return patch_embed + depth * (attention + mlp + norms) + 2 * width


@pytest.mark.parametrize("size,width,heads,standard", [("small", 384, 6, 21_665_664), ("base", 768, 12, 85_798_656)])
def test_vit_backbone_parameter_counts(size, width, heads, standard):
  config = load_config(os.path.join(CONFIGS, "mcjepa_vit_ijepa.py") + (":base" if size == "base" else ""))
  validate_config(config)
  model = build_model(config.model)
  params = abstract_variables(model, (1, 64, 64, 3), (1, 64, 64, 3))["params"]["encoder"]
  backbone = count_params(params["patch_embed"]) + count_params(params["transformer"])
  assert backbone == _vit_backbone_params(16, width, 12)
  # timm's ViT-S/16, B/16 without the classifier also hold a class token and 197 learned positions.
  assert backbone + width + 197 * width == standard
  assert config.model.encoder.num_heads == heads


def test_adapter_gives_the_flow_head_six_levels_and_flow_runs_unchanged_with_vicreg_too():
  config = _vit_demo()
  config.loss.content.name = "vicreg"  # the other content objective on the ViT (model.content follows)
  validate_config(config)
  model = build_model(config.model)
  assert model.expander is not None and model.predictor is None
  frames = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 64, 128, 3)), jnp.float32)
  variables = init_variables(model, jax.random.PRNGKey(0), frames, frames, frames[:, :, :64], frames[:, :, :64])
  outputs = jax.jit(lambda v, a, b, c: model.apply(v, a, b, c, c))(variables, frames, frames[:, :, ::-1],
                                                                    frames[:, :, :64])
  video = outputs["video"]
  widths = tuple(config.model.encoder.stem_widths) + tuple(config.model.encoder.adapter_widths)
  assert [p.shape for p in video["pyramid"]] == [(4, 64 // 2**l, 128 // 2**l, w) for l, w in zip(range(1, 7), widths)]
  assert video["flow"].shape == (4, 64, 128, 2) and bool(jnp.all(jnp.isfinite(video["flow"])))
  assert video["pooled"].shape == (4, config.model.encoder.width)
  assert outputs["content"]["embeddings"][0].shape == (2, config.model.expander.widths[-1])


def _mask_config(**changes):
  return ml_collections.ConfigDict(dict(num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                                        context_scale=(0.85, 1.0), context_keep=0.25, **changes))


def test_masks_counts_scales_determinism_and_no_visible_target():
  cfg, grid = _mask_config(), (14, 14)
  masks = jax.jit(lambda k: sample_masks(k, 64, grid, cfg))(jax.random.PRNGKey(3))
  count, size = context_tokens(grid, cfg), target_tokens(grid, cfg)
  assert count == 49 and size == 20  # 14x14 tokens: floor(0.25 * 196); the smallest block is 4 x 5
  assert masks["context_indices"].shape == (64, count) and masks["target_indices"].shape == (64, 4, size)
  context, valid = np.asarray(masks["context_indices"]), np.asarray(masks["context_valid"])
  blocks, targets = np.asarray(masks["target_masks"]), np.asarray(masks["target_indices"])
  for b in range(64):
    union = blocks[b].any(axis=0)
    assert not union[context[b][valid[b]]].any(), "a context token lies in a target block"
    assert len(set(context[b][valid[b]])) == valid[b].sum()
    for t in range(4):
      assert blocks[b, t, targets[b, t]].all() and len(set(targets[b, t])) == size
  # Block areas: within the rounding of scale 0.15-0.2 of the grid; each image gets its own blocks.
  areas = blocks.sum(axis=-1) / 196
  assert areas.min() >= size / 196 and areas.max() <= 0.26 and 0.14 < areas.mean() < 0.21
  assert len({tuple(np.flatnonzero(blocks[b, 0])) for b in range(64)}) > 32
  # Context block scale 0.85-1 (clipped to 13 x 13) less the targets: most images fill the count.
  assert 0.5 < valid.mean() <= 1.0
  again = sample_masks(jax.random.PRNGKey(3), 64, grid, cfg)
  other = sample_masks(jax.random.PRNGKey(4), 64, grid, cfg)
  assert all(np.array_equal(again[k], masks[k]) for k in masks)
  assert not np.array_equal(other["target_masks"], masks["target_masks"])


def test_block_sizes_follow_ijepa_formula():
  # s = 0.2, a = 1 on 14 x 14: h = w = round(sqrt(0.2 * 196)) = 6.
  block = np.asarray(_block(jax.random.PRNGKey(0), (0.2, 0.2), (1.0, 1.0), (14, 14)))
  rows, cols = np.nonzero(block)
  assert rows.max() - rows.min() + 1 == 6 and cols.max() - cols.min() + 1 == 6 and block.sum() == 36


@pytest.mark.parametrize("encoder", ["vit", "convnext"])
def test_predictions_do_not_depend_on_pixels_outside_the_context(encoder):
  """What the predictor sees of an image is its context tokens: changing any other pixel changes nothing."""
  if encoder == "vit":
    config = _vit_demo()
  else:
    config = load_config(os.path.join(CONFIGS, "tiny.py"))
    config.loss.content.name = "ijepa"
  model = build_model(config.model)
  rng = np.random.default_rng(1)
  views = jnp.asarray(rng.uniform(size=(4, 64, 64, 3)), jnp.float32)
  variables = init_variables(model, jax.random.PRNGKey(0), views, views, views, views)
  grid = model.token_grid(views)
  masks = sample_masks(jax.random.PRNGKey(5), 4, grid, config.loss.ijepa)
  side = model.encoder.token_stride
  keep = np.zeros((4, grid[0] * grid[1]), bool)
  for b in range(4):
    keep[b, np.asarray(masks["context_indices"][b])[np.asarray(masks["context_valid"][b])]] = True
  pixels = np.repeat(np.repeat(keep.reshape(4, *grid), side, axis=1), side, axis=2)[..., None]
  changed = jnp.where(pixels, views, jnp.asarray(rng.uniform(size=views.shape), jnp.float32))
  predict = jax.jit(lambda v, x: model.apply(v, x, x, masks=masks, method=model.content)["predictions"])
  before, after = predict(variables, views), predict(variables, changed)
  assert before.shape == (4, 4, target_tokens(grid, config.loss.ijepa), model.encoder.width
                          if encoder == "vit" else config.model.encoder.widths[config.model.encoder.token_level - 3])
  # The same arithmetic on the same values (tokens dropped, or pixels blanked): bit-identical.
  np.testing.assert_array_equal(np.asarray(after), np.asarray(before))
  assert float(jnp.max(jnp.abs(predict(variables, views[::-1]) - before))) > 1e-5


def test_target_encoder_gets_no_gradient_and_a_perfect_predictor_has_zero_loss():
  config = _vit_demo()
  model = build_model(config.model)
  views = jnp.asarray(np.random.default_rng(2).uniform(size=(4, 64, 64, 3)), jnp.float32)
  variables = init_variables(model, jax.random.PRNGKey(0), views, views, views, views)
  masks = sample_masks(jax.random.PRNGKey(6), 4, model.token_grid(views), config.loss.ijepa)

  def loss(params, ema):
    predictions = model.apply({"params": params}, views, views, masks=masks, method=model.content)["predictions"]
    return ijepa_loss(predictions, ijepa_batch_targets(model, ema, views, masks)[0])[0]

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], variables["params"]["encoder"])
  assert all(not np.any(np.asarray(g)) for g in jax.tree_util.tree_leaves(grads[1]))
  assert any(np.any(np.asarray(g)) for g in jax.tree_util.tree_leaves(grads[0]["predictor"]))

  tokens = model.apply({"params": {"encoder": variables["params"]["encoder"]}}, views, method=model.target_tokens)
  targets = block_targets(tokens, masks["target_indices"])
  assert float(ijepa_loss(targets, targets)[0]) == 0.0
  assert float(ijepa_loss(targets + 0.5, targets)[0]) == pytest.approx(0.25)
  # Targets are layer-normalised tokens: zero mean and unit variance over the channels.
  np.testing.assert_allclose(np.asarray(jnp.mean(targets, -1)), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(normalize_tokens(tokens).std(-1)), 1.0, atol=1e-3)


def test_ema_update_is_the_formula_leaf_by_leaf():
  rng = np.random.default_rng(3)
  ema = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": {"c": rng.normal(size=5).astype(np.float32)}}
  online = jax.tree_util.tree_map(lambda x: x + 1.0, ema)
  updated = ema_update(ema, online, 0.996)
  # Equal up to float32 rounding (XLA may fuse the multiply-add).
  for e, o, u in zip(*(jax.tree_util.tree_leaves(t) for t in (ema, online, updated))):
    np.testing.assert_allclose(np.asarray(u), 0.996 * e.astype(np.float64) + 0.004 * o, rtol=2e-7, atol=0)
  assert jax.tree_util.tree_structure(updated) == jax.tree_util.tree_structure(ema)


def test_train_step_updates_the_ema_target_and_a_checkpoint_restores_it_bit_exactly(tmp_path):
  from mcjepa_jax.train.loop import prepare  # pylint: disable=g-import-not-at-top
  config = _vit_demo(video_batch_size=2, image_batch_size=4, checkpoint_every=1)
  run = prepare(config, tmp_path / "run")
  assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
             zip(jax.tree_util.tree_leaves(run.state.ema), jax.tree_util.tree_leaves(run.state.params["encoder"])))
  # Step 0 runs at the warm-up's zero learning rate; step 1 moves the encoder.
  run.state, metrics = run.step_fn(run.state, run.next_batch())
  assert float(metrics["ema_momentum"]) == pytest.approx(0.996)
  before = jax.tree_util.tree_map(np.asarray, run.state.ema)
  run.state, metrics = run.step_fn(run.state, run.next_batch())
  momentum = float(metrics["ema_momentum"])
  assert momentum == pytest.approx(0.996 + 0.004 / 8) and float(metrics["embedding_std"]) > 0.0
  online = jax.tree_util.tree_leaves(run.state.params["encoder"])
  for e, o, u in zip(jax.tree_util.tree_leaves(before), online, jax.tree_util.tree_leaves(run.state.ema)):
    np.testing.assert_allclose(np.asarray(u), momentum * e + (1 - momentum) * np.asarray(o), rtol=0, atol=1e-7)
  assert not all(np.array_equal(a, np.asarray(b)) for a, b in zip(jax.tree_util.tree_leaves(before), online))
  run.save(force=True)
  run.manager.wait_until_finished()
  run.manager.close()
  resumed = prepare(config, tmp_path / "run", compile_step=False)
  assert resumed.restored_step == 2
  for a, b in zip(jax.tree_util.tree_leaves(run.state.ema), jax.tree_util.tree_leaves(resumed.state.ema)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  resumed.manager.close()

  # The EMA encoder is an optional part of an export, and of a model loaded from the workdir.
  from mcjepa_jax.export import export_run  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.inference import load_pretrained  # pylint: disable=g-import-not-at-top
  (tmp_path / "run" / "config.json").write_text(config.to_json_best_effort())
  metadata = export_run(tmp_path / "run", tmp_path / "export")
  assert metadata["parts"] == ["encoder", "flow_head", "predictor", "target_encoder"]
  assert metadata["parameters"]["target_encoder"] == metadata["parameters"]["encoder"]
  for source in ("run", "export"):
    _, variables = load_pretrained(tmp_path / source)
    for a, b in zip(jax.tree_util.tree_leaves(run.state.ema),
                    jax.tree_util.tree_leaves(variables["params"]["target_encoder"])):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  flow_only = export_run(tmp_path / "run", tmp_path / "flow_only", parts=["encoder", "flow_head"])
  assert flow_only["parts"] == ["encoder", "flow_head"]


def test_config_checks_name_the_vit_and_ijepa_keys():
  for key, value, words in (("model.encoder.patch_size", 12, "power of two"),
                            ("model.encoder.num_heads", 3, "divide the width"),
                            ("model.encoder.adapter_widths", (8, 8), "adapter_widths"),
                            ("loss.ijepa.target_scale", (0.3, 0.2), "0 < low <= high"),
                            ("loss.content.name", "simclr", "known: vicreg, ijepa")):
    config = _vit_demo()
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
    with pytest.raises(ValueError, match=words):
      validate_config(config)


def test_learned_positions_are_resized_to_the_token_grid_and_sincos_is_the_formula():
  from mcjepa_jax.models.vit import ViTEncoder, sincos_2d  # pylint: disable=g-import-not-at-top
  encoder = ViTEncoder(patch_size=8, width=16, depth=1, num_heads=2, mlp_ratio=2.0, posemb="learn",
                       posemb_grid=(4, 4), layer_scale_init=0.1, drop_path_rate=0.0, norm_eps=1e-6,
                       stem_widths=(4, 4), stem_kernels=(4, 4), adapter_widths=(4, 4, 4, 4))
  images = jnp.zeros((1, 64, 128, 3))
  variables = encoder.init(jax.random.PRNGKey(0), images)
  assert variables["params"]["posemb"].shape == (4, 4, 16)
  assert "layer_scale1" in variables["params"]["transformer"]["block0"]
  tokens = encoder.apply(variables, images, tokens=True)
  assert tokens.shape == (1, 8 * 16, 16) and bool(jnp.all(jnp.isfinite(tokens)))
  table = np.asarray(sincos_2d(2, 3, 8))
  row, col = 1, 2  # token 5: sin/cos of the row and of the column at frequencies 1 and 1e4^-0.5
  omega = np.array([1.0, 10_000.0**-0.5])
  np.testing.assert_allclose(table[row * 3 + col], np.concatenate(
      [np.sin(row * omega), np.cos(row * omega), np.sin(col * omega), np.cos(col * omega)]), rtol=1e-6)
