"""A short demo training run learns matching, not just a loss decrease (issue 12).

The regressions this catches were measured on the previous demo: training made the
encoder's features worse for matching than at initialisation (the true offset won the
cost volume less often at every head level) and the coarse head levels added no flow.
"""

import numpy as np
import pytest

from mcjepa_jax.config_utils import load_config
from mcjepa_jax.data.pipeline import heldout_source
from mcjepa_jax.evaluate.diagnostics import diagnose
from mcjepa_jax.train.loop import prepare

STEPS = 60


@pytest.fixture(scope="module")
def diagnoses(repo_root, tmp_path_factory):
  config = load_config(str(repo_root / "configs" / "demo.py") + ":steps=100")
  run = prepare(config, str(tmp_path_factory.mktemp("flow_learning")))
  source = heldout_source(config.data, config.seed)
  samples = [source[i] for i in range(16)]
  radius = config.model.flow_head.corr_radius
  variables = lambda: {"params": run.state.params, "batch_stats": run.state.batch_stats}
  before = diagnose(run.model, variables(), samples, radius)
  for _ in range(STEPS):
    run.state, metrics = run.step_fn(run.state, run.next_batch())
  assert np.isfinite(float(metrics["total"]))
  return before, diagnose(run.model, variables(), samples, radius)


def test_training_does_not_make_the_features_worse_for_matching(diagnoses):
  before, after = diagnoses
  mean = lambda d: float(np.mean(list(d["share"].values())))
  assert mean(after) >= mean(before) - 0.02, (before["share"], after["share"])


def test_every_head_level_adds_flow(diagnoses):
  _, after = diagnoses
  assert all(v > 0.05 for v in after["contribution"].values()), after["contribution"]
