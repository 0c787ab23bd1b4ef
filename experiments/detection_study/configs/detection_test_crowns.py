"""The detection test's crowns leg: ``detection_test``'s settings on the NEON crowns (``real``),
run after the synthetic strides 8 and 4 and only as the budget allows, so kept out of the main
config's ``data``. Its own pilot (grid, edge rule, schedule check) on the crowns."""

from __future__ import annotations

import dataclasses

from . import detection_test


def get_config():
    return dataclasses.replace(detection_test.get_config(), data=("real",))
