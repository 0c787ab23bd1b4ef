"""Amendment 5's exploratory projection: the per-doubling ratio, the doublings still needed, the
budget and the per-arm bookkeeping, against closed forms and hand-built records."""

import json
import math

import numpy as np
import pytest

from experiments.common.store import RunStore
from experiments.detection_study import projection as pj


def test_ratio_is_the_endpoint_ratio_and_none_unless_every_gain_is_positive_and_finite():
    assert pj.ratio_per_doubling([0.04, 0.02, 0.01]) == pytest.approx(0.5)
    assert pj.ratio_per_doubling([0.01, 0.02]) == pytest.approx(2.0)
    g = [0.05, 0.02, 0.012]
    assert pj.ratio_per_doubling(g) == pytest.approx(math.sqrt(g[2] / g[0]))
    assert pj.ratio_per_doubling([0.05, 0.001, 0.012]) == pytest.approx(math.sqrt(g[2] / g[0]))
    for bad in ([0.02, 0.0, 0.01], [0.02, 0.01, -0.001], [0.02, math.nan, 0.01], [0.02]):
        assert pj.ratio_per_doubling(bad) is None


def test_doublings_needed_closed_form():
    assert pj.doublings_needed(0.004, 0.5, 0.0, 0.005) == 0  # already below
    assert pj.doublings_needed(0.02, 0.5, 0.0, 0.005) == 2  # 0.02 -> 0.01 -> 0.005
    assert pj.doublings_needed(0.021, 0.5, 0.0, 0.005) == 3
    # With a fixed half-width of 0.003 the mean must reach 0.002: 0.02 -> ... -> 0.0025 -> 0.00125.
    assert pj.doublings_needed(0.02, 0.5, 0.003, 0.005) == 4
    assert pj.doublings_needed(0.02, 0.5, 0.005, 0.005) is None  # the half-width alone is the level
    assert pj.doublings_needed(0.02, 1.0, 0.0, 0.005) is None
    assert pj.doublings_needed(0.02, None, 0.0, 0.005) is None
    # A ratio a rounding error below 1 must not ask for 2 ** 1e16 steps.
    assert pj.doublings_needed(0.02, 1 - 1e-15, 0.0, 0.005) is None
    assert pj.doublings_needed(0.02, 0.5, 0.0, 0.005, most=1) is None
    assert pj.doublings_needed(math.nan, 0.5, 0.0, 0.005) is None
    assert pj.doublings_needed(0.02, 0.5, math.nan, 0.005) is None  # one seed: no interval
    for mean, ratio, half in [(0.03, 0.7, 0.0), (0.011, 0.4, 0.001), (0.05, 0.6, 0.002)]:
        n = pj.doublings_needed(mean, ratio, half, 0.005)
        assert mean * ratio**n + half <= 0.005 < mean * ratio ** (n - 1) + half


def test_amendment_hours_adds_the_half_length_leg_from_two_doublings_on():
    assert pj.amendment_hours(None, 4, 8, 0.05) is None
    assert pj.amendment_hours(0, 4, 8, 0.05) == 0.0
    assert pj.amendment_hours(1, 4, 8, 0.05) == pytest.approx(32 * 25600 * 0.05 / 3600)
    assert pj.amendment_hours(2, 4, 8, 0.05) == pytest.approx(32 * (51200 + 25600) * 0.05 / 3600)


def _curve(final: float, peak: float | None = None):
    peak = final if peak is None else peak
    return [{"step": 50, "val_AP": peak / 2}, {"step": 100, "val_AP": peak}, {"step": 150, "val_AP": final}]


BASE = {1600: 0.50, 3200: 0.54, 6400: 0.56, 12800: 0.57}  # gains 0.04, 0.02, 0.01: ratio 0.5


def _runs(seeds=range(100, 104)):
    runs = {}
    for steps in pj.ORDER:
        runs[steps] = {}
        for arm in pj.ARMS:
            spread = 0.001 * (steps == 12800 and arm == "ciou")
            runs[steps][arm] = {s: {"curve": _curve(BASE[steps] + spread * (s - 100))} for s in seeds}
    return runs


def test_project_drops_an_arms_collapsed_seed_and_projects_on_the_rest():
    runs = _runs()
    runs[3200]["ciou_l1"][103] = {"curve": _curve(0.001, peak=0.5)}  # collapsed at 3200 steps
    result = pj.project(runs, seconds_per_step=0.04, verdicts={"ciou_l1": False})
    assert result["analysed_seeds"] == [100, 101, 102, 103]
    l1 = result["arms"]["ciou_l1"]
    assert l1["dropped_collapsed"] == [103] and l1["seeds"] == [100, 101, 102]
    assert l1["ratio"] == pytest.approx(0.5) and l1["amendment5_levelled"] is False
    # Identical seeds: no interval width, so mean and upper end agree at 0.01: one more doubling.
    assert l1["half_width"] == pytest.approx(0.0, abs=1e-12)
    assert l1["more_doublings_mean"] == l1["more_doublings"] == 1 and l1["steps"] == 25600
    assert l1["run_hours"] == pytest.approx(25600 * 0.04 / 3600)
    assert l1["amendment_hours"] == pytest.approx(4 * 4 * 25600 * 0.04 / 3600)
    ciou = result["arms"]["ciou"]
    gains = np.array([0.01 + 0.001 * k for k in range(4)])
    assert ciou["doublings"][-1]["mean"] == pytest.approx(gains.mean())
    assert ciou["half_width"] > 0 and ciou["more_doublings"] >= ciou["more_doublings_mean"]
    assert result["arms"]["ciou_dfl"]["amendment5_levelled"] is None


def test_an_arm_left_with_one_seed_gets_no_projection_not_a_crash():
    runs = _runs(seeds=(100, 101))
    runs[6400]["ciou_dfl"][101] = {"curve": _curve(0.001, peak=0.5)}
    r = pj.project(runs, 0.04)["arms"]["ciou_dfl"]
    assert r["seeds"] == [100] and r["more_doublings"] is None and r["amendment_hours"] is None
    assert "no projection" in pj.markdown(pj.project(runs, 0.04))


def _write(out, folder, arm, seed, final, seconds=(2.0, 50.0, 5.0)):
    key = f"{arm}_seed{seed}_lr0.01_gain0"
    record = {"arm": arm, "seed": seed, "phase": "reported", "test": {"AP": 0.5}, "curve": _curve(final)}
    record.update(dict(zip(("compile_seconds", "train_seconds", "eval_seconds"), seconds, strict=True)))
    RunStore(out / "records" / folder).write(key, record)


def test_main_reads_the_records_layout_and_amendment5s_verdicts(tmp_path):
    for steps, folder in pj.SCHEDULES.items():
        for arm in pj.ARMS:
            for seed in (100, 101, 102):
                _write(tmp_path, folder, arm, seed, BASE[steps] + 0.0005 * seed * (steps == 12800))
    # A pilot record in the same folder is not a reported run.
    RunStore(tmp_path / "records" / "synthetic_stride8").write(
        "ciou_seed1000_lr0.01_gain0", {"arm": "ciou", "seed": 1000, "phase": "pilot", "curve": _curve(0.1)}
    )
    levelled = {arm: {"levelled": arm == "ciou_dfl"} for arm in pj.ARMS}
    (tmp_path / "amendment5.json").write_text(json.dumps({"analysis": {"levelled": levelled}}))
    result = pj.main(["--out", str(tmp_path)])
    assert result["analysed_seeds"] == [100, 101, 102]
    assert result["seconds_per_step"] == pytest.approx(57.0 / pj.STEPS)
    assert result["arms"]["ciou_dfl"]["amendment5_levelled"] is True
    assert result["arms"]["ciou"]["amendment5_levelled"] is False
    assert (tmp_path / "amendment5_projection.md").read_text() == pj.markdown(result)
    assert json.loads((tmp_path / "amendment5_projection.json").read_text())["analysed_seeds"] == [
        100,
        101,
        102,
    ]
