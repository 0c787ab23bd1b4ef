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
    split: Mapping[str, Sequence[str]] | None = None,
    since: str = "0.3.0",
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Accept old keyword names (``renames``: old -> new), for arguments made keyword-only the
    old positional order (``positional``: the new names, in the old order), and an old keyword
    that served several roles (``split``: old -> the new names it sets, all to its value; giving
    it beside any of them is a TypeError).

    The old keywords should stay in the wrapped function's signature (defaulting to None, unused
    there): ``jax.jit(..., static_argnames=...)`` reads that signature, so code that marked an old
    name static keeps working for the release.

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
            for old, news in (split or {}).items():
                if kwargs.get(old) is None:
                    kwargs.pop(old, None)
                    continue
                given = [n for n in news if n in kwargs]
                if given:
                    raise TypeError(
                        f"{name}() got both {old}= (deprecated) and {', '.join(f'{n}=' for n in given)}; "
                        f"pass only {', '.join(f'{n}=' for n in news)}"
                    )
                warn(
                    f"{name}(): `{old}` is deprecated (it served {len(news)} roles); write "
                    + ", ".join(f"`{n}=`" for n in news),
                )
                value = kwargs.pop(old)
                kwargs.update(dict.fromkeys(news, value))
            # The call is rebuilt from the old spellings, so pyright cannot match it to P.
            return fn(*args, **kwargs)  # pyright: ignore[reportCallIssue]

        return wrapper  # pyright: ignore[reportReturnType]

    return decorate
