"""The input rules shared by every public function (see ``docs/conventions.md``, "Input rules").

Everything here runs on static information (shapes, dtypes, Python numbers),
so a bad call fails while JAX traces it, with a message naming the argument
as the caller passed it:

* dtypes: logits floating; coordinates (boxes, points, distances, strides)
  and targets real (float or int); class ids integer; masks boolean only.
  Complex and bool values (and ints where floats are needed) are a
  ``TypeError`` naming the argument.
* shapes: exact agreement, a ``ValueError`` naming both arguments and shapes;
  no silent broadcast.
* hyper-parameters: sizes and counts are Python ints, widths, temperatures
  and ``eps`` positive; a bad value is a ``ValueError`` naming the parameter.
  Numeric hyper-parameters that enter only the maths are checked when they are
  concrete and may be traced under ``jit``.
* dtype policy: the maths runs in the inputs' floating dtype promoted to at
  least float32 (bf16/f16 are upcast); outputs have that dtype, gradients the
  dtype of what they are taken with respect to.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import overload

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

# bf16/f16 inputs are upcast: a softmax over many bins in 8 mantissa bits is
# too coarse for a loss whose optimum is a two-point distribution, and box
# areas in bf16 lose whole pixels.
_MIN_COMPUTE_DTYPE = jnp.float32


def compute_dtype(*dtypes) -> jnp.dtype:
    """The dtype the maths runs in: the inputs' float type, at least float32."""
    return jnp.promote_types(jnp.result_type(*dtypes), _MIN_COMPUTE_DTYPE)


def is_concrete(value) -> bool:
    """True for Python numbers and arrays whose value is known at trace time."""
    return not isinstance(value, jax.core.Tracer)


# --- dtypes -----------------------------------------------------------------------------


def floating(name: str, x: ArrayLike) -> jax.Array:
    """``x`` as an array of a floating dtype; anything else is a TypeError naming ``name``."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point; got dtype {x.dtype}")
    return x


def real(name: str, x: ArrayLike) -> jax.Array:
    """``x`` as an array of float or integer dtype (not bool, not complex)."""
    x = jnp.asarray(x)
    check_real(name, x)
    return x


def check_real(name: str, x: jax.Array) -> None:
    """Float or integer dtype (not bool, not complex)."""
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"{name} must be real numbers (float or int); got dtype {x.dtype}")


def integer(name: str, x: ArrayLike) -> jax.Array:
    """``x`` as an array of integer dtype (class ids, indices)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name} must be integers; got dtype {x.dtype}")
    return x


def mask(name: str, x: ArrayLike) -> jax.Array:
    """``x`` as a boolean array; 0/1 numbers are refused (a float mask is usually a bug)."""
    x = jnp.asarray(x)
    if x.dtype != jnp.bool_:
        raise TypeError(f"{name} must be a boolean mask; got dtype {x.dtype}")
    return x


# --- shapes -----------------------------------------------------------------------------


def same_shape(name: str, x: jax.Array, expected: Sequence[int], description: str) -> None:
    """``x.shape == expected`` exactly; ``description`` says where ``expected`` came from."""
    if tuple(x.shape) != tuple(expected):
        raise ValueError(
            f"{name}.shape must equal {description}: {name}.shape={tuple(x.shape)}, "
            f"{description}={tuple(expected)}"
        )


def last_axis(name: str, x: jax.Array, size: int) -> None:
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must have a last axis of size {size}; got {name}.shape={tuple(x.shape)}")


def leading_matches(name: str, x: jax.Array, other_name: str, other: jax.Array, *, drop: int = 1) -> None:
    """``x.shape[:-1]`` equals ``other``'s leading shape, or a trailing part of it.

    The trailing-part case is the one broadcast the box helpers allow, and it
    is spelled out: anchor points ``(A, 2)`` shared by a batch of boxes
    ``(B, A, 4)``. A size-1 axis never stretches: ``(1, 2)`` points against
    ``(A, 4)`` boxes is an error.
    """
    lead, other_lead = tuple(x.shape[:-1]), tuple(other.shape[: other.ndim - drop])
    if len(lead) > len(other_lead) or other_lead[len(other_lead) - len(lead) :] != lead:
        raise ValueError(
            f"{name}.shape[:-1] must equal {other_name}.shape[:{-drop}] (or its trailing axes, for "
            f"{name} shared across a batch): {name}.shape={tuple(x.shape)}, "
            f"{other_name}.shape={tuple(other.shape)}"
        )


# --- logits, targets, masks -------------------------------------------------------------


def check_num_bins(num_bins: int, name: str = "num_bins") -> int:
    """``num_bins`` must be a concrete Python int >= 2 (it fixes an array shape)."""
    num_bins = positive_int(name, num_bins)
    if num_bins < 2:
        raise ValueError(f"{name} must be >= 2 (a bin on each side of a target); got {num_bins}")
    return num_bins


def check_logits(logits: jax.Array, name: str = "logits") -> int:
    """Floating logits with a bins axis of at least 2; returns the number of bins."""
    if logits.ndim < 1:
        raise ValueError(f"{name} must have a trailing bins axis; got a scalar")
    floating(name, logits)
    if logits.shape[-1] < 2:
        raise ValueError(
            f"{name} must have num_bins >= 2 bins on its last axis; got {name}.shape={tuple(logits.shape)}"
        )
    return logits.shape[-1]


def check_targets(targets: jax.Array, logits_shape: tuple[int, ...], *, per_row: bool = True) -> None:
    """Real-valued targets whose shape is exactly ``logits.shape[:-1]`` (``logits.shape``
    for element-wise losses).

    Exact equality, not broadcasting: a `(N, 1)` target against `(N, K)` logits
    would otherwise broadcast into an `(N, N)` loss that averages to nonsense.
    """
    check_real("targets", targets)
    _check_matches_logits("targets", targets, logits_shape, per_row)


def check_where(
    where: ArrayLike | None, logits_shape: tuple[int, ...], *, per_row: bool = True, logits_name="logits"
):
    """A boolean mask shaped like the targets (see :func:`check_targets`), or None."""
    if where is None:
        return None
    where = mask("where", where)
    _check_matches_logits("where", where, logits_shape, per_row, logits_name)
    return where


def _check_matches_logits(name, x, logits_shape, per_row, logits_name="logits") -> None:
    expected = tuple(logits_shape[:-1]) if per_row else tuple(logits_shape)
    if tuple(x.shape) != expected:
        raise ValueError(
            f"{name}.shape must equal {logits_name}.shape{'[:-1]' if per_row else ''}: "
            f"{name}.shape={tuple(x.shape)}, {logits_name}.shape={tuple(logits_shape)}"
        )


def prepare_targets(targets: ArrayLike, num_bins: int, bin_values: ArrayLike | None):
    """Checked ``(targets, num_bins, bin_values)`` for functions of targets alone.

    Targets are cast to their compute dtype (at least float32), and
    ``bin_values`` to the same dtype.
    """
    num_bins = check_num_bins(num_bins)
    targets = real("targets", targets)
    dtype = compute_dtype(targets.dtype)
    return targets.astype(dtype), num_bins, check_bin_values(bin_values, num_bins, dtype)


@overload
def check_bin_values(bin_values: None, num_bins: int, dtype) -> None: ...
@overload
def check_bin_values(bin_values: ArrayLike, num_bins: int, dtype) -> jax.Array: ...
def check_bin_values(bin_values: ArrayLike | None, num_bins: int, dtype) -> jax.Array | None:
    """A 1-D, finite, strictly increasing array of ``num_bins`` bin positions, or None.

    Finiteness and monotonicity are checked when the values are concrete
    (NumPy, lists, or JAX arrays outside ``jit``); traced values are taken as given.
    """
    if bin_values is None:
        return None
    values = real("bin_values", bin_values)
    if values.ndim != 1 or values.shape[0] != num_bins:
        raise ValueError(
            f"bin_values must be 1-D with one value per bin: bin_values.shape={values.shape}, "
            f"num_bins={num_bins}"
        )
    if is_concrete(values):
        concrete = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(concrete)):
            raise ValueError(f"bin_values must be finite; got {concrete.tolist()}")
        if not np.all(np.diff(concrete) > 0):
            raise ValueError(f"bin_values must be strictly increasing; got {concrete.tolist()}")
    # Constants of the loss, not parameters: no gradient flows into them.
    return jax.lax.stop_gradient(values.astype(dtype))


# --- hyper-parameters -------------------------------------------------------------------


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    """A Python int (it sets a shape or a count) of at least ``minimum``."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(
            f"{name} must be a Python int >= {minimum} (it sets a shape or a count); got {value!r}"
        ) from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def axis(name: str, value, ndim: int) -> int:
    """A Python int axis in ``[-ndim, ndim)``; bools, floats and out-of-range values are a
    ValueError naming ``name``."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be an integer axis; got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer axis; got {value!r}") from None
    if not -ndim <= value < ndim:
        raise ValueError(f"{name} must be in [-{ndim}, {ndim}) for ndim={ndim}; got {value}")
    return value


def positive(name: str, value, *, allow_zero: bool = False):
    """A number > 0 (>= 0 with ``allow_zero``), checked when concrete; traced values pass.

    Hyper-parameters that only enter the maths (temperatures, widths, ``eps``,
    exponents) may be traced, e.g. when swept under ``jit`` or ``vmap``.
    """
    if not is_concrete(value):
        return value
    array = np.asarray(value)
    is_real = np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    if array.shape != () or not is_real:
        raise ValueError(f"{name} must be a real scalar; got {value!r}")
    number = float(array)
    ok = (number >= 0 if allow_zero else number > 0) and np.isfinite(number)
    if not ok:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite; got {value!r}")
    return value


def shaped(name: str, x: ArrayLike, shape: tuple[int | None, ...], *, kind: str = "floating") -> jax.Array:
    """``x`` as an array of ``kind`` ("floating" or "real") with exactly the axes of ``shape``.

    ``None`` entries of ``shape`` are free sizes; the error shows the expected
    pattern, e.g. ``(n, 4)``, and what was passed.
    """
    x = floating(name, x) if kind == "floating" else real(name, x)
    if x.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(x.shape, shape, strict=True)
    ):
        pattern = (
            "(" + ", ".join("n" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "")
        )
        raise ValueError(f"{name} must have shape {pattern}); got {name}.shape={tuple(x.shape)}")
    return x
