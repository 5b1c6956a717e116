"""Data-parallel placement over every local device (`jax.make_mesh` + `NamedSharding`).

Inference replicates parameters and splits the batch axis; the same rules serve training.
"""
from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def data_mesh(devices=None) -> jax.sharding.Mesh:
  devices = jax.local_devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  """Leading (batch) axis split across the mesh's data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh):
  return jax.device_put(tree, replicated(mesh))


def shard_batch(tree, mesh):
  return jax.device_put(tree, batch_sharded(mesh))


# -- training state placement -----------------------------------------------------------------
# One table for every leaf of a train state (parameters, optimiser moments, counters), matched
# against the leaf's path ("params_g/dec/ups_0/weight_v", "opt_g/0/mu/..."), first match wins.
# "replicate": a full copy on every device (the default for everything when fsdp is off).
# "shard": FSDP, the leaf's largest axis that divides evenly split over the data axis (replicated
# when none does); XLA gathers it where a layer needs it whole.
STATE_RULES = (
    (r"(kernel|weight_v|embedding|weight_ih|weight_hh)$", "shard"),
    (r".*", "replicate"),
)


def _leaf_spec(path: str, shape, n: int, fsdp: bool) -> P:
  import re  # Deferred: only training needs it.
  for pattern, rule in STATE_RULES:
    if re.search(pattern, path):
      break
  if not fsdp or rule == "replicate" or n == 1:
    return P()
  axes = sorted(range(len(shape)), key=lambda a: -shape[a])
  for axis in axes:
    if shape[axis] % n == 0 and shape[axis] >= n:
      return P(*([None] * axis + [DATA_AXIS]))
  return P()


def state_shardings(abstract_state, mesh, fsdp: bool = False):
  """A NamedSharding for every leaf of a (possibly abstract) train state, by `STATE_RULES`."""
  n = mesh.devices.size

  def place(path, leaf):
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                    for k in path)
    return NamedSharding(mesh, _leaf_spec(name, getattr(leaf, "shape", ()), n, fsdp))

  return jax.tree_util.tree_map_with_path(place, abstract_state)


def global_mesh() -> jax.sharding.Mesh:
  """Every device of every process on the data axis (multi-host training)."""
  return data_mesh(jax.devices())
