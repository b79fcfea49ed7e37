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
from mcjepa_jax.ops.warp import resize_flow


def _compose(fields, size):
  """Sum of flow fields given at coarser grids, each resized to `size` (values in pixels of `size`)."""
  return sum(resize_flow(f, size) for f in fields)


def fit_free_flow(images, init_flow, loss_cfg, steps, learning_rate, occlusion_strength=1.0, scales=1):
  """Adam on a free stacked flow field against `photometric_objective`.

  Args:
    images: stacked [2B, H, W, 3] frames ([I_t; I_t+1]).
    init_flow: stacked [2B, H, W, 2] starting flows (forward rows first).
    loss_cfg: `config.loss`.
    steps, learning_rate: Adam schedule (learning rate in pixels per step).
    occlusion_strength: how fully occlusion masks apply.
    scales: the flow is the sum of fields at this many grids (full, 1/2, 1/4, ...),
      a coarse-to-fine parameterisation like a pyramid network's; 1 = one value per pixel.

  Returns:
    (flow [2B, H, W, 2], loss at the start, loss at the end).
  """
  size = tuple(images.shape[1:3])
  # Images are arguments, not closed-over constants: XLA would constant-fold the SSIM windows.
  objective = lambda fields, x: photometric_objective(x, _compose(fields, size), loss_cfg, occlusion_strength)[0]
  optimizer = optax.adam(learning_rate)

  @jax.jit
  def run(fields, x):
    def step(carry, _):
      fields, opt_state = carry
      updates, opt_state = optimizer.update(jax.grad(objective)(fields, x), opt_state)
      return (optax.apply_updates(fields, updates), opt_state), None

    start = objective(fields, x)
    (fields, _), _ = jax.lax.scan(step, (fields, optimizer.init(fields)), None, length=steps)
    return _compose(fields, size), start, objective(fields, x)

  init_flow = jnp.asarray(init_flow)
  batch, height, width, _ = init_flow.shape
  fields = [init_flow] + [jnp.zeros((batch, height // 2**k, width // 2**k, 2), init_flow.dtype)
                          for k in range(1, scales)]
  flow, start, end = run(fields, jnp.asarray(images))
  return np.asarray(flow), float(start), float(end)


def free_flow_report(samples, loss_cfg, steps=300, learning_rate=0.05, occlusion_strength=1.0, scales=1,
                     starts=("from_truth", "from_zero")):
  """Fits free flows from the truth and/or from zero on generated samples with both flow directions.

  Args:
    samples: list of dicts with "frame1", "frame2", "flow", "flow_backward" ([H, W, ...] arrays).
    loss_cfg: `config.loss`.
    starts: which of the two fits to run ("from_truth", "from_zero").

  Returns:
    dict: for each of `starts`, the forward EPE, slope, loss at start and end; plus "zero_epe",
    and "truth_loss" when "from_truth" ran.
  """
  unknown = set(starts) - {"from_truth", "from_zero"}
  if unknown:
    raise ValueError(f"free_flow_report: unknown starts {sorted(unknown)} (known: from_truth, from_zero)")
  images = np.concatenate([np.stack([s["frame1"] for s in samples]), np.stack([s["frame2"] for s in samples])])
  truth = np.concatenate([np.stack([s["flow"] for s in samples]), np.stack([s["flow_backward"] for s in samples])])
  forward = slice(0, len(samples))
  epe = lambda f: float(np.mean(np.linalg.norm(f[forward] - truth[forward], axis=-1)))
  report = {"zero_epe": epe(np.zeros_like(truth))}
  inits = {"from_truth": truth, "from_zero": np.zeros_like(truth)}
  for name in starts:
    flow, start, end = fit_free_flow(images, inits[name], loss_cfg, steps, learning_rate, occlusion_strength, scales)
    report[name] = {"epe": epe(flow), "slope": flow_slope(flow[forward], truth[forward]), "loss_start": start,
                    "loss_end": end}
  if "from_truth" in report:
    report["truth_loss"] = report["from_truth"]["loss_start"]
  return report
