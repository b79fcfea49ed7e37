"""Config files load, derive from the paper config, and reject typos clearly."""

import pytest

from mcjepa_jax.config_utils import load_config, parse_arg


def test_tiny_overrides_only_sizes(paper_config, tiny_config):
  assert paper_config.model.encoder.depths == (3, 3, 9, 3)
  assert paper_config.model.flow_head.levels == (6, 5, 4, 3, 2)
  assert paper_config.model.expander.widths == (8192, 8192, 8192)
  assert tiny_config.model.encoder.widths != paper_config.model.encoder.widths
  # The objective is the one of the paper-size config.
  assert tiny_config.loss.to_dict() == paper_config.loss.to_dict()
  assert paper_config.loss.cycle.weight == 0.2


def test_paper_option_gives_design_objective_exactly(repo_root, paper_config):
  exact = load_config(str(repo_root / "configs" / "mcjepa_convnext_t.py") + ":paper")
  assert exact.loss.smooth.weight == 75.0 and exact.loss.smooth.units == "pwc"
  assert not exact.loss.rec.normalize and not exact.loss.rec.exclude_out_of_frame
  assert exact.loss.reg.train_features and exact.loss.cycle.train_features
  assert exact.model.content_grad_scales == (1.0,) * 6 and exact.model.flow_head.source_features
  assert exact.train.flow_head_weight_decay == exact.train.weight_decay
  # Only the flow objective's choices differ from the default; model sizes and data are the same.
  assert exact.model.encoder.to_dict() == paper_config.model.encoder.to_dict()
  assert exact.data.to_dict() == paper_config.data.to_dict()


def test_apply_overrides_types_values_and_names_unknown_keys(tiny_config):
  from mcjepa_jax.config_utils import apply_overrides
  config = tiny_config.copy_and_resolve_references()
  apply_overrides(config, ["model.content_grad_scales=(1, 0, 1, 1, 1, 1)", "loss.rec.normalize=false",
                           "loss.smooth.weight=0.5", "loss.smooth.units=pixel"])
  assert config.model.content_grad_scales == (1, 0, 1, 1, 1, 1) and config.loss.rec.normalize is False
  assert config.loss.smooth.weight == 0.5 and config.loss.smooth.units == "pixel"
  with pytest.raises(KeyError, match="loss.smooth.wieght"):
    apply_overrides(config, ["loss.smooth.wieght=1"])


def test_typo_in_config_key_names_the_key(tiny_config):
  with pytest.raises(AttributeError, match="nrom"):
    _ = tiny_config.loss.reg.nrom


def test_parse_arg_types_and_unknown_keys():
  arg = parse_arg("steps=5,lr=0.5,name=x,fast", steps=1, lr=1.0, name="a", fast=False)
  assert (arg.steps, arg.lr, arg.name, arg.fast) == (5, 0.5, "x", True)
  with pytest.raises(ValueError, match="'stpes'"):
    parse_arg("stpes=5", steps=1)
  with pytest.raises(ValueError, match="'steps'"):
    parse_arg("steps=five", steps=1)


def test_missing_config_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.py"):
    load_config(str(tmp_path / "nope.py"))


@pytest.mark.parametrize("key, value, message", [
    ("model.encoder.name", "resnet", "unknown encoder .*convnext"),
    ("model.flow_head.levels", (7, 6, 5), r"levels must lie in 1..6"),
    ("model.flow_head.levels", (4, 2), "coarse to fine one level at a time"),
    ("model.content_grad_scales", (1.0, 1.0), "needs 6 values"),
    ("loss.vc.level_weights", ((0.01, 0.04),), r"needs 6 \(variance, covariance\) pairs"),
    ("loss.smooth.units", "furlongs", "known: image, pixel, pwc"),
    ("data.pairs.crop", (64, 96), "multiple of the encoder's stride 64"),
    ("data.pairs.crop", (0, 64), "multiple of the encoder's stride 64"),
    ("data.pairs.full_image_margin", -8, "an integer >= 0"),
    ("eval.flow_margin", -8, "an integer >= 0"),
    ("eval.occlusion_fill.radius", -1, "an integer >= 0"),
    ("eval.coarse_factor", 0, "an integer >= 1"),
    ("eval.occlusion_fill.color_sigma", 0.0, "a number > 0"),
    ("train.video_batch_size", 0, "must be > 0"),
    ("train.encoder_lr", -1e-3, "must be > 0"),
    ("data.views.size", 32, "at least the encoder's stride 64"),
    ("model.flow_head.normalize_features", "l2", "known: none, pair, pixel"),
    ("model.flow_head.upsample", "nearest", "known: bilinear, convex"),
    ("model.flow_head.refine_passes", -1, "must be >= 0"),
    ("model.flow_head.predict_impl", "fft", "known: auto, conv, taps"),
    ("model.flow_head.conv_impl", "fft", "known: auto, conv, matmul_grad"),
])
def test_impossible_config_values_are_named_before_anything_compiles(tiny_config, key, value, message):
  from mcjepa_jax.config_checks import validate_config
  config = tiny_config.copy_and_resolve_references()
  *parents, leaf = key.split(".")
  node = config
  for name in parents:
    node = node[name]
  node[leaf] = value
  with pytest.raises(ValueError, match=rf"config\.{key.replace('.', '[.]')}=.*{message}"):
    validate_config(config)


def test_shipped_configs_validate_and_the_paper_model_takes_224_pixel_views(repo_root):
  import jax
  import jax.numpy as jnp
  from mcjepa_jax.config_checks import validate_config
  from mcjepa_jax.config_utils import load_config
  from mcjepa_jax.models import build_model
  for name in ("tiny.py", "demo.py", "demo.py:paper", "mcjepa_convnext_t.py", "mcjepa_convnext_t.py:paper",
               "mcjepa_real.py"):
    validate_config(load_config(str(repo_root / "configs" / name)))
  config = load_config(str(repo_root / "configs" / "mcjepa_convnext_t.py"))
  model = build_model(config.model)
  frames, views = jnp.zeros((1, 64, 64, 3)), jnp.zeros((2, 224, 224, 3))
  out = jax.eval_shape(lambda k, f, v: model.apply(model.init(k, f, f, v, v), f, f, v, v),
                       jax.random.key(0), frames, views)
  assert out["content"]["embeddings"][0].shape == (2, 8192) and out["video"]["flow"].shape == (2, 64, 64, 2)
