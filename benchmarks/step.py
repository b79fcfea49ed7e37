"""Speed, memory and FLOPs of one jit-compiled MC-JEPA train step, for any config.

  python benchmarks/step.py --config configs/mcjepa_convnext_t.py \
      --config.train.video_batch_size=2 --config.train.image_batch_size=8 \
      [--part joint|flow|content] [--steps 5] [--warmup 2] [--devices 8] [--compile_only] [--json OUT]

--part times the branches separately: `flow` is an update from the video branch
alone (`MCJEPA.video` + L_flow), `content` from the content branch alone
(`MCJEPA.content` + L_content), `joint` the real train step. The step runs on a
mesh built from `config.mesh` over every device; `--devices N` asks XLA:CPU for
N host devices (the memory plan of docs/benchmarks.md compiles the paper step
on 8 of them without running it: `--compile_only`).

Prints a table and, with --json, writes the same figures: compile time, s/step
(median, min, max over --steps timed steps after --warmup), pairs/s and images/s,
peak host RSS, the device's peak memory where the backend reports it
(`memory_stats`), XLA's `memory_analysis()` of the compiled step (bytes per
device), its `cost_analysis()` FLOPs, the step's matmul + convolution FLOPs counted
from its jaxpr (`models/flops.py`: the same on every backend, a cross-check of
XLA's figure) and the model FLOPs utilisation against
the device's peak when it is known (`PEAK_FLOPS`). --matmul_rate also times a
square matmul in the model's dtype, the rate the step's convolutions could reach at
best on this machine, and the step time its FLOPs would take at that rate.
"""

import json
import os
import platform
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mcjepa_jax.console import quiet_environment, quiet_logging  # pylint: disable=g-import-not-at-top

quiet_environment()

from absl import app, flags  # pylint: disable=g-import-not-at-top,g-bad-import-order
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Config file (configs/NAME.py[:ARGS]).")
_PART = flags.DEFINE_enum("part", "joint", ["joint", "flow", "content"], "Which update to time.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compiling.")
_DEVICES = flags.DEFINE_integer("devices", 0, "Fake XLA:CPU host devices (0: the backend's own).")
_COMPILE_ONLY = flags.DEFINE_bool("compile_only", False, "Compile and analyse, do not run.")
_JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
_MATMUL = flags.DEFINE_integer("matmul_rate", 0, "Side N of an N x N matmul timed for the machine's rate (0: skip).")
_INPUT = flags.DEFINE_bool("input_pipeline", False, "Also time the config's input pipeline (s per batch).")

# Dense peak FLOP/s per chip by (device kind substring, compute dtype); from the vendors' data sheets.
PEAK_FLOPS = {
    ("H200", "bfloat16"): 989e12, ("H200", "float32"): 67e12,
    ("H100", "bfloat16"): 989e12, ("H100", "float32"): 67e12,   # SXM; fp32 without TF32
    ("A100", "bfloat16"): 312e12, ("A100", "float32"): 19.5e12,
    ("V100", "bfloat16"): 125e12, ("V100", "float32"): 15.7e12,  # bf16 row: V100 runs fp16 tensor cores
    ("TPU v4", "bfloat16"): 275e12, ("TPU v4", "float32"): 275e12 / 4,
    ("TPU v5 lite", "bfloat16"): 197e12, ("TPU v5 lite", "float32"): 197e12 / 4,
    ("TPU v5e", "bfloat16"): 197e12, ("TPU v5e", "float32"): 197e12 / 4,
}


def peak_flops(device_kind, dtype):
  for (kind, kind_dtype), value in PEAK_FLOPS.items():
    if kind in device_kind and kind_dtype == dtype:
      return value
  return None


def part_step(model, optimizer, config, part):
  """train_step(state, batch) -> (state, metrics) updating from one branch (`part`) or both ("joint")."""
  import jax  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.losses.objective import content_loss, flow_loss  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.train.step import make_train_step  # pylint: disable=g-import-not-at-top
  if part == "joint":
    return make_train_step(model, optimizer, config)
  if config.model.get("content", "vicreg") == "ijepa" and part == "content":
    raise app.UsageError("--part content times the VICReg branch; the I-JEPA one needs the joint step")

  def loss_fn(params, state, batch):
    variables = {"params": params, "batch_stats": state.batch_stats}
    rngs = {"drop_path": jax.random.fold_in(state.rng, state.step)}
    if part == "flow":
      video = model.apply(variables, batch["frames1"], batch["frames2"], train=True, method=model.video, rngs=rngs)
      return flow_loss(video, batch["frames1"], batch["frames2"], config.loss)[0], state.batch_stats
    content, updates = model.apply(variables, batch["views1"], batch["views2"], train=True, method=model.content,
                                   rngs=rngs, mutable=["batch_stats"])
    return content_loss(content, config.loss)[0], updates["batch_stats"]

  def train_step(state, batch):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = jax.tree_util.tree_map(lambda p, u: p + u, state.params, updates)
    return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state), {
        "total": loss}

  return train_step


def _cost_flops(compiled):
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


def _memory(compiled):
  analysis = compiled.memory_analysis()
  if analysis is None:
    return {}
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
            "generated_code_size_in_bytes")
  out = {f: int(getattr(analysis, f)) for f in fields if hasattr(analysis, f)}
  # Live at the step's peak: inputs + temporaries + outputs that do not reuse (alias) a donated input.
  out["total_bytes"] = (out.get("argument_size_in_bytes", 0) + out.get("temp_size_in_bytes", 0)
                        + out.get("output_size_in_bytes", 0) - out.get("alias_size_in_bytes", 0))
  return out


def measure(config, part, steps, warmup, compile_only):
  """Builds, compiles and times the step; returns the results dict."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.config_checks import validate_config  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.models import build_model  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.models.flops import jaxpr_flops  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.models.params import count_params, init_variables  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.train.optimizer import make_optimizer  # pylint: disable=g-import-not-at-top
  from mcjepa_jax.train.sharding import (batch_sharding, make_mesh, replicated,  # pylint: disable=g-import-not-at-top
                                        state_shardings)
  from mcjepa_jax.train.step import (abstract_train_state, initial_train_state,  # pylint: disable=g-import-not-at-top
                                    step_compiler_options, batch_shapes as train_batch_shapes)
  from mcjepa_jax.train.host_memory import release_freed_host_memory  # pylint: disable=g-import-not-at-top

  validate_config(config)
  train = config.train
  mesh = make_mesh(config.mesh)
  model = build_model(config.model)
  optimizer, _ = make_optimizer(train)
  batch_shapes = train_batch_shapes(config)
  abstract_batch = {k: jax.ShapeDtypeStruct(s, jnp.float32, sharding=batch_sharding(mesh))
                    for k, s in batch_shapes.items()}
  rng = jax.random.PRNGKey(0)
  abstract_state, _ = abstract_train_state(model, optimizer, config, rng)
  shardings = state_shardings(abstract_state, mesh, config.mesh.fsdp_min_size)
  step_fn = part_step(model, optimizer, config, part)
  abstract_args = (jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                          abstract_state, shardings), abstract_batch)
  step = jax.jit(step_fn, in_shardings=(shardings, batch_sharding(mesh)),
                 out_shardings=(shardings, replicated(mesh)), donate_argnums=0,
                 compiler_options=step_compiler_options())
  started = time.perf_counter()
  # One trace gives both the jaxpr whose FLOPs are counted and the program that is compiled.
  traced = step.trace(*abstract_args)
  model_flops = jaxpr_flops(traced.jaxpr)
  compiled = traced.lower().compile()
  compile_s = time.perf_counter() - started
  results_rss = {"peak_host_rss_compile_bytes": _peak_rss()}
  # As `prepare` does after compiling: the compiler's freed pages go back to the OS.
  release_freed_host_memory()
  device = jax.devices()[0]
  dtype = config.model.get("dtype", "float32")
  results = {
      "config": config_flags.get_config_filename(flags.FLAGS["config"]),
      "part": part, "dtype": dtype, "remat": config.model.get("remat", "none"),
      "device": f"{device.device_kind} x{jax.device_count()} ({platform.processor() or platform.machine()})",
      "mesh": dict(mesh.shape), "parameters": count_params(abstract_state.params),
      "batch": {"pairs": train.video_batch_size, "crop": list(config.data.pairs.crop),
                "images": train.image_batch_size, "view_size": config.data.views.size},
      "compile_s": compile_s, "flops_per_step_per_device": _cost_flops(compiled),
      # The jaxpr is the global program: per device is the share of the data-parallel mesh.
      "model_flops_per_step_per_device": model_flops / jax.device_count(),
      "memory_analysis_per_device": _memory(compiled), **results_rss,
  }
  if not compile_only:
    data_rng = jax.random.split(jax.random.PRNGKey(2), len(batch_shapes))
    batch = {k: jax.device_put(jax.random.uniform(r, s), batch_sharding(mesh))
             for r, (k, s) in zip(data_rng, batch_shapes.items())}
    variables = init_variables(model, rng, *(batch[k] for k in ("frames1", "frames2", "views1", "views2")),
                               out_shardings=None)
    state = jax.device_put(initial_train_state(variables, optimizer, config, rng), shardings)
    del variables
    release_freed_host_memory()  # the initialiser's compile
    times = []
    for i in range(warmup + steps):
      started = time.perf_counter()
      state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
      if i >= warmup:
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    images = 2 * train.image_batch_size if part != "flow" else 0
    pairs = train.video_batch_size if part != "content" else 0
    results.update({
        "s_per_step": {"median": median, "min": min(times), "max": max(times), "n": len(times)},
        "pairs_per_s": pairs / median, "images_per_s": images / median,
        "loss": float(metrics["total"]),
    })
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
      results["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    peak = peak_flops(device.device_kind, dtype)
    if peak and results["flops_per_step_per_device"]:
      results["mfu"] = results["flops_per_step_per_device"] / median / peak
    if peak:
      results["mfu_model_flops"] = results["model_flops_per_step_per_device"] / median / peak
  results["peak_host_rss_bytes"] = _peak_rss()
  return results


def matmul_rate(side, dtype, repeats=5):
  """FLOP/s of an N x N x N matmul on the default device (best of `repeats` after a warm-up)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.PRNGKey(0), (side, side), jnp.float32).astype(dtype)
  matmul = jax.jit(jnp.matmul)
  matmul(a, a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    started = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - started)
  return 2 * side**3 / best


def _peak_rss():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def input_pipeline_seconds(config, batches):
  """Seconds per batch of the config's grain pipeline (one process), after the first batch."""
  from mcjepa_jax.data.pipeline import TrainInput  # pylint: disable=g-import-not-at-top
  data = TrainInput(config, 0)
  next(data)
  started = time.perf_counter()
  for _ in range(batches):
    next(data)
  return (time.perf_counter() - started) / batches


def _gib(value):
  return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.1f} MiB"


def format_table(r):
  memory = r["memory_analysis_per_device"]
  rows = [("config", r["config"]), ("part / dtype / remat", f"{r['part']} / {r['dtype']} / {r['remat']}"),
          ("device", r["device"]), ("mesh", r["mesh"]), ("parameters", f"{r['parameters']:,}"),
          ("batch (pairs / images)", f"{r['batch']['pairs']} x {tuple(r['batch']['crop'])} / "
                                     f"{r['batch']['images']} x 2 views of {r['batch']['view_size']} px"),
          ("compile (s)", f"{r['compile_s']:.1f}")]
  if r.get("flops_per_step_per_device"):
    rows.append(("XLA FLOPs per step per device", f"{r['flops_per_step_per_device'] / 1e9:.1f} GFLOP"))
  rows.append(("matmul + conv FLOPs per step per device (jaxpr)", f"{r['model_flops_per_step_per_device'] / 1e9:.1f} GFLOP"))
  for key in ("argument_size_in_bytes", "temp_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
              "total_bytes"):
    if key in memory:
      rows.append((f"memory_analysis {key.replace('_in_bytes', '').replace('_bytes', '')}", _gib(memory[key])))
  if "s_per_step" in r:
    t = r["s_per_step"]
    rows += [("s/step median (min-max, n)", f"{t['median']:.3f} ({t['min']:.3f}-{t['max']:.3f}, {t['n']})"),
             ("pairs/s, images/s", f"{r['pairs_per_s']:.2f}, {r['images_per_s']:.1f}")]
    if "device_peak_bytes" in r:
      rows.append(("device peak memory", _gib(r["device_peak_bytes"])))
    if "mfu" in r:
      rows.append(("MFU (XLA FLOPs)", f"{100 * r['mfu']:.1f} %"))
    if "mfu_model_flops" in r:
      rows.append(("MFU (jaxpr FLOPs)", f"{100 * r['mfu_model_flops']:.1f} %"))
  if "matmul_flops_per_s" in r:
    rate = r["matmul_flops_per_s"]
    rows += [(f"measured {r['matmul_side']}^2 matmul rate", f"{rate / 1e9:.1f} GFLOP/s"),
             ("step at that rate (jaxpr FLOPs / rate)", f"{r['model_flops_per_step_per_device'] / rate:.3f} s")]
    if "s_per_step" in r:
      rows.append(("share of the matmul rate reached", f"{100 * r['model_flops_per_step_per_device'] / rate / r['s_per_step']['median']:.1f} %"))
  if "input_s_per_batch" in r:
    rows.append(("input pipeline (s/batch)", f"{r['input_s_per_batch']:.3f}"))
  if "peak_host_rss_compile_bytes" in r:
    rows.append(("peak host RSS after compiling", _gib(r["peak_host_rss_compile_bytes"])))
  rows.append(("peak host RSS", _gib(r["peak_host_rss_bytes"])))
  width = max(len(k) for k, _ in rows)
  lines = [f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
  lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _DEVICES.value:
    # Read when the backend starts (on first use), so setting it here still counts.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={_DEVICES.value}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
  quiet_logging()
  results = measure(_CONFIG.value, _PART.value, _STEPS.value, _WARMUP.value, _COMPILE_ONLY.value)
  if _MATMUL.value:
    results["matmul_side"] = _MATMUL.value
    results["matmul_flops_per_s"] = matmul_rate(_MATMUL.value, _CONFIG.value.model.get("dtype", "float32"))
  if _INPUT.value:
    results["input_s_per_batch"] = input_pipeline_seconds(_CONFIG.value, max(_STEPS.value, 5))
  print(format_table(results))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)
