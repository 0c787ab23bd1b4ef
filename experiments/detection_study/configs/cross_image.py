"""The generalisation check: train and validate on 528000, test on every block of 541000 (three arms)."""

from __future__ import annotations

import dataclasses

from . import default


def get_config() -> default.StudyConfig:
    base = default.get_config()
    return dataclasses.replace(
        base,
        arms=("ciou", "ciou_dist", "ciou_dfl"),
        data=("real",),
        real=dataclasses.replace(base.real, split="cross_image"),
    )
