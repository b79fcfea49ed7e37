"""Sharded computation over 8 (fake CPU) devices equals the single-device computation."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def eight_device_results():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0",
             JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, os.path.join(HERE, "sharding_parity.py")], env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mesh", ["data", "data+fsdp"])
def test_loss_terms_and_gradients_match_single_device(eight_device_results, mesh):
  diffs = eight_device_results[mesh]
  worst_term = max(diffs["terms"].items(), key=lambda kv: kv[1])
  assert worst_term[1] < 1e-5, diffs["terms"]
  assert diffs["grads"] < 1e-5, diffs
  if mesh == "data+fsdp":
    assert diffs["fsdp_sharded_leaves"] > 10, "fsdp should split the parameters"


def test_vicreg_statistics_are_global_not_per_device(eight_device_results):
  vicreg = eight_device_results["vicreg"]
  assert abs(vicreg["sharded"] - vicreg["single"]) <= 1e-5 * abs(vicreg["single"]), vicreg
  # Per-device statistics (the average of local VICReg losses) would be far off.
  assert abs(vicreg["local_average"] - vicreg["single"]) > 0.1 * abs(vicreg["single"]), vicreg


def test_vit_ijepa_step_matches_single_device(eight_device_results):
  """Masks, predictor, EMA target and the flow branch on a ViT: the same step on (data=4, fsdp=2)."""
  ijepa = eight_device_results["ijepa"]
  assert max(ijepa["terms"].values()) < 1e-5, ijepa["terms"]
  assert ijepa["ema"] < 1e-5 and ijepa["fsdp_sharded_ema_leaves"] > 10, ijepa
  assert ijepa["content"] > 0.0
