"""Free-flow check of the flow objective: is the true flow a minimum of it?

A network can only learn the flow its objective prefers. Optimising a free
flow field (one value per pixel, no network) against `photometric_objective`
shows what that is: started at the truth it must stay near the truth, and
started at zero it shows how far the objective alone pulls towards it. A
smoothness weight that is too strong makes the optimum a shrunk copy of the
truth (measured before this check existed: the truth drifted from EPE 0 to 1.50).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mcjepa_jax.evaluate.flow_eval import flow_slope
from mcjepa_jax.losses.objective import photometric_objective


def fit_free_flow(images, init_flow, loss_cfg, steps, learning_rate, occlusion_strength=1.0):
  """Adam on a free stacked flow field against `photometric_objective`.

  Args:
    images: stacked [2B, H, W, 3] frames ([I_t; I_t+1]).
    init_flow: stacked [2B, H, W, 2] starting flows (forward rows first).
    loss_cfg: `config.loss`.
    steps, learning_rate: Adam schedule (learning rate in pixels per step).
    occlusion_strength: how fully occlusion masks apply.

  Returns:
    (flow [2B, H, W, 2], loss at the start, loss at the end).
  """
  # Images are arguments, not closed-over constants: XLA would constant-fold the SSIM windows.
  objective = lambda f, x: photometric_objective(x, f, loss_cfg, occlusion_strength)[0]
  optimizer = optax.adam(learning_rate)

  @jax.jit
  def run(flow, x):
    def step(carry, _):
      flow, opt_state = carry
      updates, opt_state = optimizer.update(jax.grad(objective)(flow, x), opt_state)
      return (optax.apply_updates(flow, updates), opt_state), None

    start = objective(flow, x)
    (flow, _), _ = jax.lax.scan(step, (flow, optimizer.init(flow)), None, length=steps)
    return flow, start, objective(flow, x)

  flow, start, end = run(jnp.asarray(init_flow), jnp.asarray(images))
  return np.asarray(flow), float(start), float(end)


def free_flow_report(samples, loss_cfg, steps=300, learning_rate=0.05, occlusion_strength=1.0):
  """Fits free flows from the truth and from zero on generated samples with both flow directions.

  Args:
    samples: list of dicts with "frame1", "frame2", "flow", "flow_backward" ([H, W, ...] arrays).
    loss_cfg: `config.loss`.

  Returns:
    dict: for "from_truth" and "from_zero", the forward EPE, slope, loss at start and end;
    plus "zero_epe" and "truth_loss".
  """
  images = np.concatenate([np.stack([s["frame1"] for s in samples]), np.stack([s["frame2"] for s in samples])])
  truth = np.concatenate([np.stack([s["flow"] for s in samples]), np.stack([s["flow_backward"] for s in samples])])
  forward = slice(0, len(samples))
  epe = lambda f: float(np.mean(np.linalg.norm(f[forward] - truth[forward], axis=-1)))
  report = {"zero_epe": epe(np.zeros_like(truth))}
  for name, init in (("from_truth", truth), ("from_zero", np.zeros_like(truth))):
    flow, start, end = fit_free_flow(images, init, loss_cfg, steps, learning_rate, occlusion_strength)
    report[name] = {"epe": epe(flow), "slope": flow_slope(flow[forward], truth[forward]), "loss_start": start,
                    "loss_end": end}
  report["truth_loss"] = report["from_truth"]["loss_start"]
  return report
