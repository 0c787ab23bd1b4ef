"""The public API as the sweeps see it: one definition for the input-rule, typing and docs tests."""

from __future__ import annotations

import inspect
import types

import jax_dfl
import jax_dfl.evaluation
import jax_dfl.inspection
import jax_dfl.nn
import jax_dfl.parallel

MODULES = (jax_dfl, jax_dfl.nn, jax_dfl.inspection, jax_dfl.parallel, jax_dfl.evaluation)


def public_names(module: types.ModuleType, *, constants: bool = False) -> list[str]:
    """``__all__``, else the functions and classes ``module`` defines (and its upper-case data)."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return sorted(names)
    out = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        defined = (inspect.isfunction(value) or inspect.isclass(value)) and getattr(
            value, "__module__", None
        ) == module.__name__
        constant = (
            constants
            and name.isupper()
            and not (inspect.ismodule(value) or inspect.isclass(value) or callable(value))
        )
        if defined or constant:
            out.append(name)
    return sorted(out)
