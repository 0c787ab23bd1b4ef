"""Test-suite set-up shared by every test file.

Markers, set here rather than in each file:

- ``experiments``: the test runs code under ``experiments/`` (the scripts and their toy tasks,
  which need the ``experiments`` extra and the current flax): whole files that test the
  experiments, tests that use a fixture running such code, and any test whose body uses a module
  imported from ``experiments``.
- ``docs``: the test reads the documentation sources (``docs/``).
- ``memory``: the test reads XLA's memory analysis of a compiled function (the "no rows x bins
  scratch" tests, by name). XLA's fusion decides the scratch: the current jax fuses as these tests
  require, while the older releases tried (0.4.35, 0.4.38, 0.5.3, 0.6.2, 0.7.2) compute the same
  values with a rows x bins buffer.

Everything else is the library's own tests (plus the doctests in ``jax_dfl/``): CI's "oldest" job
runs those on the oldest declared dependencies, ``pytest -m "not experiments and not docs and not
memory"``.

The tests switch on 64-bit mode with ``jax.enable_x64`` (a context manager at the top level of
jax in its recent releases); the older jax the library supports has the same context manager as
``jax.experimental.enable_x64``, aliased below. Nothing here changes the library.
"""

from __future__ import annotations

import pathlib
import types

import jax
import pytest

if not hasattr(jax, "enable_x64"):
    from jax.experimental import enable_x64

    jax.enable_x64 = enable_x64  # pyright: ignore[reportAttributeAccessIssue]

# Files whose subject is the experiments (several load a script by path or run it in a subprocess;
# test_multiprocess's processes run experiments/multiprocess.py).
EXPERIMENT_FILES = {
    "test_detection.py",
    "test_detection_study.py",
    "test_experiments.py",
    "test_multiprocess.py",
    "test_toy_review.py",
    "test_stats.py",
    "test_machinery.py",
    "test_detection_power.py",
}
# Fixtures that run experiment code: test_parallel's 8-device worker also trains
# experiments/toy_regression's model.
EXPERIMENT_FIXTURES = {"sharded"}
DOCS_FILES = {"test_docs.py"}


def _names_used(code: types.CodeType) -> set[str]:
    """Global names a function's code uses, its nested functions' included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def _uses_experiments(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    if function is None:
        return False
    used = (function.__globals__.get(name) for name in _names_used(function.__code__))
    return any(isinstance(v, types.ModuleType) and v.__name__.startswith("experiments.") for v in used)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "experiments: runs code under experiments/ (the experiments extra)")
    config.addinivalue_line("markers", "docs: reads the documentation sources under docs/")
    config.addinivalue_line("markers", "memory: reads XLA's memory analysis (depends on the jax release)")


def pytest_ignore_collect(collection_path: pathlib.Path, config: pytest.Config) -> bool | None:
    # With the experiments deselected (CI's oldest job), their files are not even imported: they
    # import the experiments' own dependencies, which that environment does not have.
    if collection_path.name in EXPERIMENT_FILES and "not experiments" in (config.option.markexpr or ""):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = pathlib.Path(str(item.fspath)).name
        fixtures = set(getattr(item, "fixturenames", ()))
        if name in EXPERIMENT_FILES or fixtures & EXPERIMENT_FIXTURES or _uses_experiments(item):
            item.add_marker(pytest.mark.experiments)
        if name in DOCS_FILES:
            item.add_marker(pytest.mark.docs)
        if name == "test_memory.py" or "scratch" in item.name:
            item.add_marker(pytest.mark.memory)
