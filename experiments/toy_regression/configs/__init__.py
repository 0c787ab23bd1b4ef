"""The toy study's settings: ``default`` and variants built on it (``get_config()`` each).

:func:`override` applies ``name=value`` assignments from the command line (``--set``), e.g.
``seeds=2``, ``train.steps=40``, ``lrs=3e-3,1e-2``, ``losses=l1,dfl``, ``extend_lr_grid=false``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any


def get(name: str):
    """``configs/<name>.py``'s ``get_config()``."""
    return importlib.import_module(f"{__name__}.{name}").get_config()


def _parse(text: str, like: Any) -> Any:
    if isinstance(like, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false; got {text!r}")
        return text.lower() in ("true", "1")
    if isinstance(like, tuple):
        items = [t for t in text.split(",") if t]
        return tuple(_parse(t, like[0]) if like else _guess(t) for t in items)
    if like is None:
        return _guess(text)
    return type(like)(text)


def _guess(text: str) -> Any:
    for kind in (int, float):
        with contextlib.suppress(ValueError):  # not this kind: try the next, else keep the text
            return kind(text)
    return text


def override(config, assignments: Sequence[str]):
    """``config`` with each ``dotted.name=value`` applied (the value parsed as the field's type;
    a tuple field takes comma-separated items)."""
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep:
            raise ValueError(f"expected name=value; got {assignment!r}")
        config = _replace(config, name.strip().split("."), text.strip())
    return config


def _replace(obj, path: list[str], text: str):
    names = {f.name for f in dataclasses.fields(obj)}
    if path[0] not in names:
        raise ValueError(f"{type(obj).__name__} has no setting {path[0]!r}; it has {sorted(names)}")
    current = getattr(obj, path[0])
    if len(path) > 1:
        return dataclasses.replace(obj, **{path[0]: _replace(current, path[1:], text)})
    if dataclasses.is_dataclass(current):
        raise ValueError(f"{path[0]!r} is a group of settings; set one of its fields")
    return dataclasses.replace(obj, **{path[0]: _parse(text, current)})
