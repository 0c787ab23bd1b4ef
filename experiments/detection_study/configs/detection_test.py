"""The powered detection test (issue 20), as far as the machinery fixes it; the pre-registration
decides the grid, the seeds and the steps, and edits this file before the confirmatory run.

Arms differ only in the box branch; the auxiliary gain of ``ciou_l1``, ``ciou_dist_l1`` and
``ciou_dfl`` (and ``ciou_hl_gauss``) is piloted with the peak learning rate on 2 pilot seeds;
16 paired seeds; synthetic controls with the head at stride 8 (primary) and 4 (secondary),
the pilot at stride 8. Validation AP is recorded every ``eval_every`` steps (the area under it and
the plateau check use it). Every (seed, lr, gain) of an arm is one vmapped program, up to
``max_batch`` runs at a time.
"""

from __future__ import annotations

import dataclasses

from . import default


def get_config() -> default.StudyConfig:
    base = default.get_config()
    return dataclasses.replace(
        base,
        arms=("ciou", "l1", "ciou_l1", "ciou_dist_l1", "ciou_dfl", "ciou_hl_gauss"),
        data=("synthetic",),
        lrs=(1e-3, 3e-3, 1e-2),
        gains=(0.1, 0.4, 1.6),
        pilot_seeds=(1000, 1001),
        select_by="final_val_AP",
        seeds=16,
        max_batch=18,
        references=("ciou",),
        comparisons=(("ciou_dfl", "ciou_dist_l1"), ("ciou_dfl", "ciou_l1"), ("ciou_dfl", "l1")),
        synthetic=dataclasses.replace(
            base.synthetic, steps=1000, batch=32, eval_every=50, strides=(8, 4), pilot_stride=8
        ),
    )
