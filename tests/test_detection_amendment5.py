"""Amendment 5's run order, its collapse rule and its expected half-widths, against references
written here (float64 NumPy, the Student t quantile)."""

import math

import numpy as np
import pytest

from experiments.common.store import RunStore
from experiments.detection_study import amendment5 as a5

T975_DF7 = 2.3646242510102993  # Student t, 97.5 % quantile, 7 degrees of freedom


def test_planned_order_is_seed_then_arm_at_its_confirmatory_setting():
    chosen = {arm: {"lr": 0.001 * (i + 1), "gain": 0.1 * i} for i, arm in enumerate(a5.ARMS)}
    order = a5.planned(chosen)
    assert len(order) == 8 * 4 and [r.seed for r in order] == sorted(r.seed for r in order)
    assert [r.arm for r in order[:4]] == ["ciou", "ciou_l1", "ciou_dist_l1", "ciou_dfl"]
    assert all(r.lr == chosen[r.arm]["lr"] and r.gain == chosen[r.arm]["gain"] for r in order)
    assert a5.STEPS == 2 * a5.SHORTER == 12800


def _curve(values):
    return [{"step": 50 * (i + 1), "val_AP": v} for i, v in enumerate(values)]


def test_collapsed_is_final_below_half_of_the_best():
    assert a5.collapsed(_curve([0.1, 0.5, 0.001]))  # amendment 4's seed-107 run, in shape
    assert not a5.collapsed(_curve([0.1, 0.5, 0.25]))  # exactly half: not below it
    assert a5.collapsed(_curve([0.1, 0.5, 0.2499]))
    assert a5.collapsed(_curve([0.1, 0.5, math.nan]))  # ending in NaN counts as 0
    assert not a5.collapsed(_curve([0.1, math.nan, 0.4]))  # a NaN in the middle is not the end
    assert not a5.collapsed(_curve([0.0, 0.0]))  # never learned: not a collapse


def _write(out, folder, arm, seed, ap, curve=(0.2, 0.5, 0.5)):
    RunStore(out / "records" / folder).write(
        f"{arm}_seed{seed}_lr0.01_gain0",
        {"arm": arm, "seed": seed, "phase": "reported", "test": {"AP": ap}, "curve": _curve(curve)},
    )


def test_plan_drops_collapsed_seeds_and_uses_the_larger_sd(tmp_path):
    rng = np.random.default_rng(0)
    seeds = list(range(100, 108))
    ap = {(arm, s, k): 0.5 + 0.01 * rng.standard_normal() for arm in a5.ARMS for s in seeds for k in (0, 1)}
    for arm in a5.ARMS:
        for s in seeds:
            # seed 107's ciou run at 6400 steps collapsed (and scored near 0)
            bad = arm == "ciou" and s == 107
            _write(
                tmp_path,
                "amendment4_steps6400",
                arm,
                s,
                0.0004 if bad else ap[arm, s, 1],
                curve=(0.2, 0.5, 0.001) if bad else (0.2, 0.5, 0.5),
            )
            _write(tmp_path, "synthetic_stride8", arm, s, ap[arm, s, 0])
    result = a5.plan(tmp_path)
    h3 = result["contrasts"]["ciou_dfl-ciou"]
    assert h3["seeds_dropped_6400"] == [107] and h3["seeds_6400"] == 7
    kept = [s for s in seeds if s != 107]
    d_long = np.array([ap["ciou_dfl", s, 1] - ap["ciou", s, 1] for s in kept])
    d_base = np.array([ap["ciou_dfl", s, 0] - ap["ciou", s, 0] for s in seeds])
    assert h3["steps6400"] == pytest.approx(d_long.std(ddof=1), rel=1e-12)
    assert h3["steps1600"] == pytest.approx(d_base.std(ddof=1), rel=1e-12)
    assert h3["sd_used"] == max(h3["steps6400"], h3["steps1600"])
    # with the collapsed run kept its SD is that of a run near 0 against a run near 0.5
    assert h3["sd_6400_every_seed"] > 0.1 and h3["expected_half_width_every_seed"] > 0.01
    h1 = result["contrasts"]["ciou_dfl-ciou_dist_l1"]
    assert h1["seeds_dropped_6400"] == [] and h1["seeds_6400"] == 8
    # the expected half-width t E[s] / sqrt(n), E[s] = c4(n) sd for normal differences
    c4 = math.sqrt(2 / 7) * math.gamma(4) / math.gamma(3.5)
    assert h1["expected_half_width"] == pytest.approx(T975_DF7 * c4 * h1["sd_used"] / np.sqrt(8), rel=1e-9)
    text = a5.plan_markdown(result)
    assert "| ciou_dfl-ciou |" in text and "107" in text and "(above 0.01)" in text


def test_plan_needs_two_seeds_for_each_sd(tmp_path):
    for arm in a5.ARMS:
        _write(tmp_path, "amendment4_steps6400", arm, 100, 0.5)
        _write(tmp_path, "synthetic_stride8", arm, 100, 0.5)
    with pytest.raises(ValueError, match="fewer than 2 seeds"):
        a5.plan(tmp_path)


def test_runs_refuse_a_thread_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    with pytest.raises(SystemExit, match="default thread setting"):
        a5.main(["--out", str(tmp_path)])
