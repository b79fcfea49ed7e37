"""Per-device memory of a config's train step, on paper: which accelerators it fits, at what batch.

  python benchmarks/memory_plan.py [--config configs/mcjepa_convnext_t.py] [--json OUT]

Nothing runs on a device: every figure comes from shapes (`jax.eval_shape`).
  - parameters P, Adam's two moments 2P and (I-JEPA) the EMA encoder, float32, divided by the
    fsdp size; the gradient, also float32 and fsdp-split after its reduce-scatter;
  - the activations the forward pass keeps for the backward one: the arrays of `jax.vjp`'s
    closure of the real loss (`MCJEPA.__call__` + `mcjepa_loss`), for each compute dtype and
    remat setting, fitted as R0 + a * pairs + b * images over three small batches of the
    config's own frame and view sizes (the fit is exact: activations are linear in the batch).
    R0 holds what does not grow with the batch (weights the backward pass reads, or their
    bfloat16 copies), counted in full: an upper bound in float32, where they are the
    parameters themselves.
XLA adds workspace for the largest fused op and fragmentation: a plan is "fits" when the sum
stays under 90 % of the device's memory. Gradient communication per device per step: ring
all-reduce 2 (N - 1) / N P bytes (data parallel), or reduce-scatter + parameter all-gather
(N - 1) / N P each (fsdp), at the interconnect bandwidths of `LINKS`.
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from mcjepa_jax.config_utils import load_config  # pylint: disable=wrong-import-position
from mcjepa_jax.losses.objective import mcjepa_loss  # pylint: disable=wrong-import-position
from mcjepa_jax.models import build_model  # pylint: disable=wrong-import-position
from mcjepa_jax.models.params import count_params  # pylint: disable=wrong-import-position

GIB = 2**30
DEVICES = {  # memory per device (bytes)
    "V100-32GB": 32e9, "A100-40GB": 40e9, "A100-80GB": 80e9, "H100-80GB": 80e9,
    "TPU v4 (32 GiB)": 32 * GIB, "TPU v5e (16 GiB)": 16 * GIB,
}
LINKS = {  # all-reduce bandwidth per device (bytes/s)
    # Cloud TPU v4 data sheet: 1.1 PB/s all-reduce bandwidth per 4,096-chip pod.
    "TPU v4 pod ICI": 1.1e15 / 4096,
    # NVLink 4: 900 GB/s per H100 in both directions together, 450 GB/s each way.
    "8xH100 NVLink": 450e9,
}
USABLE = 0.9


def residual_bytes(model, config, pairs, images):
  """Bytes of the arrays the backward pass of one step reads, for `pairs` frame pairs and `images` images."""
  crop_h, crop_w = config.data.pairs.crop
  size = config.data.views.size
  frames = jax.ShapeDtypeStruct((pairs, crop_h, crop_w, 3), jnp.float32)
  views = jax.ShapeDtypeStruct((images, size, size, 3), jnp.float32)
  variables = jax.eval_shape(lambda f, v: model.init(jax.random.key(0), f, f, v, v), frames, views)

  def loss(params, batch_stats, f1, f2, v1, v2):
    outputs, _ = model.apply({"params": params, "batch_stats": batch_stats}, f1, f2, v1, v2, train=True,
                             mutable=["batch_stats"], rngs={"drop_path": jax.random.key(1)})
    return mcjepa_loss(outputs, {"frames1": f1, "frames2": f2}, config.loss)[0]

  backward = jax.eval_shape(lambda p, s, *x: jax.vjp(lambda q: loss(q, s, *x), p)[1],
                            variables["params"], variables.get("batch_stats", {}), frames, frames, views, views)
  return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(backward)), variables


def activation_model(config, dtype, remat):
  """(R0, bytes per pair, bytes per image, parameter count) for a dtype and remat setting."""
  config = config.copy_and_resolve_references()
  config.model.dtype, config.model.remat = dtype, remat
  if config.model.get("content", "vicreg") == "ijepa":
    raise SystemExit("memory_plan.py traces the VICReg objective's loss; the I-JEPA step adds the "
                     "target encoder's forward pass (no residuals) and is not planned here yet")
  model = build_model(config.model)
  base, variables = residual_bytes(model, config, 1, 2)
  per_pair = residual_bytes(model, config, 2, 2)[0] - base
  per_image = (residual_bytes(model, config, 1, 4)[0] - base) / 2
  return base - per_pair - 2 * per_image, per_pair, per_image, count_params(variables["params"])


def per_device_bytes(params, fixed, per_pair, per_image, pairs, images, fsdp, ema=0):
  """Parameters, gradient, Adam moments (and EMA) split fsdp ways, plus the kept activations."""
  # 4 bytes each: parameters, gradient, Adam's first and second moments (16 per parameter), EMA.
  return (16 * params + 4 * ema) / fsdp + fixed + per_pair * pairs + per_image * images


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/mcjepa_convnext_t.py")
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  config = load_config(args.config)
  train = config.train
  global_pairs, global_images = train.video_batch_size, train.image_batch_size
  results = {"config": args.config, "global_batch": {"pairs": global_pairs, "images": global_images},
             "plans": []}
  print(f"{args.config}: {global_images} images of {config.data.views.size} px (x2 views) + {global_pairs} pairs "
        f"of {tuple(config.data.pairs.crop)} per step\n")
  print("| dtype | remat | kept per pair | kept per image | fixed | paper step on 8 devices (data=8 / data=4,fsdp=2) "
        "| largest images per device with 1 pair, data parallel: " + ", ".join(DEVICES) + " |")
  print("|---|---|---|---|---|---|" + "---|" * len(DEVICES))
  for dtype in ("float32", "bfloat16"):
    for remat in ("none", "dots", "full"):
      fixed, per_pair, per_image, params = activation_model(config, dtype, remat)
      per_device = {fsdp: per_device_bytes(params, fixed, per_pair, per_image, global_pairs / 8,
                                           global_images / 8, fsdp) for fsdp in (1, 2)}
      largest = {}
      for name, capacity in DEVICES.items():
        room = USABLE * capacity - per_device_bytes(params, fixed, per_pair, 0, 1, 0, 1)
        largest[name] = max(int(room // per_image), 0)
      results["plans"].append({"dtype": dtype, "remat": remat, "parameters": params, "fixed_bytes": fixed,
                               "bytes_per_pair": per_pair, "bytes_per_image": per_image,
                               "paper_step_per_device_bytes": per_device, "largest_images_per_device": largest})
      fits = " / ".join(f"{per_device[f] / GIB:.1f} GiB" for f in (1, 2))
      print(f"| {dtype} | {remat} | {per_pair / GIB:.2f} GiB | {per_image / 2**20:.0f} MiB | {fixed / GIB:.2f} GiB "
            f"| {fits} | " + " | ".join(str(largest[n]) for n in DEVICES) + " |", flush=True)

  params = results["plans"][0]["parameters"]
  print(f"\nGradient traffic per device per step ({params:,} float32 parameters = {4 * params / 2**20:.0f} MiB):")
  print("| devices N | data parallel (ring all-reduce) | fsdp (reduce-scatter + all-gather) | "
        + " | ".join(f"time at {k}" for k in LINKS) + " |")
  print("|---|---|---|" + "---|" * len(LINKS))
  results["communication"] = []
  for n in (8, 64, 512):
    ring = 2 * (n - 1) / n * 4 * params
    times = {k: ring / bw for k, bw in LINKS.items()}
    results["communication"].append({"devices": n, "ring_all_reduce_bytes": ring, "fsdp_bytes": ring,
                                     "seconds": times})
    print(f"| {n} | {ring / 2**20:.0f} MiB | {ring / 2**20:.0f} MiB | "
          + " | ".join(f"{1e3 * t:.2f} ms" for t in times.values()) + " |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
