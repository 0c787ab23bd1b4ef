"""The committed CPU study: the default settings."""

from __future__ import annotations

from .default import get_config as get_config
