"""Sized for one GPU/TPU in a few minutes (an estimate; not yet run): wider trunk, larger batches,
more seeds, every arm, three learning rates."""

from __future__ import annotations

import dataclasses

from . import default


def get_config() -> default.ToyConfig:
    base = default.get_config()
    return dataclasses.replace(
        base,
        seeds=8,
        lrs=(1e-3, 3e-3, 1e-2),
        train=dataclasses.replace(base.train, hidden=512, batch_size=4096),
    )
