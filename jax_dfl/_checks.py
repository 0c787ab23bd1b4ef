"""The input rules shared by every public function (see ``docs/conventions.md``, "Input rules").

Everything here runs on static information (shapes, dtypes, Python numbers),
so a bad call fails while JAX traces it, with a message naming the argument
as the caller passed it:

* arrays: each public function declares its array arguments once, in one
  :func:`arrays` call: name, dtype kind and a symbolic shape such as
  ``"... 4 num_bins"``. chex's assertions (``assert_type``, ``assert_shape``,
  ``assert_axis_dimension_gteq``) decide; this module binds the symbols across
  arguments and words the error. A bad dtype is a ``TypeError``, a bad shape a
  ``ValueError``, each naming the argument (and, for a shape, the axis and the
  argument or parameter that fixed its size). No silent broadcast.
* hyper-parameters: sizes and counts are Python ints, widths, temperatures
  and ``eps`` positive; a bad value is a ``ValueError`` naming the parameter.
  Numeric hyper-parameters that enter only the maths are checked when they are
  concrete and may be traced under ``jit``. These are Python values, not
  arrays: chex has no assertion for them, so they are checked here directly.
* dtype policy: the maths runs in the inputs' floating dtype promoted to at
  least float32 (bf16/f16 are upcast); outputs have that dtype, gradients the
  dtype of what they are taken with respect to.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping
from typing import Any

import chex
import jax
import jax.core
import jax.numpy as jnp
import numpy as np

# bf16/f16 inputs are upcast: a softmax over many bins in 8 mantissa bits is
# too coarse for a loss whose optimum is a two-point distribution, and box
# areas in bf16 lose whole pixels.
_MIN_COMPUTE_DTYPE = jnp.float32


def compute_dtype(*dtypes) -> jnp.dtype:
    """The dtype the maths runs in: the inputs' float type, at least float32."""
    return jnp.promote_types(jnp.result_type(*dtypes), _MIN_COMPUTE_DTYPE)


def in_compute_dtype(*xs: jax.Array) -> tuple[jax.Array, ...]:
    """``xs`` cast to their common :func:`compute_dtype`."""
    dtype = compute_dtype(*(x.dtype for x in xs))
    return tuple(x.astype(dtype) for x in xs)


def is_concrete(value) -> bool:
    """True for Python numbers and arrays whose value is known at trace time."""
    return not isinstance(value, jax.core.Tracer)


# --- arrays: declared once per function, decided by chex ---------------------------------


def _always_on(assertion):
    """The check chex wraps, without chex's global switch.

    ``chex.disable_asserts()`` makes every chex assertion a no-op. These checks
    are not debugging aids but the library's input rules: with them off, an
    ``(N, 1)`` target would silently broadcast against ``(N, K)`` logits into
    an ``(N, N)`` loss. So the function chex wraps is called directly
    (``functools.wraps`` keeps it as ``__wrapped__``, in the chex releases this
    library supports: ``tests/test_checks.py`` pins it); without that attribute
    the public assertion is used.
    """
    return getattr(assertion, "__wrapped__", assertion)


_assert_type = _always_on(chex.assert_type)
_assert_shape = _always_on(chex.assert_shape)
_assert_axis = _always_on(chex.assert_axis_dimension_comparator)

# Dtype kinds: what the error says, and the types chex's ``assert_type`` accepts (any one).
_KINDS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "float": ("floating point", (float,)),
    "real": ("real numbers (float or int)", (float, int)),
    "int": ("integers", (int,)),
    "bool": ("a boolean mask", (np.bool_,)),
}


@dataclasses.dataclass(frozen=True)
class _Dim:
    """One token of a symbolic shape: a literal size, a named axis or a named run of axes."""

    name: str  # "4", "num_bins", "...", "*P"
    size: int | None = None  # literal sizes only
    variadic: bool = False

    @classmethod
    def parse(cls, token: str) -> _Dim:
        if token.isdigit():
            return cls(token, size=int(token))
        if token == "..." or (token.startswith("*") and token[1:].isidentifier()):
            return cls(token, variadic=True)
        if token.isidentifier():
            return cls(token)
        raise ValueError(f"bad symbolic dimension {token!r}")  # a bug in a declaration


def _pattern(tokens: tuple[_Dim, ...]) -> str:
    names = [t.name for t in tokens]
    trailing = "," if len(names) == 1 and not tokens[0].variadic else ""
    return "(" + ", ".join(names) + trailing + ")"


def _axes(start: int, stop: int, ndim: int, variadic: bool) -> str:
    """``[i]`` for one axis, ``[i:j]`` for a run (``[:j]``, ``[i:]`` at the ends)."""
    if not variadic:
        return f"[{start}]"
    return f"[{start if start else ''}:{stop if stop != ndim else ''}]"


@dataclasses.dataclass(frozen=True)
class _Binding:
    """A symbol's size(s) and where they came from, for the message."""

    value: tuple[int, ...]
    source: str

    def shown(self, variadic: bool) -> str:
        return str(self.value) if variadic else str(self.value[0])


class _Mismatch(Exception):
    """Internal: why one alternative of a declared shape does not fit."""


def _fit(
    arg: str,
    x: jax.Array | np.ndarray,
    tokens: tuple[_Dim, ...],
    bound: dict[str, _Binding],
    minimum: Mapping[str, int],
) -> dict[str, _Binding]:
    """New bindings if ``x`` fits ``tokens`` given ``bound``; else ``_Mismatch`` with the reason."""
    shape, ndim = tuple(x.shape), x.ndim
    unbound = [t for t in tokens if t.variadic and t.name not in bound]
    if len(unbound) > 1:
        raise ValueError(f"two unbound runs of axes in {_pattern(tokens)}")  # a bug in a declaration
    # The shape chex checks: sizes known so far, None for a new named axis, ... for a new run.
    expected: list[Any] = []
    for t in tokens:
        if t.size is not None:
            expected.append(t.size)
        elif t.name in bound:
            expected.extend(bound[t.name].value)
        else:
            expected.append(... if t.variadic else None)
    try:
        _assert_shape(x, tuple(expected))
        failed = None
    except AssertionError as error:
        failed = error

    fixed = sum(1 for item in expected if item is not ...)
    if failed is not None and (ndim < fixed or (not unbound and ndim != fixed)):
        needs = f"at least {fixed}" if unbound else str(fixed)
        known = [
            f"{t.name} is {bound[t.name].shown(t.variadic)} from {bound[t.name].source}"
            for t in tokens
            if t.size is None and t.name in bound
        ]
        sources = f": {'; '.join(known)}" if known else ""
        raise _Mismatch(
            f"it has {ndim} ax{'i' if ndim == 1 else 'e'}s; {_pattern(tokens)} needs {needs}{sources}"
        )
    # Walk the axes: left of the new run from the front, right of it from the back.
    new: dict[str, _Binding] = {}
    start = 0
    for t in tokens:
        known = bound.get(t.name) or new.get(t.name)
        stop = start + (len(known.value) if known else ndim - fixed if t.variadic else 1)
        got = shape[start:stop]
        where = f"{arg}.shape{_axes(start, stop, ndim, t.variadic)}"
        shown = str(got) if t.variadic else str(got[0])
        if t.size is not None and got[0] != t.size:
            raise _Mismatch(f"{where} is {shown}, not {t.size}")
        if t.size is None and known is not None and known.value != got:
            raise _Mismatch(
                f"{where} is {shown}, but {t.name} is {known.shown(t.variadic)} from {known.source}"
            )
        if t.size is None and known is None:
            new[t.name] = _Binding(got, f"{where}, {arg}.shape={shape}")
            least = minimum.get(t.name)
            if least is not None and not _accepts(
                _assert_axis, x, start, lambda n, least=least: n >= least, f">= {least}"
            ):
                raise _Mismatch(f"{where} is {shown}, but {t.name} must be >= {least}")
        start = stop
    if failed is not None:  # chex refused it and the walk found no reason: should not happen
        raise _Mismatch(str(failed))
    return new


def arrays(
    fn: str,
    /,
    *,
    dims: Mapping[str, int] | None = None,
    minimum: Mapping[str, int] | None = None,
    host: bool = False,
    **declared: tuple[Any, str, str | tuple[str, ...]],
) -> tuple[jax.Array, ...]:
    """Check a function's array arguments, declared once, and return them as arrays.

    Each keyword is an argument, declared as ``(value, kind, shape)``:

    * ``kind``: ``"float"``, ``"real"`` (float or int), ``"int"`` or ``"bool"``;
      ``"... | None"`` also accepts ``None``, which is returned as is.
    * ``shape``: space-separated symbols, as in chex and equinox/jaxtyping
      annotations: a literal size (``"4"``), a named axis (``"A"``,
      ``"num_bins"``), a named run of axes (``"*P"``), or ``"..."``, the
      shared leading (batch) axes. ``""`` is a scalar. A name binds at its first
      sight and must agree everywhere after, so ``"A 4"`` and ``"A 2"`` share
      ``A``. One unbound run per declaration; the order of the keywords is the
      order of binding. A tuple of shapes gives alternatives (the first that fits).

    ``dims`` fixes names from hyper-parameters (``dims={"num_bins": num_bins}``);
    ``minimum`` gives a name a smallest size (``minimum={"num_bins": 2}``).
    ``host=True`` converts with ``np.asarray`` instead (host-side NumPy code).

    Dtypes are checked with ``chex.assert_type``, shapes with
    ``chex.assert_shape`` (sizes bound so far, ``None`` for a new axis,
    ``...`` for a new run) and minimums with
    ``chex.assert_axis_dimension_comparator``; a failure is re-raised with
    one wording per kind of error:

    * ``TypeError``: ``"{fn}: {arg} must be {kind}; got dtype {dtype}"``;
    * ``ValueError``: ``"{fn}: {arg}.shape={shape} does not match {pattern}: {reason}"``,
      the reason naming the axis and where its expected size came from, e.g.
      ``"targets.shape[1] is 3, but A is 5 from points.shape[0], points.shape=(5, 2)"``.

    The documented broadcast (anchor points ``(A, 2)`` shared by a batch of boxes
    ``(B, A, 4)``) is ``points="*P 2", boxes="... *P 4"``: the boxes' leading axes
    end with the points'; a size-1 axis never stretches.
    """
    bound = {name: _Binding((size,), f"the {name} argument") for name, size in (dims or {}).items()}
    out = []
    for arg, (value, kind, shapes) in declared.items():
        kind, optional = kind.removesuffix(" | None"), kind.endswith(" | None")
        description, types = _KINDS[kind]
        if value is None:
            if not optional:
                raise TypeError(f"{fn}: {arg} must be {description}; got None")
            out.append(None)
            continue
        x = np.asarray(value) if host else jnp.asarray(value)
        if not any(_accepts(_assert_type, x, t) for t in types):
            raise TypeError(f"{fn}: {arg} must be {description}; got dtype {x.dtype}")
        alternatives = (shapes,) if isinstance(shapes, str) else shapes
        patterns = [tuple(_Dim.parse(token) for token in s.split()) for s in alternatives]
        for i, tokens in enumerate(patterns):
            try:
                bound.update(_fit(arg, x, tokens, bound, minimum or {}))
                break
            except _Mismatch as reason:
                if i == len(patterns) - 1:
                    shown = " or ".join(_pattern(t) for t in patterns)
                    raise ValueError(
                        f"{fn}: {arg}.shape={tuple(x.shape)} does not match {shown}: {reason}"
                    ) from None
        out.append(x)
    return tuple(out)


def _accepts(assertion, *args) -> bool:
    try:
        assertion(*args)
    except AssertionError:
        return False
    return True


def bin_values(values: jax.Array | None, dtype) -> jax.Array | None:
    """Checked bin positions (declared ``"num_bins"``, real, by :func:`arrays`) in ``dtype``.

    Finite and strictly increasing when concrete (NumPy, lists, or JAX arrays
    outside ``jit``); traced values are taken as given. These are checks of
    values, which chex makes only inside ``chexify``: they stay here.
    """
    if values is None:
        return None
    if is_concrete(values):
        concrete = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(concrete)):
            raise ValueError(f"bin_values must be finite; got {concrete.tolist()}")
        if not np.all(np.diff(concrete) > 0):
            raise ValueError(f"bin_values must be strictly increasing; got {concrete.tolist()}")
    # Constants of the loss, not parameters: no gradient flows into them.
    return jax.lax.stop_gradient(values.astype(dtype))


# --- hyper-parameters -------------------------------------------------------------------
# Python values (ints that fix shapes, numbers that enter the maths), not arrays: chex has no
# assertion for them, so they are checked here.


def threshold(name: str, value, *, unit_interval: bool = False) -> jax.Array:
    """A real scalar (``[0, 1]`` with ``unit_interval``, never NaN), checked when concrete.

    A hyper-parameter that may be traced, so a bad dtype or shape is a ``ValueError`` like
    every bad hyper-parameter, not the ``TypeError`` of an array argument.
    """
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be a real number; got {value!r}")
    x = jnp.asarray(value)
    if x.ndim != 0:
        raise ValueError(f"{name} must be a scalar; got shape {x.shape}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise ValueError(f"{name} must be a real number; got dtype {x.dtype}")
    if is_concrete(x):
        v = float(x)
        if np.isnan(v):
            raise ValueError(f"{name} must not be NaN")
        if unit_interval and not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be in [0, 1]; got {v}")
    return x


def check_num_bins(num_bins: int, name: str = "num_bins") -> int:
    """``num_bins`` must be a concrete Python int >= 2 (it fixes an array shape)."""
    num_bins = positive_int(name, num_bins)
    if num_bins < 2:
        raise ValueError(f"{name} must be >= 2 (a bin on each side of a target); got {num_bins}")
    return num_bins


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
