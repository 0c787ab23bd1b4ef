"""For the test suite: two arms, real and synthetic share one training program (a 96 px tile,
one stride-8 level), so each arm compiles once per batch size."""

from __future__ import annotations

import dataclasses

from . import default


def get_config() -> default.StudyConfig:
    base = default.get_config()
    return dataclasses.replace(
        base,
        arms=("ciou", "ciou_dfl"),
        gains=(0.4, 1.0),
        seeds=2,
        replicates=20,
        max_batch=4,
        real=dataclasses.replace(
            base.real,
            steps=2,
            batch=2,
            eval_every=2,
            tile=96,
            strides=(8,),
            max_gt=16,
            block=64,
            eval_core=64,  # inference tiles of 64 + 2 x 16 = 96 px: the synthetic images' shape
            eval_margin=16,
        ),
        synthetic=dataclasses.replace(
            base.synthetic,
            steps=2,
            batch=2,
            eval_every=2,
            val_images=4,
            test_images=8,
            strides=(8,),
            pilot_stride=8,
            max_gt=16,
            chunk=8,
        ),
    )
