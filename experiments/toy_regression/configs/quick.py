"""A smoke run of the whole pipeline: 3 seeds, 2000 steps, one learning rate, 5 arms (under a
minute on 2 CPU cores, compilation, floor and timing pass included)."""

from __future__ import annotations

import dataclasses

from . import default


def get_config() -> default.ToyConfig:
    base = default.get_config()
    return dataclasses.replace(
        base,
        losses=("l1", "l2", "dist_l1", "hl_gauss_0.75", "dfl"),
        seeds=3,
        lrs=(1e-2,),
        extend_lr_grid=False,
        train=dataclasses.replace(base.train, steps=2000),
        comparisons=(("l2", "l1"),),
    )
