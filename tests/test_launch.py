"""launch/ scripts: valid shell, usage errors without arguments, and the exact TPU-pod commands."""

import os
import subprocess

import pytest

LAUNCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "launch")
SCRIPTS = ("local.sh", "tpu_pod.sh", "slurm.sbatch")


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses_and_prints_usage_without_arguments(script):
  path = os.path.join(LAUNCH, script)
  assert subprocess.run(["bash", "-n", path], check=False).returncode == 0
  result = subprocess.run(["bash", path], capture_output=True, text=True, check=False)
  assert result.returncode == 2 and "usage" in result.stderr


def test_tpu_pod_runs_the_trainer_on_every_worker_with_a_bucket_workdir():
  path = os.path.join(LAUNCH, "tpu_pod.sh")
  args = ["bash", path, "pod", "us-central2-b", "v4-32", "configs/mcjepa_convnext_t.py", "gs://b/run"]
  result = subprocess.run(args, capture_output=True, text=True, check=False, env=dict(os.environ, DRY_RUN="1"))
  assert result.returncode == 0, result.stderr
  create, scp, ssh = result.stdout.strip().splitlines()
  assert "create pod" in create and "--accelerator-type v4-32" in create
  assert "--worker=all" in scp and "--worker=all" in ssh
  assert "MCJEPA_DISTRIBUTED=1" in ssh and "--workdir gs://b/run" in ssh
  local = subprocess.run(args[:-1] + ["/tmp/run"], capture_output=True, text=True, check=False,
                         env=dict(os.environ, DRY_RUN="1"))
  assert local.returncode == 2 and "gs://" in local.stderr
