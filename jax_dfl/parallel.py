"""Data parallelism on JAX's own sharding: a 1-D device mesh over the batch.

Parameters stay replicated; the batch axis is split across devices with a
:class:`~jax.sharding.NamedSharding`, and ``jit`` (GSPMD) partitions the
computation and inserts the gradient all-reduce. Nothing here is specific to
one host: after ``jax.distributed.initialize()`` the same mesh spans every
process's devices.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None, *, axis_name: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all of ``jax.devices()``)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (axis_name,), (AxisType.Auto,), devices=devices)


def batch_sharding(mesh: Mesh, ndim: int, *, batch_axis: int = 0) -> NamedSharding:
    """Split axis ``batch_axis`` of an ``ndim``-dimensional array over the mesh."""
    spec = [None] * ndim
    spec[batch_axis] = mesh.axis_names[0]
    return NamedSharding(mesh, P(*spec))


def shard_batch(tree, mesh: Mesh, *, batch_axis: int = 0):
    """Place every array in ``tree`` with its ``batch_axis`` split over the mesh."""
    return jax.tree.map(
        lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim, batch_axis=batch_axis)), tree
    )


def constrain_batch(tree, mesh: Mesh, *, batch_axis: int = 0):
    """Inside ``jit``: ask XLA to keep ``batch_axis`` split over the mesh."""
    return jax.tree.map(
        lambda x: jax.lax.with_sharding_constraint(x, batch_sharding(mesh, x.ndim, batch_axis=batch_axis)),
        tree,
    )
