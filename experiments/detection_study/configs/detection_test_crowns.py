"""The detection test's crowns leg: ``detection_test``'s settings on the NEON crowns (``real``),
run after the synthetic strides and only as the budget allows, so kept out of the main config's
``data``. Its own pilot (grid, edge rule, schedule check) on the crowns' validation blocks, then
8 seeds (100-107). Amendment 3: without ``l1``, which is in none of the three primary contrasts
(its runs are a fifth of the leg's budget)."""

from __future__ import annotations

import dataclasses

from . import detection_test


def get_config():
    return dataclasses.replace(
        detection_test.get_config(),
        arms=("ciou", "ciou_l1", "ciou_dist_l1", "ciou_dfl"),
        data=("real",),
        seeds=8,
        condition_seeds=(),
    )
