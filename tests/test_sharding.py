"""One global batch gives the same losses and gradients on 1 device and sharded over 8 (fake CPU) devices."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_eight_device_data_parallel_matches_single_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, os.path.join(HERE, "sharding_parity.py")], env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  diffs = json.loads(result.stdout.strip().splitlines()[-1])
  worst_term = max(diffs["terms"].items(), key=lambda kv: kv[1])
  assert worst_term[1] < 1e-5, diffs["terms"]
  assert diffs["grads"] < 1e-5, diffs
