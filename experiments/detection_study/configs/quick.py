"""A few minutes on 2 CPU cores: the two references and YOLOv8's box loss, a few steps, both data sets."""

from __future__ import annotations

import dataclasses

from . import default


def get_config() -> default.StudyConfig:
    base = default.get_config()
    return dataclasses.replace(
        base,
        arms=("ciou", "ciou_dist", "ciou_dfl"),
        seeds=2,
        replicates=50,
        real=dataclasses.replace(base.real, steps=6, batch=4, eval_every=3),
        synthetic=dataclasses.replace(
            base.synthetic,
            steps=6,
            batch=8,
            eval_every=3,
            val_images=16,
            test_images=32,
            strides=(4,),
            pilot_stride=4,
        ),
    )
