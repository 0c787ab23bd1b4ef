"""The long run of the results page: four arms at lr 0.01 for 18000 steps (the schedule stretched,
no learning rate re-tuned), to see whether the end points are a lack of steps."""

from __future__ import annotations

import dataclasses

from . import default


def get_config() -> default.ToyConfig:
    base = default.get_config()
    return dataclasses.replace(
        base,
        losses=("l1", "dist_l1", "hl_gauss_0.5", "dfl"),
        lrs=(1e-2,),
        extend_lr_grid=False,
        train=dataclasses.replace(base.train, steps=18000),
        comparisons=(),
    )
