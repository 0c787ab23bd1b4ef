"""Every public callable is annotated: all its parameters and its return.

The public names are those of ``jax_dfl.__all__`` and of the submodules ``nn``,
``inspection``, ``parallel`` and ``evaluation`` (their functions and classes, as
``tests/test_input_rules.py`` finds them). Classes are checked through their
``__init__`` and ``__call__`` where the library defines them, NamedTuples through
their fields. The annotations are resolved with ``typing.get_type_hints``, so a
misspelt or unimported name in a string annotation fails here too. Pyright itself
runs in CI (``.ci/run``), not in this test.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator

import pytest

import jax_dfl
import jax_dfl.evaluation
import jax_dfl.inspection
import jax_dfl.nn
import jax_dfl.parallel
from tests.public_api import MODULES as PUBLIC_MODULES
from tests.public_api import public_names

MODULES = list(PUBLIC_MODULES)


def _public(module) -> list[str]:
    return public_names(module)


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def _library_method(cls: type, name: str) -> Callable | None:
    """``cls.name`` where a class of this library defines it (not a base class from elsewhere)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name] if klass.__module__.startswith("jax_dfl") else None
    return None


def _public_callables() -> Iterator[tuple[str, object]]:
    """``(qualified name, function or NamedTuple class)`` for every public callable."""
    for module in MODULES:
        for name in _public(module):
            obj = getattr(module, name)
            qualified = f"{module.__name__}.{name}"
            if inspect.isclass(obj):
                if _is_namedtuple(obj):
                    yield qualified, obj
                    continue
                methods = [(m, _library_method(obj, m)) for m in ("__init__", "__call__")]
                methods = [(m, f) for m, f in methods if f is not None]
                assert methods, f"{qualified}: a public class with neither __init__ nor __call__ of its own"
                for method, function in methods:
                    yield f"{qualified}.{method}", function
            elif callable(obj):
                yield qualified, obj


PUBLIC = dict(_public_callables())


def _missing_annotations(obj, *, method: bool = False) -> list[str]:
    """What ``obj`` (a function, a method or a NamedTuple class) leaves unannotated; [] if nothing."""
    hints = typing.get_type_hints(obj)  # raises if a string annotation does not resolve
    if inspect.isclass(obj):
        return [f"field {field}" for field in obj._fields if field not in hints]
    parameters = list(inspect.signature(obj).parameters.values())
    if method:
        parameters = parameters[1:]  # self
    missing = [f"parameter {p.name}" for p in parameters if p.name not in hints]
    if "return" not in hints:
        missing.append("return")
    return missing


def test_the_public_names_are_found():
    # The enumeration itself: a few names from each namespace, so an empty sweep cannot pass.
    for name in [
        "jax_dfl.distribution_focal_loss",
        "jax_dfl.non_max_suppression",
        "jax_dfl.Assignment",
        "jax_dfl.nn.DistributionHead.__init__",
        "jax_dfl.nn.DistributionHead.__call__",
        "jax_dfl.nn.Integral.__call__",
        "jax_dfl.inspection.distribution_gradient_profile",
        "jax_dfl.inspection.DistributionGradients",
        "jax_dfl.parallel.data_mesh",
        "jax_dfl.parallel.replicate",
        "jax_dfl.evaluation.coco_evaluate",
    ]:
        assert name in PUBLIC, name
    assert len(PUBLIC) >= len(jax_dfl.__all__) + 15


def test_the_check_catches_missing_annotations():
    def partly(x, y: int, *args, z: float = 0.0, **kwargs):
        return x

    class Head:
        def __call__(self, x: int) -> int:
            return x

    class Fields(typing.NamedTuple):
        a: int
        b: str

    assert _missing_annotations(partly) == [
        "parameter x",
        "parameter args",
        "parameter kwargs",
        "return",
    ]
    assert _missing_annotations(Head.__call__, method=True) == []
    assert _missing_annotations(Fields) == []


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_callables_are_fully_annotated(name):
    assert _missing_annotations(PUBLIC[name], method=name.endswith(("__init__", "__call__"))) == [], name
