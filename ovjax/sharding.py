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
