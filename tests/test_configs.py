"""Config files load, derive from the paper config, and reject typos clearly."""

import pytest

from mcjepa_jax.config_utils import load_config, parse_arg


def test_tiny_overrides_only_sizes(paper_config, tiny_config):
  assert paper_config.model.encoder.depths == (3, 3, 9, 3)
  assert paper_config.model.flow_head.levels == (6, 5, 4, 3, 2)
  assert paper_config.model.expander.widths == (8192, 8192, 8192)
  assert tiny_config.model.encoder.widths != paper_config.model.encoder.widths
  # The objective is the paper's.
  assert tiny_config.loss.to_dict() == paper_config.loss.to_dict()
  assert paper_config.loss.smooth.weight == 75.0 and paper_config.loss.cycle.weight == 0.2


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
