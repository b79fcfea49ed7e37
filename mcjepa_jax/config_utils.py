"""Loading `configs/*.py` files and parsing their `get_config(arg)` argument.

Config files follow big_vision: `get_config(arg)` where `arg` is the text
after `:` on the command line, e.g. `configs/tiny.py:image_size=32,steps=10`.
"""

import importlib.util
import os

import ml_collections


def _convert(text, default):
  """Parses `text` to the type of `default` (bool, int, float or str)."""
  if isinstance(default, bool):
    lowered = text.lower()
    if lowered in ("1", "true", "yes"):
      return True
    if lowered in ("0", "false", "no"):
      return False
    raise ValueError(f"expected a boolean, got {text!r}")
  if isinstance(default, int):
    return int(text)
  if isinstance(default, float):
    return float(text)
  return text


def parse_arg(arg, **defaults):
  """`"a=1,b=x"` -> ConfigDict(a=1, b="x"), typed like `defaults`; unknown keys are errors.

  A bare name `flag` means `flag=True`.
  """
  result = ml_collections.ConfigDict(defaults)
  if not arg:
    return result
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, sep, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"config argument {key!r} is not one of {sorted(defaults)}")
    try:
      result[key] = _convert(value.strip() if sep else "true", defaults[key])
    except ValueError as e:
      raise ValueError(f"config argument {key!r}: {e}") from None
  return result


def load_module(path):
  """Imports a Python file by path (used for configs that extend a sibling config)."""
  name = "mcjepa_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or not os.path.exists(path):
    raise FileNotFoundError(f"config file not found: {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(spec):
  """`"configs/tiny.py:arg"` -> the ConfigDict that file's `get_config(arg)` returns."""
  path, _, arg = spec.partition(":")
  module = load_module(path)
  if not hasattr(module, "get_config"):
    raise AttributeError(f"config file {path} defines no get_config(arg)")
  return module.get_config(arg or None)


def apply_overrides(config, items):
  """Applies `["a.b.c=value", ...]` to a ConfigDict in place, typed like the current value.

  Tuples and lists are parsed as Python literals (`model.content_grad_scales=(0,0,1,1,1,1)`);
  an unknown key is an error naming it.
  """
  import ast  # pylint: disable=g-import-not-at-top
  for item in items:
    key, sep, text = item.partition("=")
    if not sep:
      raise ValueError(f"override {item!r} is not of the form key=value")
    *parents, leaf = key.strip().split(".")
    node = config
    for name in parents:
      if name not in node:
        raise KeyError(f"config has no field {key!r}")
      node = node[name]
    if leaf not in node:
      raise KeyError(f"config has no field {key!r}")
    old = node[leaf]
    if isinstance(old, (bool, int, float, str)):
      node[leaf] = _convert(text, old)
    elif isinstance(old, (tuple, list)):
      node[leaf] = type(old)(ast.literal_eval(text))
    else:
      node[leaf] = ast.literal_eval(text)
  return config
