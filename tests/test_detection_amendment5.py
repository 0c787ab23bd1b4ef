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


def _run(arm, seed, ap, final_val, collapse=False):
    curve = [0.2, 0.5, 0.001] if collapse else [0.2, final_val - 0.01, final_val]
    return {"arm": arm, "seed": seed, "test": {"AP": ap}, "curve": _curve(curve)}


def _schedules(seeds, ap, val, collapse=()):
    """Records at the four schedules; ``ap(steps, arm, s)`` and ``val(steps, arm, s)`` give each
    run's test AP and final validation AP, ``collapse`` lists ``(steps, arm, seed)`` collapsed runs."""
    return {
        k: [
            _run(arm, s, ap(k, arm, s), val(k, arm, s), (k, arm, s) in collapse)
            for s in seeds
            for arm in a5.ARMS
        ]
        for k in (1600, 3200, 6400, 12800)
    }


OFFSET = {"ciou": 0.0, "ciou_l1": 0.002, "ciou_dist_l1": 0.01, "ciou_dfl": 0.01}
LATE = [-0.002, 0.001, -0.001, 0.0015, -0.002, 0.001, -0.001, 0.0005]  # ciou_dfl at 12800 steps, mean < 0


def _ap(k, arm, s):
    # ciou_dfl - ciou_dist_l1: +0.001 or -0.001 by seed at 1600 steps (mean +0.00025 over 100-107),
    # a sign-flipping near-zero contrast at 12800; the others a steady lead.
    wobble = 0.001 * (1 if s % 2 else -1) if arm == "ciou_dfl" else 0.0
    late = LATE[s - 100] if (arm == "ciou_dfl" and k == 12800) else 0.0
    first = 0.0005 if (arm == "ciou_dfl" and k == 1600 and s == 100) else 0.0
    return 0.5 + 0.01 * (k / 12800) + OFFSET[arm] + wobble + late + first + 0.0003 * (s % 3)


def test_analyse_against_numpy_and_the_two_holds_rules():
    seeds = list(range(100, 108))
    runs = _schedules(seeds, _ap, lambda k, arm, s: 0.55 + 0.0002 * (s % 4) * (k == 12800) + 1e-6 * k)
    out = a5.analyse(runs, {"ciou_dfl-ciou_dist_l1": "support, below margin"})
    assert out["seeds"] == seeds and out["tested"]
    h1 = out["primary"]["ciou_dfl-ciou_dist_l1"]
    d = np.array([_ap(12800, "ciou_dfl", s) - _ap(12800, "ciou_dist_l1", s) for s in seeds], np.float64)
    assert h1["mean"] == pytest.approx(d.mean(), abs=1e-12)
    assert h1["hi"] == pytest.approx(d.mean() + T975_DF7 * d.std(ddof=1) / np.sqrt(8), rel=1e-9)
    # Gains 6400 -> 12800: 0.0064 + 0.0002 * (s % 4): every arm's interval is above 0.005: not levelled.
    g = np.array([0.0064 + 0.0002 * (s % 4) for s in seeds])
    assert out["levelled"]["ciou"]["mean"] == pytest.approx(g.mean(), rel=1e-9)
    assert not out["all_levelled"] and not any(out["at_plateau"].values())
    # H1's mean is positive at 1600 steps, negative at 12800, its change bounded: amendment 4's rule
    # says "cannot tell"; the variant (1600-step interval includes 0) says "holds".
    base = np.array([_ap(1600, "ciou_dfl", s) - _ap(1600, "ciou_dist_l1", s) for s in seeds])
    assert base.mean() > 0 > h1["mean"]
    assert out["holds"]["ciou_dfl-ciou_dist_l1"]["label"] == "cannot tell"
    assert out["holds_variant"]["ciou_dfl-ciou_dist_l1"]["label"] == "holds"
    # A steady lead keeps its sign: both rules say holds.
    assert out["holds"]["ciou_dfl-ciou"]["label"] == out["holds_variant"]["ciou_dfl-ciou"]["label"] == "holds"
    change = out["secondary"]["ciou_dfl-ciou"]["change_6400_to_12800"]
    assert change["mean"] == pytest.approx(np.mean(LATE), abs=1e-12)
    assert (
        out["all_schedules"]["labels_differ"]["ciou_dfl-ciou_dist_l1"]["at_1600"] == "support, below margin"
    )
    assert not out["all_schedules"]["holds_at_all"]
    assert set(out["arms"]["ciou"]) == {1600, 3200, 6400, 12800}
    text = a5.markdown({"analysis": out, "complete": True, "remaining": 0, "commit": "x"})
    assert "(pre-registered)" in text and "at 12800 steps" in text and "| holds |" in text


def test_collapse_tally_and_the_planned_sensitivity():
    seeds = list(range(100, 108))
    runs = _schedules(
        seeds, _ap, lambda k, arm, s: 0.55 + 1e-6 * k, collapse={(6400, "ciou", 107), (12800, "ciou_l1", 103)}
    )
    out = a5.analyse(runs)
    assert out["collapsed"]["ciou"] == {1600: [], 3200: [], 6400: [107], 12800: []}
    assert out["collapsed"]["ciou_l1"][12800] == [103] and out["collapsed"]["ciou_dfl"][12800] == []
    sens = out["collapse_sensitivity"]
    assert sens["contrasts"]["ciou_dfl-ciou"]["seeds_left_out"] == [107]
    assert sens["contrasts"]["ciou_dfl-ciou_l1"]["seeds_left_out"] == [103]
    assert sens["contrasts"]["ciou_dfl-ciou_dist_l1"]["seeds_left_out"] == []
    kept = [s for s in seeds if s != 107]
    d = np.array([_ap(12800, "ciou_dfl", s) - _ap(12800, "ciou", s) for s in kept])
    assert sens["contrasts"]["ciou_dfl-ciou"]["mean"] == pytest.approx(d.mean(), abs=1e-12)
    assert sens["contrasts"]["ciou_dfl-ciou"]["n"] == 7
    # The collapsed 6400-step run makes ciou's gain to 12800 huge in the primary reading only.
    assert out["levelled"]["ciou"]["mean"] > 0.05 and sens["levelled"]["ciou"]["seeds_left_out"] == [107]
    assert sens["levelled"]["ciou"]["mean"] == pytest.approx(0.0064, rel=1e-6)
    assert "all_schedules" not in out


def test_below_seven_seeds_intervals_only_and_cut_off_files(tmp_path):
    runs = _schedules(list(range(100, 106)), _ap, lambda k, arm, s: 0.55)
    out = a5.analyse(runs)
    assert not out["tested"] and all("verdict" not in r for r in out["primary"].values())
    text = a5.markdown({"analysis": out, "complete": False, "remaining": 8, "commit": "x"})
    assert "intervals only" in text and "Cut off" in text and "(not tested)" in text
    assert a5.analysis_files(tmp_path, True)[1].name == "amendment5.md"
    assert a5.analysis_files(tmp_path, False)[2].name == "curves_amendment5_cutoff.png"


def test_holds_variant_keeps_the_sign_rule_where_the_base_excludes_zero():
    change = [0.001, 0.002, 0.0015, 0.001]
    # base clearly positive, long mean negative: the sign rule applies and fails
    assert a5.holds_variant(change, [0.01, 0.011, 0.012, 0.01], -0.001)["label"] != "holds"
    # base straddles 0: only the band decides
    assert a5.holds_variant(change, [0.01, -0.011, 0.002, -0.001], -0.001)["label"] == "holds"


def test_write_analysis_writes_the_tables_and_the_figure(tmp_path):
    import json

    (tmp_path / "verdicts.json").write_text(json.dumps({"ciou_dfl-ciou": {"verdict": "support"}}))
    runs = _schedules(list(range(100, 108)), _ap, lambda k, arm, s: 0.55 + 1e-6 * k)
    result = a5.write_analysis(tmp_path, runs, 0, "abc")
    assert result["complete"] and result["analysis"]["all_schedules"]["labels_differ"]
    saved = json.loads((tmp_path / "amendment5.json").read_text())
    assert saved["analysis"]["seeds"] == list(range(100, 108))
    assert (tmp_path / "amendment5.md").read_text() == a5.markdown(result)
    assert (tmp_path / "curves_amendment5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a5.write_analysis(tmp_path, runs, 3, "abc")  # a cut-off never overwrites the complete analysis
    assert (tmp_path / "amendment5_cutoff.md").exists() and saved == json.loads(
        (tmp_path / "amendment5.json").read_text()
    )


def test_exploratory_runs_and_their_paired_differences():
    chosen = {arm: {"lr": 0.01, "gain": 6.4 if arm == "ciou_l1" else 0.4} for arm in a5.ARMS}
    runs = a5.exploratory(chosen)
    assert [r.seed for r in runs] == list(range(100, 108))
    assert all(r.arm == "ciou_l1" and r.gain == 1.6 and r.lr == 0.01 for r in runs)
    seeds = list(range(100, 108))
    new = [_run("ciou_l1", s, 0.60 + 0.001 * (s % 3), 0.6) for s in seeds]
    shorter = [_run(arm, s, _ap(6400, arm, s), 0.6) for s in seeds for arm in a5.ARMS]
    out = a5.exploratory_analysis(new, shorter)
    d = np.array([0.60 + 0.001 * (s % 3) - _ap(6400, "ciou_l1", s) for s in seeds])
    r = out["ciou_l1 gain 1.6 - confirmatory gain"]
    assert r["mean"] == pytest.approx(d.mean(), abs=1e-12) and r["n"] == 8
    e = np.array([_ap(6400, "ciou_dfl", s) - 0.60 - 0.001 * (s % 3) for s in seeds])
    assert out["ciou_dfl - ciou_l1 gain 1.6"]["mean"] == pytest.approx(e.mean(), abs=1e-12)
    assert "exploratory" in a5.exploratory_markdown(out)
