"""The detection study's settings: ``default`` and variants built on it (``get_config()`` each)."""

from __future__ import annotations

import importlib


def get(name: str):
    """``configs/<name>.py``'s ``get_config()``."""
    return importlib.import_module(f"{__name__}.{name}").get_config()
