"""Data parallelism on JAX's own sharding: a 1-D device mesh over the batch.

Parameters stay replicated; the batch axis is split across devices with a
:class:`~jax.sharding.NamedSharding`, and ``jit`` (GSPMD) partitions the
computation and inserts the gradient all-reduce. Nothing here is specific to
one host: after ``jax.distributed.initialize()`` the same mesh spans every
process's devices.

A bad argument is a ``ValueError`` naming it (the input rules of ``docs/conventions.md``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_dfl import _checks

DATA_AXIS = "data"

# jax 0.5 added mesh axis types (and later made Explicit make_mesh's default); the mesh here is
# Auto, which is all jax 0.4.x knows, so there the argument is left out.
_AXIS_TYPE = getattr(jax.sharding, "AxisType", None)


def data_mesh(
    # jax.Device is a class of jaxlib's compiled extension, which has no type stubs: pyright sees
    # an untyped variable there and refuses it in an annotation, though it is a class at runtime.
    devices: Sequence[jax.Device] | None = None,  # pyright: ignore[reportInvalidTypeForm]
    *,
    axis_name: str = DATA_AXIS,
) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all of ``jax.devices()``).

    After ``jax.distributed.initialize()`` the default spans every process's
    devices; one process's devices are contiguous along it.

    .. seealso::
      :doc:`/parallel` and :doc:`/tutorials/data_parallel`.

    Args:
      devices: the devices, in mesh order; at least one.
      axis_name: the name of the mesh's one axis.

    Returns:
      A :class:`jax.sharding.Mesh` of shape ``(len(devices),)``.

    Examples:
      >>> mesh = data_mesh()
      >>> mesh.axis_names
      ('data',)
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must hold at least one device; got an empty sequence")
    if _AXIS_TYPE is None:
        return jax.make_mesh((len(devices),), (axis_name,), devices=devices)
    return jax.make_mesh((len(devices),), (axis_name,), (_AXIS_TYPE.Auto,), devices=devices)


def batch_sharding(mesh: Mesh, ndim: int, *, batch_axis: int = 0) -> NamedSharding:
    """Split axis ``batch_axis`` of an ``ndim``-dimensional array over the mesh.

    Args:
      mesh: a 1-D mesh, e.g. from :func:`data_mesh`.
      ndim: the arrays' number of dimensions (a Python int > 0).
      batch_axis: the axis to split, in ``[-ndim, ndim)``.

    Returns:
      A :class:`jax.sharding.NamedSharding` that splits ``batch_axis`` over the
      mesh's axis and replicates the others.

    Examples:
      >>> tuple(batch_sharding(data_mesh(), 2).spec)
      ('data', None)
    """
    ndim = _checks.positive_int("ndim", ndim)
    batch_axis = _checks.axis("batch_axis", batch_axis, ndim)
    spec = [None] * ndim
    spec[batch_axis] = mesh.axis_names[0]
    return NamedSharding(mesh, P(*spec))


def shard_batch(tree: Any, mesh: Mesh, *, batch_axis: int = 0) -> Any:
    """Place every array in ``tree`` with its ``batch_axis`` split over the mesh.

    Leaves may be JAX or NumPy arrays. The batch axis of each must divide by
    the mesh size (a ``ValueError`` naming the leaf otherwise): an uneven split
    would give devices unequal work and a different mean than one device.

    .. seealso::
      :func:`shard_process_local` for several processes, each with its own rows.

    Args:
      tree: a pytree of arrays, each with a batch axis.
      mesh: a 1-D mesh, e.g. from :func:`data_mesh`.
      batch_axis: the axis to split in every leaf.

    Returns:
      ``tree`` with each leaf a :class:`jax.Array` placed by :func:`batch_sharding`.

    Examples:
      >>> import numpy as np
      >>> batch = shard_batch({"x": np.zeros((8, 3))}, data_mesh())
      >>> tuple(batch["x"].sharding.spec)
      ('data', None)
    """

    def place(path, x):
        x = x if isinstance(x, jax.Array) else np.asarray(x)
        _check_divisible(path, x, mesh, batch_axis)
        return jax.device_put(x, batch_sharding(mesh, x.ndim, batch_axis=batch_axis))

    return jax.tree_util.tree_map_with_path(place, tree)


def _check_divisible(path, x, mesh: Mesh, batch_axis: int) -> None:
    name = "tree" + jax.tree_util.keystr(path)
    if x.ndim == 0:
        raise ValueError(f"{name} is a scalar: it has no batch axis to split")
    try:
        batch_axis = _checks.axis("batch_axis", batch_axis, x.ndim)
    except ValueError as error:
        raise ValueError(f"{error} (the ndim of {name}, shape {x.shape})") from None
    if x.shape[batch_axis] % mesh.size:
        raise ValueError(
            f"{name}.shape[{batch_axis}] must divide by the mesh size {mesh.size}: {name}.shape={x.shape}"
        )


def constrain_batch(tree: Any, mesh: Mesh, *, batch_axis: int = 0) -> Any:
    """Inside ``jit``: keep ``batch_axis`` split over the mesh (the rules of :func:`shard_batch`).

    A :func:`jax.lax.with_sharding_constraint` on every leaf, for intermediate
    values whose placement GSPMD would otherwise choose.

    Args:
      tree: a pytree of arrays, each with a batch axis dividing by the mesh size.
      mesh: a 1-D mesh, e.g. from :func:`data_mesh`.
      batch_axis: the axis to split in every leaf.

    Returns:
      ``tree`` with the constraint applied to each leaf.
    """

    def constrain(path, x):
        x = jnp.asarray(x)
        _check_divisible(path, x, mesh, batch_axis)
        return jax.lax.with_sharding_constraint(x, batch_sharding(mesh, x.ndim, batch_axis=batch_axis))

    return jax.tree_util.tree_map_with_path(constrain, tree)


# --- several processes (hosts) ----------------------------------------------------------
# After jax.distributed.initialize(), jax.devices() lists every process's
# devices, and a mesh over them spans all processes. Each process then holds
# only its own part of a sharded array: these helpers build such global
# arrays from what each process has locally.


def process_batch_slice(global_batch_size: int, mesh: Mesh) -> slice:
    """The rows of a global batch that this process feeds, for :func:`shard_process_local`.

    Computed from the mesh's device order, so it is right for any mesh that
    :func:`data_mesh` builds (one process's devices are contiguous along it).
    With one process it is the whole batch.

    Args:
      global_batch_size: rows of the global batch, a Python int dividing by
        the mesh size.
      mesh: a 1-D mesh, e.g. from :func:`data_mesh`.

    Returns:
      A ``slice`` of the global batch's rows.

    Examples:
      >>> process_batch_slice(64, data_mesh())  # one process
      slice(0, 64, None)
    """
    global_batch_size = _checks.positive_int("global_batch_size", global_batch_size)
    if global_batch_size % mesh.size:
        raise ValueError(
            f"global_batch_size must divide by the mesh size {mesh.size}; got {global_batch_size}"
        )
    sharding = batch_sharding(mesh, 1)
    indices = sharding.devices_indices_map((global_batch_size,))
    rows = sorted(
        indices[device][0].indices(global_batch_size)[:2] for device in sharding.addressable_devices
    )
    start, stop = rows[0][0], rows[-1][1]
    if any(a[1] != b[0] for a, b in itertools.pairwise(rows)):
        raise ValueError("this process's devices are not contiguous along the mesh; use data_mesh()")
    return slice(start, stop)


def shard_process_local(tree: Any, mesh: Mesh, *, batch_axis: int = 0) -> Any:
    """Global batch-sharded arrays from each process's local slice of the batch.

    Every process calls it with its own rows (see :func:`process_batch_slice`);
    the result's ``shape[batch_axis]`` is the sum over processes. A thin layer
    over :func:`jax.make_array_from_process_local_data`.

    Args:
      tree: a pytree of this process's rows (NumPy or JAX arrays).
      mesh: a 1-D mesh over every process's devices, e.g. from :func:`data_mesh`.
      batch_axis: the axis the rows are on.

    Returns:
      ``tree`` with each leaf a global :class:`jax.Array`, split over the mesh.
    """

    def place(x):
        x = np.asarray(x)
        _checks.axis("batch_axis", batch_axis, x.ndim)
        return jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim, batch_axis=batch_axis), x)

    return jax.tree.map(place, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Global arrays replicated on every device of the mesh (parameters, optimizer state).

    Each process passes the same values (e.g. initialised from the same
    random seed); inputs of a multi-process ``jit`` that are not sharded must
    be such global arrays.

    Args:
      tree: a pytree of arrays, the same on every process.
      mesh: a mesh, e.g. from :func:`data_mesh`.

    Returns:
      ``tree`` with each leaf a global :class:`jax.Array` replicated on the mesh.
    """
    replicated = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(replicated, np.asarray(x)), tree)
