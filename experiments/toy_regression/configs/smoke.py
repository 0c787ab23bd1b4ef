"""The tests' size: 2 seeds, 40 steps, two arms and two learning rates, 64 held-out signals."""

from __future__ import annotations

import dataclasses

from . import default


def get_config() -> default.ToyConfig:
    base = default.get_config()
    return dataclasses.replace(
        base,
        losses=("l1", "dfl"),
        seeds=2,
        lrs=(3e-3, 1e-2),
        extend_lr_grid=False,
        train=dataclasses.replace(base.train, steps=40, hidden=32, batch_size=64),
        eval_every=20,
        eval_size=64,
        comparisons=(),
        timing_rounds=2,
        early=dataclasses.replace(base.early, stop=20, fine=10, fine_every=2, every=5),
    )
