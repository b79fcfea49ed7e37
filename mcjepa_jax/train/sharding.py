"""The device mesh and where every array lives on it.

One mesh for the whole run, built from `config.mesh`:
  data: batch parallelism over all devices of all processes (-1 = whatever
        the fsdp axis leaves);
  fsdp: parameters and optimizer state are split along one dimension over
        this axis (fully sharded data parallelism); the batch is split over
        both axes, so every device still sees a distinct slice of it.

Both axes are `Auto`: the train step is one `jax.jit` over *global* arrays with
in/out shardings, and XLA's propagation inserts the all-reduces (so BatchNorm,
VICReg and VC statistics are exactly those of the global batch) and the fsdp
all-gathers. Explicit axes (the jax default) would instead demand a sharding
annotation on every intermediate.
"""

import math

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA, FSDP = "data", "fsdp"


def make_mesh(mesh_cfg, devices=None):
  """Mesh of shape (data, fsdp) over `devices` (default: every device of every process).

  Args:
    mesh_cfg: `config.mesh` with `data` (-1 = the rest) and `fsdp` sizes.
    devices: optional explicit device list.
  """
  devices = jax.devices() if devices is None else list(devices)
  count = len(devices)
  fsdp = int(mesh_cfg.fsdp)
  if fsdp < 1 or count % fsdp:
    raise ValueError(f"config.mesh.fsdp={fsdp} must be >= 1 and divide the {count} devices")
  data = count // fsdp if mesh_cfg.data == -1 else int(mesh_cfg.data)
  if data * fsdp != count:
    raise ValueError(f"config.mesh: data={mesh_cfg.data} x fsdp={fsdp} must equal the {count} devices "
                     "(use data=-1 for 'all the rest')")
  return jax.make_mesh((data, fsdp), (DATA, FSDP), axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=devices)


def batch_sharding(mesh):
  """Leading (batch) dimension split over every device of the mesh."""
  return NamedSharding(mesh, P((DATA, FSDP)))


def replicated(mesh):
  return NamedSharding(mesh, P())


def fsdp_spec(shape, fsdp_size, min_size):
  """PartitionSpec splitting the largest dimension divisible by `fsdp_size` (big_vision's rule).

  Arrays smaller than `min_size` elements stay replicated: gathering them
  costs more latency than their memory is worth.
  """
  if fsdp_size == 1 or math.prod(shape) < min_size:
    return P()
  for axis in np.argsort(shape)[::-1]:
    if shape[axis] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[axis] = FSDP
      return P(*spec)
  return P()


def state_shardings(abstract_tree, mesh, min_size):
  """NamedSharding for every leaf of a (abstract) pytree: fsdp-split or replicated."""
  fsdp_size = mesh.shape[FSDP]
  return jax.tree_util.tree_map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, fsdp_size, min_size)),
                                abstract_tree)


def check_batch_sizes(train_cfg, mesh):
  """Clear error if a global batch does not split evenly over the devices and processes."""
  parts = mesh.devices.size
  for name in ("video_batch_size", "image_batch_size"):
    if train_cfg[name] % parts:
      raise ValueError(f"config.train.{name}={train_cfg[name]} must be a multiple of the {parts} devices "
                       f"of the mesh {dict(mesh.shape)}")
