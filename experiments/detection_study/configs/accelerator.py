"""One GPU: longer schedules, bigger batches, more seeds, heads at strides 2, 4 and 8 (not yet timed)."""

from __future__ import annotations

import dataclasses

from . import default


def get_config() -> default.StudyConfig:
    base = default.get_config()
    return dataclasses.replace(
        base,
        seeds=8,
        max_batch=16,
        real=dataclasses.replace(base.real, steps=1000, batch=32, eval_every=200),
        synthetic=dataclasses.replace(
            base.synthetic,
            steps=1000,
            batch=64,
            eval_every=200,
            val_images=256,
            test_images=2048,
            strides=(2, 4, 8),
            chunk=256,
        ),
    )
