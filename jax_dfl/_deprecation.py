"""Old argument names and orders, accepted for one release with a ``DeprecationWarning``.

Each warning says what to write instead. The shims run before the wrapped
function, so its own checks see only the new names.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def warn(message: str, *, stacklevel: int = 3) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)


def move_keyword(kwargs: dict, old: str, new: str, function: str) -> None:
    """Rename ``kwargs[old]`` to ``kwargs[new]`` in place, warning; both given is a TypeError."""
    if old not in kwargs:
        return
    if new in kwargs:
        raise TypeError(f"{function}() got both {old}= (deprecated) and {new}=; pass only {new}=")
    warn(f"{function}(): `{old}` is deprecated; write `{new}=`", stacklevel=4)
    kwargs[new] = kwargs.pop(old)


def renamed(
    renames: Mapping[str, str] | None = None,
    *,
    positional: Sequence[str] = (),
    since: str = "0.3.0",
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Accept old keyword names (``renames``: old -> new) and, for arguments made keyword-only,
    the old positional order (``positional``: the new names, in the old order).

    ``inspect.signature`` of the result is the new one (``functools.wraps``).
    """
    renames = dict(renames or {})
    positional = tuple(positional)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        name = fn.__name__

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if positional and args:
                given = positional[: len(args)]
                warn(
                    f"{name}(): passing {', '.join(given)} by position is deprecated (since {since}); "
                    f"write {name}({', '.join(f'{n}=...' for n in given)})",
                )
                if len(args) > len(positional):
                    raise TypeError(f"{name}() takes at most {len(positional)} positional arguments")
                for arg_name, value in zip(given, args, strict=True):
                    if arg_name in kwargs:
                        raise TypeError(f"{name}() got multiple values for argument {arg_name!r}")
                    kwargs[arg_name] = value
                args = ()
            for old, new in renames.items():
                move_keyword(kwargs, old, new, name)
            return fn(*args, **kwargs)

        return wrapper  # pyright: ignore[reportReturnType]

    return decorate
