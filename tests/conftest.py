"""Shared test setup: CPU-only JAX, repository paths and the shared sample data."""

import os
import pathlib

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests run each program for a handful of steps: XLA's backend optimisation costs far more
# compile time than it saves (measured: suite 943 s -> see docs/benchmarks.md).
FAST_COMPILE = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root():
  return REPO


@pytest.fixture(scope="session")
def shared_data():
  if not SHARED_DATA.is_dir():
    pytest.skip(f"shared sample data not found at {SHARED_DATA}")
  return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_config():
  from mcjepa_jax.config_utils import load_config
  return load_config(str(REPO / "configs" / "tiny.py"))


@pytest.fixture(scope="session")
def paper_config():
  from mcjepa_jax.config_utils import load_config
  return load_config(str(REPO / "configs" / "mcjepa_convnext_t.py"))


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA cache per test session: identical programs (e.g. the same train step
  built again after a simulated kill) are compiled once."""
  import jax
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  yield


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", default=False,
                   help="also run tests marked slow (minutes each; not in CI's default run)")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: minutes-long test, run with --runslow or MCJEPA_SLOW=1")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow") or os.environ.get("MCJEPA_SLOW"):
    return
  skip = pytest.mark.skip(reason="slow: run with --runslow or MCJEPA_SLOW=1")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)
