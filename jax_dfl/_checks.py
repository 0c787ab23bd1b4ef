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


def check_targets(targets: chex.Array, logits_shape: tuple[int, ...]) -> None:
    """Real-valued targets whose shape is exactly `logits.shape[:-1]`.

    Exact equality, not broadcasting: a `(N, 1)` target against `(N, K)` logits
    would otherwise broadcast into an `(N, N)` loss that averages to nonsense.
    """
    if not (jnp.issubdtype(targets.dtype, jnp.floating) or jnp.issubdtype(targets.dtype, jnp.integer)):
        raise TypeError(f"targets must be real numbers (float or int); got dtype {targets.dtype}")
    expected = tuple(logits_shape[:-1])
    chex.assert_shape(
        targets,
        expected,
        custom_message=(
            f"targets.shape must equal logits.shape[:-1]: targets.shape={targets.shape}, "
            f"logits.shape={tuple(logits_shape)}"
        ),
        exception_type=ValueError,
    )


def check_where(where: ArrayLike | None, logits_shape: tuple[int, ...]):
    """A boolean mask of shape `logits.shape[:-1]`, or None."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        raise TypeError(f"where must be a boolean mask; got dtype {where.dtype}")
    chex.assert_shape(
        where,
        tuple(logits_shape[:-1]),
        custom_message=(
            f"where.shape must equal logits.shape[:-1]: where.shape={where.shape}, "
            f"logits.shape={tuple(logits_shape)}"
        ),
        exception_type=ValueError,
    )
    return where


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
    if not (jnp.issubdtype(values.dtype, jnp.floating) or jnp.issubdtype(values.dtype, jnp.integer)):
        raise TypeError(f"bin_values must be real numbers; got dtype {values.dtype}")
    if not isinstance(values, jax.core.Tracer):
        diffs = np.diff(np.asarray(values, dtype=np.float64))
        if not np.all(diffs > 0):
            raise ValueError(f"bin_values must be strictly increasing; got {np.asarray(values).tolist()}")
    # Constants of the loss, not parameters: no gradient flows into them.
    return jax.lax.stop_gradient(values.astype(dtype))
