"""A few optimizer steps of the tiny model on a translated real image lower the flow loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from skimage import data, transform

from mcjepa_jax.models import build_model
from mcjepa_jax.models.params import init_variables
from mcjepa_jax.train.optimizer import make_optimizer
from mcjepa_jax.train.step import create_train_state, loss_schedules, make_train_step

SHIFT_X, SHIFT_Y = 3, 2


def translated_pair(size=64):
  """Two crops of a real photograph; scene content moves by (+SHIFT_X, +SHIFT_Y) from frame 1 to 2."""
  image = transform.resize(data.astronaut(), (size + 16, size + 16), anti_aliasing=True).astype(np.float32)
  frame1 = image[8:8 + size, 8:8 + size]
  frame2 = image[8 - SHIFT_Y:8 - SHIFT_Y + size, 8 - SHIFT_X:8 - SHIFT_X + size]
  return frame1, frame2


@pytest.fixture(scope="module")
def setup(tiny_config):
  config = tiny_config.copy_and_resolve_references()
  train = config.train
  train.total_steps, train.warmup_steps = 100, 0
  train.flow_start_steps, train.vc_warmup_steps, train.occlusion_start_steps = 0, 1, 10**6
  train.encoder_lr = train.flow_head_lr = 1e-3
  frame1, frame2 = translated_pair()
  rng = np.random.default_rng(0)
  views = rng.uniform(size=(2, 4, 64, 64, 3)).astype(np.float32)
  batch = {"frames1": jnp.asarray(np.stack([frame1] * 2)), "frames2": jnp.asarray(np.stack([frame2] * 2)),
           "views1": jnp.asarray(views[0]), "views2": jnp.asarray(views[1])}
  model = build_model(config.model)
  variables = init_variables(model, jax.random.key(0), batch["frames1"], batch["frames2"], batch["views1"],
                             batch["views2"])
  optimizer, _ = make_optimizer(config.train)
  state = create_train_state(variables, optimizer, jax.random.key(1))
  return config, model, batch, state, jax.jit(make_train_step(model, optimizer, config))


def test_flow_loss_decreases_and_flow_finds_the_translation(setup):
  _, model, batch, state, step = setup
  _, first = step(state, batch)
  for _ in range(40):
    state, metrics = step(state, batch)
  assert np.isfinite(float(metrics["total"]))
  assert float(metrics["flow"]) < 0.7 * float(first["flow"])
  assert float(metrics["flow/rec"]) < 0.6 * float(first["flow/rec"])
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  video = jax.jit(lambda v, a, b: model.apply(v, a, b, method=model.video))(variables, batch["frames1"],
                                                                            batch["frames2"])
  interior = np.asarray(video["flow"])[:, 8:-8, 8:-8].mean(axis=(1, 2))
  np.testing.assert_allclose(interior[0], [SHIFT_X, SHIFT_Y], atol=1.0)   # forward
  np.testing.assert_allclose(interior[2], [-SHIFT_X, -SHIFT_Y], atol=1.0)  # backward


def test_grad_norm_metric_is_the_norm_of_the_gradient(setup):
  # After one step from zero, Adam's first moment is (1 - b1) * g: the gradient seen from the optimizer.
  _, _, batch, state, step = setup
  new_state, metrics = step(state, batch)
  is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
  moments = [s.mu for s in jax.tree_util.tree_leaves(new_state.opt_state, is_leaf=is_adam) if is_adam(s)]
  squares = sum(float(jnp.sum(jnp.square(m))) for m in jax.tree_util.tree_leaves(moments))
  assert squares > 0
  np.testing.assert_allclose(float(metrics["grad_norm"]), np.sqrt(squares) / (1 - 0.9), rtol=1e-4)


def test_compiler_options_update_the_donated_state_in_place_with_the_same_numbers(setup):
  """`step_compiler_options`: no copy of any donated parameter before the update, and the step's
  new state and metrics equal those of XLA's default compilation to the bit."""
  import re
  from mcjepa_jax.train.step import step_compiler_options
  config, model, batch, state, _ = setup
  optimizer, _ = make_optimizer(config.train)
  step_fn = make_train_step(model, optimizer, config)
  tuned = jax.jit(step_fn, donate_argnums=0, compiler_options=step_compiler_options()).lower(state, batch).compile()
  plain = jax.jit(step_fn).lower(state, batch).compile()
  if jax.default_backend() == "cpu":
    # Entry parameters are named after the state's fields (state.params[...] -> %state_params...).
    assert not re.findall(r"copy\(%state_params", tuned.as_text())
  copy = lambda tree: jax.tree_util.tree_map(jnp.copy, tree)  # the tuned step consumes its input
  want = plain(state, batch)
  got = tuned(copy(state), batch)
  raw = lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_array_equal(raw(a), raw(b))


def test_schedules_switch_flow_vc_and_occlusion(tiny_config):
  train = tiny_config.train.copy_and_resolve_references()
  train.flow_start_steps, train.vc_warmup_steps, train.occlusion_start_steps = 10, 4, 20
  train.occlusion_ramp_steps = 2
  values = {s: [float(v) for v in loss_schedules(jnp.asarray(s), train)] for s in (0, 9, 10, 11, 13, 19, 20, 21, 99)}
  assert values[0] == [0.0, 0.0, 0.0] and values[9] == [0.0, 0.0, 0.0]
  assert values[10] == [1.0, 0.25, 0.0] and values[11] == [1.0, 0.5, 0.0]
  assert values[13] == [1.0, 1.0, 0.0] and values[20] == [1.0, 1.0, 0.5]
  assert values[21] == [1.0, 1.0, 1.0] and values[99] == [1.0, 1.0, 1.0]


def test_bad_image_size_raises_clear_error(tiny_config):
  model = build_model(tiny_config.model)
  with pytest.raises(ValueError, match="multiples of 64"):
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x, x, x, x), jax.ShapeDtypeStruct((1, 48, 64, 3), jnp.float32))


def test_skip_nonfinite_updates_keeps_parameters_and_counts(tiny_config):
  import optax
  from mcjepa_jax.train.loop import NonFiniteError, _check_finite
  from mcjepa_jax.train.optimizer import make_optimizer, skipped_update_metrics
  train = tiny_config.train.copy_and_resolve_references()
  train.skip_nonfinite_updates = 2
  optimizer, _ = make_optimizer(train)
  params = {"encoder": {"w": jnp.ones((2, 2))}, "flow_head": {"b": jnp.ones((3,))}}
  state = optimizer.init(params)
  finite = jax.tree_util.tree_map(jnp.ones_like, params)
  broken = jax.tree_util.tree_map(lambda x: jnp.full_like(x, jnp.nan), params)
  seen = []
  for grads in (finite, broken, broken, broken):
    updates, state = optimizer.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    metrics = skipped_update_metrics(state, train)
    seen.append((float(metrics["update_skipped"]), float(metrics["skipped_updates"]),
                 bool(all(jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(new)))))
    params = new if seen[-1][2] else params
  # Two non-finite updates in a row are dropped; the third is past the limit and counts as applied.
  assert seen == [(0.0, 0.0, True), (1.0, 1.0, True), (1.0, 2.0, True), (0.0, 3.0, False)]

  class Manager:
    directory = "CKPT"
    def wait_until_finished(self):
      pass
    def latest_step(self):
      return 7

  nan = float("nan")
  _check_finite([{"total": 1.0, "update_skipped": 0.0}, {"total": nan, "update_skipped": 1.0}], 9, Manager())
  with pytest.raises(NonFiniteError, match="step 9: non-finite total; .*step 7, is kept in CKPT"):
    _check_finite([{"total": 1.0, "update_skipped": 0.0}, {"total": nan, "update_skipped": 0.0}], 9, Manager())
