"""The page's descriptive figures: helpers against closed forms, optax's schedule and NumPy, and the
committed ``page_figures.json`` against a fresh computation from the committed files."""

import json
import math
import pathlib

import numpy as np
import pytest

from experiments.detection_study import page_figures as pf
from experiments.detection_study.train import TrainConfig, unit_schedule

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results" / "detection_test"


@pytest.mark.parametrize("steps", [800, 1600, 3200, 6400, 12800])
def test_unit_rate_is_the_trainers_schedule(steps):
    schedule = unit_schedule(TrainConfig(steps=steps))
    for step in (0, 1, steps // 40, steps // 20, steps // 20 + 1, steps // 2, 1950, steps - 1, steps):
        assert pf.unit_rate(step, steps) == pytest.approx(float(schedule(step)), abs=1e-6)


def test_unit_rate_closed_form_values():
    assert pf.unit_rate(0, 6400) == 0.0
    assert pf.unit_rate(320, 6400) == 1.0  # end of the 5 % warmup: the peak
    assert pf.unit_rate(6400, 6400) == pytest.approx(0.0, abs=1e-15)
    # Half-way through the cosine the rate is half the peak.
    assert pf.unit_rate(320 + 3040, 6400) == pytest.approx(0.5)


def test_tail_mean_rate_is_the_mean_of_the_schedule_over_the_last_fifth():
    schedule = unit_schedule(TrainConfig(steps=1600))
    brute = np.mean([float(schedule(s)) for s in range(1280, 1600)])
    assert pf.tail_mean_rate(1600) == pytest.approx(brute, abs=1e-6)
    # Integral of 0.5 (1 + cos(pi u)) over u in [a, 1], divided by the length: a closed form check.
    a = (1280 - 80) / (1600 - 80)
    closed = 0.5 * (1 - a - math.sin(math.pi * a) / math.pi) / (1 - a)
    assert pf.tail_mean_rate(1600) == pytest.approx(closed, rel=5e-3)


def _runs(values: dict[str, list[float]], seeds=(100, 101, 102)):
    return [
        {"arm": arm, "seed": s, "phase": "reported", "test": {"AP": v}}
        for arm, vs in values.items()
        for s, v in zip(seeds, vs, strict=True)
    ]


def test_paired_differences_and_positive_count():
    runs = _runs({"ciou_dfl": [0.5, 0.6, 0.7], "ciou": [0.4, 0.65, 0.69]})
    runs.append({"arm": "ciou", "seed": 103, "phase": "reported", "test": {"AP": 0.1}})  # unpaired
    runs.append({"arm": "ciou_dfl", "seed": 100, "phase": "pilot", "test": {"AP": 9.0}})  # not reported
    d = pf.paired(runs, "ciou_dfl-ciou")
    np.testing.assert_allclose(d, [0.1, -0.05, 0.01], atol=1e-15)
    assert int((d > 0).sum()) == 2
    np.testing.assert_allclose(pf.paired(runs, "ciou_dfl-ciou", [102, 100]), [0.1, 0.01], atol=1e-15)


def test_arm_gain_is_the_difference_of_means_on_the_seeds():
    long = _runs({"ciou": [0.6, 0.7, 0.9]})
    short = _runs({"ciou": [0.5, 0.5, 0.0]})
    assert pf.arm_gain(long, short, "ciou", [100, 101]) == pytest.approx(0.15)
    assert pf.arm_gain(long, short, "ciou", [100, 101, 102]) == pytest.approx((2.2 - 1.0) / 3)


def test_final_over_peak_counts_nan_as_zero_and_at_step():
    curve = [{"step": 50, "val_AP": 0.2}, {"step": 100, "val_AP": 0.5}, {"step": 150, "val_AP": math.nan}]
    assert pf.final_over_peak(curve) == 0.0
    assert pf.final_over_peak(curve[:2]) == 1.0
    assert pf.at_step(curve, 100)["val_AP"] == 0.5
    with pytest.raises(KeyError, match="step 75"):
        pf.at_step(curve, 75)
    assert pf.half_width({"lo": -0.25, "hi": 0.75}) == 0.5


def _normalise(x):
    return json.loads(json.dumps(x))


@pytest.mark.skipif(not (RESULTS / "page_figures.json").exists(), reason="no committed figures")
def test_committed_page_figures_are_what_the_code_computes_from_the_committed_files():
    committed = json.loads((RESULTS / "page_figures.json").read_text())
    fresh = _normalise(pf.figures(RESULTS))
    assert committed.keys() == fresh.keys()
    for key in committed:  # the same floats: JSON round-trips them exactly
        assert committed[key] == fresh[key], key
    # The page includes the table, so it must be the table of these figures too.
    assert (RESULTS / "page_figures.md").read_text() == pf.markdown(fresh)


def test_figures_that_the_page_states_in_words():
    # The page's wording rests on these figures; if a record changed, the wording would have to.
    fig = {k: v["value"] for k, v in pf.figures(RESULTS).items()}
    assert fig["positive_seeds_H1_1600"] == [19, 32]
    assert fig["positive_seeds_H2_1600"] == fig["positive_seeds_H3_1600"] == [32, 32]
    collapse = fig["collapse_rule_stride8"]
    assert list(collapse["collapsed"]) == ["ciou seed 107 at 6400 (amendment 4)"]
    assert list(collapse["runs"].values()) == [160, 32, 32, 16]
    assert fig["pilot_collapsed_by_lr"]["0.02"][0] == 7
    assert all(v[0] == 0 for lr, v in fig["pilot_collapsed_by_lr"].items() if lr != "0.02")
    assert fig["crowns_record_commits"] == {"79cd04a": 8, "cf69e4e": 24}
    ratios = fig["stride4_reached_over_expected"].values()  # "1.4-3.6 times wider"
    assert round(min(ratios), 1) == 1.4 and round(max(ratios), 1) == 3.6
    assert round(fig["crowns_tail_mean_rate"], 2) == 0.04  # "about 4 % of the peak rate"
    gains = [v for arm, v in fig["a4_test_gain_3200_to_6400"].items() if arm != "ciou"]
    assert round(min(gains), 3) == 0.013 and round(max(gains), 3) == 0.021  # "0.013-0.021"
    failed = fig["pilot_lr0.02_failed"]  # "10 of the 20 ... 0.021 or below (the other 10 at 0.27 or more)"
    assert failed["runs"] == 20 and failed["final_val_AP_below_0.1"] == 10
    assert failed["their_highest_final_val_AP"] <= 0.021 and failed["the_others_lowest_final_val_AP"] >= 0.27
    rate = fig["rate_at_step_1950"]  # "about 83 % ... about 36 %"
    assert round(rate["6400"], 2) == 0.83 and round(rate["3200"], 2) == 0.36
    assert round(fig["a4_H3_without_107"]["shrink_fraction"], 1) == 0.4  # "shrinks by about 40 %"


def test_amendment5_figures_wait_for_its_analysis(tmp_path):
    # Nothing may read amendment 5's records before its pre-registered analysis has run once.
    assert pf.amendment5_figures(tmp_path) == {}


def test_collapse_point_finds_the_fall_after_the_best():
    curve = [
        {"step": 50, "val_AP": 0.1, "train": {"loss": 2.0}},  # early, below half: not the fall
        {"step": 100, "val_AP": 0.5, "train": {"loss": 0.5}},
        {"step": 150, "val_AP": 0.4, "train": {"loss": 0.4}},
        {"step": 200, "val_AP": float("nan"), "train": {"loss": 9.0}},
        {"step": 250, "val_AP": 0.0, "train": {"loss": 0.0}},
    ]
    got = pf.collapse_point(curve)
    assert got["best_step"] == 100 and got["best_val_AP"] == 0.5
    assert got["fell_at_step"] == 200 and got["val_AP_before_and_at"] == [0.4, 0.0]
    assert got["train_loss_before_and_at"] == [0.4, 9.0]
    assert got["final_val_AP"] == 0.0 and got["final_train_loss"] == 0.0


def test_amendment5_figures_the_page_states_in_words():
    fig = {k: v["value"] for k, v in pf.figures(RESULTS).items()}
    fell = fig["a5_collapsed_runs"]  # "five of the eight ciou runs and one ciou_dist_l1 run"
    assert sorted(fell) == [f"ciou seed {s}" for s in (100, 101, 103, 104, 106)] + ["ciou_dist_l1 seed 106"]
    steps = [v["fell_at_step"] for v in fell.values()]
    assert min(steps) == 4250 and max(steps) == 6150  # "between steps 4250 and 6150"
    assert all(v["final_val_AP"] == 0 and v["final_train_loss"] == 0 for v in fell.values())
    assert round(fig["a5_collapse_rule_12800"]["lowest_final_over_peak_of_the_rest"], 2) == 0.99
    assert fig["a5_positive_seeds_12800"] == {"H1": [1, 8], "H2": [8, 8], "H3": [8, 8]}
    assert fig["a5_record_commits"] == {"3466fe3": 15, "41ab42f": 12, "49885c2": 5}


def test_deepest_dip_sees_a_fall_the_curve_recovers_from():
    curve = [{"step": k * 50, "val_AP": v} for k, v in enumerate([0.1, 0.5, 0.05, float("nan"), 0.5])]
    got = pf.deepest_dip(curve)
    assert got["fraction_of_best_so_far"] == 0.0 and got["step"] == 150  # NaN counts as 0
    assert got["final_over_peak"] == 1.0  # recovered: the collapse rule does not see it


def test_amendment5_falls_and_half_widths_the_page_states():
    fig = {k: v["value"] for k, v in pf.figures(RESULTS).items()}
    falls = fig["a5_falls_below_half"]  # "seven of the eight ciou seeds ... two recovered"
    assert sorted(k for k in falls if k.startswith("ciou seed")) == [
        f"ciou seed {s}" for s in (100, 101, 103, 104, 105, 106, 107)
    ]
    assert [k for k, v in falls.items() if v["final_over_peak"] >= 0.5] == ["ciou seed 105", "ciou seed 107"]
    dips = fig["a5_deepest_dip_per_arm"]  # "never below 0.77 of their best so far"
    assert 0.77 <= min(dips["ciou_l1"], dips["ciou_dfl"]) < 0.78
    hw = fig["a5_half_widths_12800"]  # item 10: H2 met, H1 and H3 not (the collapses)
    assert hw["H2"]["reached"] <= hw["H2"]["expected"]
    assert hw["H1"]["reached"] > 0.01 and hw["H3"]["reached"] > 0.01
