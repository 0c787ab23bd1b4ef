"""The full CPU study: the default settings (about 25 minutes on a free 2-core CPU)."""

from __future__ import annotations

from . import default


def get_config() -> default.ToyConfig:
    return default.get_config()
