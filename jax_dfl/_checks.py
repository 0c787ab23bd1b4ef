"""Trace-time argument checks shared by the public functions.

Everything here runs on static information (shapes, dtypes, Python ints), so a
bad call fails while JAX traces it, with a message naming what was passed.
"""

from __future__ import annotations

import operator

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

# bf16/f16 logits are upcast: a softmax over many bins in 8 mantissa bits is
# too coarse for a loss whose optimum is a two-point distribution.
_MIN_COMPUTE_DTYPE = jnp.float32


def compute_dtype(*dtypes) -> jnp.dtype:
    """The dtype the maths runs in: the inputs' float type, at least float32."""
    return jnp.promote_types(jnp.result_type(*dtypes), _MIN_COMPUTE_DTYPE)


def check_num_bins(num_bins: int) -> int:
    """`num_bins` must be a concrete Python int >= 2 (it fixes an array shape)."""
    try:
        num_bins = operator.index(num_bins)
    except TypeError:
        raise TypeError(
            f"num_bins must be a Python int (it sets an output shape); got {num_bins!r}"
        ) from None
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2 (a bin on each side of a target); got {num_bins}")
    return num_bins


def check_logits(logits: chex.Array) -> int:
    """Floating logits with a bins axis of at least 2; returns the number of bins."""
    if logits.ndim < 1:
        raise ValueError("logits must have a trailing bins axis; got a scalar")
    chex.assert_type(
        logits,
        float,
        custom_message=f"logits must be floating point; got dtype {logits.dtype}",
        exception_type=TypeError,
    )
    return check_num_bins(logits.shape[-1])


def check_real(name: str, x: chex.Array) -> None:
    """Float or integer dtype (not bool, not complex)."""
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"{name} must be real numbers (float or int); got dtype {x.dtype}")


def _check_matches_logits(name: str, x: chex.Array, logits_shape: tuple[int, ...], per_row: bool) -> None:
    """``x.shape`` equal to ``logits.shape[:-1]`` (or ``logits.shape``), naming both shapes."""
    expected = tuple(logits_shape[:-1]) if per_row else tuple(logits_shape)
    chex.assert_shape(
        x,
        expected,
        custom_message=(
            f"{name}.shape must equal logits.shape{'[:-1]' if per_row else ''}: "
            f"{name}.shape={x.shape}, logits.shape={tuple(logits_shape)}"
        ),
        exception_type=ValueError,
    )


def check_targets(targets: chex.Array, logits_shape: tuple[int, ...], *, per_row: bool = True) -> None:
    """Real-valued targets whose shape is exactly ``logits.shape[:-1]`` (``logits.shape``
    for element-wise losses).

    Exact equality, not broadcasting: a `(N, 1)` target against `(N, K)` logits
    would otherwise broadcast into an `(N, N)` loss that averages to nonsense.
    """
    check_real("targets", targets)
    _check_matches_logits("targets", targets, logits_shape, per_row)


def check_where(where: ArrayLike | None, logits_shape: tuple[int, ...], *, per_row: bool = True):
    """A boolean mask shaped like the targets (see :func:`check_targets`), or None."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        raise TypeError(f"where must be a boolean mask; got dtype {where.dtype}")
    _check_matches_logits("where", where, logits_shape, per_row)
    return where


def prepare_targets(targets: ArrayLike, num_bins: int, bin_values: ArrayLike | None):
    """Checked ``(targets, num_bins, bin_values)`` for functions of targets alone.

    Targets are cast to their compute dtype (at least float32), and
    ``bin_values`` to the same dtype.
    """
    num_bins = check_num_bins(num_bins)
    targets = jnp.asarray(targets)
    check_real("targets", targets)
    dtype = compute_dtype(targets.dtype)
    return targets.astype(dtype), num_bins, check_bin_values(bin_values, num_bins, dtype)


def check_bin_values(bin_values: ArrayLike | None, num_bins: int, dtype) -> chex.Array | None:
    """A 1-D, strictly increasing array of ``num_bins`` bin positions, or None.

    Monotonicity is checked when the values are concrete (NumPy, lists, or
    JAX arrays outside ``jit``); traced values are taken as given.
    """
    if bin_values is None:
        return None
    values = jnp.asarray(bin_values)
    if values.ndim != 1 or values.shape[0] != num_bins:
        raise ValueError(
            f"bin_values must be 1-D with one value per bin: bin_values.shape={values.shape}, "
            f"num_bins={num_bins}"
        )
    check_real("bin_values", values)
    if not isinstance(values, jax.core.Tracer):
        diffs = np.diff(np.asarray(values, dtype=np.float64))
        if not np.all(diffs > 0):
            raise ValueError(f"bin_values must be strictly increasing; got {np.asarray(values).tolist()}")
    # Constants of the loss, not parameters: no gradient flows into them.
    return jax.lax.stop_gradient(values.astype(dtype))
