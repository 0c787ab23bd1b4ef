"""Amendment 4's analysis rules (levelled off, holds or changes, the primary family) against float64
references written here, and its run order."""

import numpy as np
import pytest

from experiments.detection_study import amendment4 as a4

T975_DF2 = 4.302652729911275  # Student t, 97.5 % quantile, 2 degrees of freedom


def test_planned_order_is_seed_then_arm_then_short_before_long():
    chosen = {arm: {"lr": 0.01, "gain": 0.5} for arm in a4.ARMS}
    order = a4.planned(chosen)
    assert len(order) == len(a4.SEEDS) * len(a4.ARMS) * 2
    head = [(r.arm, r.seed, steps) for r, steps in order[:5]]
    assert head == [
        ("ciou", 100, 3200),
        ("ciou", 100, 6400),
        ("ciou_l1", 100, 3200),
        ("ciou_l1", 100, 6400),
        ("ciou_dist_l1", 100, 3200),
    ]
    assert [r.seed for r, _ in order] == sorted(r.seed for r, _ in order)


def test_levelled_uses_the_upper_end_of_the_t_interval():
    gains = np.array([0.001, 0.002, 0.003])
    hi = gains.mean() + T975_DF2 * gains.std(ddof=1) / np.sqrt(3)  # 0.00448
    r = a4.levelled(gains)
    assert r["hi"] == pytest.approx(hi, rel=1e-9) and r["levelled"]
    # A mean below the threshold is not enough: the interval's upper end decides.
    noisy = [0.0, 0.002, 0.007]
    assert np.mean(noisy) < a4.LEVEL and not a4.levelled(noisy)["levelled"]
    assert not a4.levelled([0.001])["levelled"]  # one seed: no interval, not shown levelled


@pytest.mark.parametrize(
    ("change", "base", "long", "label"),
    [
        ([0.001, -0.001, 0.002, 0.0], 0.015, 0.0155, "holds"),
        ([0.001, -0.001, 0.002, 0.0], 0.0003, -0.0002, "cannot tell"),  # small change, sign flipped
        ([0.02, 0.021, 0.019, 0.02], 0.01, 0.03, "changed"),
        ([-0.03, 0.03, -0.02, 0.025], 0.01, 0.011, "cannot tell"),  # wide, across 0
        # inside (-0.01, 0.01) though it excludes 0: "holds" is checked first, a small change holds
        ([0.004, 0.005, 0.006, 0.005], 0.01, 0.015, "holds"),
    ],
)
def test_holds_labels(change, base, long, label):
    r = a4.holds(change, base, long)
    d = np.asarray(change, np.float64)
    half = {4: 3.182446305284263}[len(d)] * d.std(ddof=1) / np.sqrt(len(d))
    assert r["lo"] == pytest.approx(d.mean() - half, rel=1e-9, abs=1e-12)
    assert r["label"] == label


def _records(seeds, ap, val, steps_name):
    return [
        {
            "arm": arm,
            "seed": s,
            "test": {"AP": ap[steps_name](arm, s)},
            "curve": [{"val_AP": val[steps_name](arm, s)}],
        }
        for arm in a4.ARMS
        for s in seeds
    ]


def _fixture(seeds):
    rng = np.random.default_rng(0)
    noise = {(arm, s, k): rng.normal(0, 0.003) for arm in a4.ARMS for s in range(200) for k in "bsl"}
    lead = {"ciou": 0.0, "ciou_l1": 0.001, "ciou_dist_l1": 0.012, "ciou_dfl": 0.015}
    ap = {
        "base": lambda arm, s: 0.55 + lead[arm] + noise[arm, s, "b"],
        "short": lambda arm, s: 0.58 + lead[arm] + noise[arm, s, "s"],
        "long": lambda arm, s: 0.60 + lead[arm] + noise[arm, s, "l"],
    }
    val = {
        "base": lambda arm, s: 0.5,
        "short": lambda arm, s: 0.52 + 0.001 * (s % 3),
        "long": lambda arm, s: 0.521 + 0.001 * (s % 3),  # gain 0.001 on every seed
    }
    return [_records(seeds, ap, val, k) for k in ("base", "short", "long")], ap


def test_analyse_primary_family_and_rules():
    seeds = list(range(100, 108))
    (base, short, long), ap = _fixture(seeds)
    out = a4.analyse(base, short, long[:-1])  # ciou_dfl seed 107 missing at 6400: seed 107 left out
    assert out["seeds"] == seeds[:-1] and out["tested"]
    kept = seeds[:-1]
    d = np.array([ap["long"]("ciou_dfl", s) - ap["long"]("ciou", s) for s in kept], np.float64)
    r = out["primary"]["ciou_dfl-ciou"]
    t975_df6 = 2.4469118511449692
    assert r["mean"] == pytest.approx(d.mean(), rel=1e-12) and r["n"] == 7
    assert r["hi"] == pytest.approx(d.mean() + t975_df6 * d.std(ddof=1) / np.sqrt(7), rel=1e-9)
    assert set(out["primary"]) == {"ciou_dfl-ciou_dist_l1", "ciou_dfl-ciou_l1", "ciou_dfl-ciou"}
    assert r["verdict"] == "support"  # +0.015 on every seed, far beyond noise
    assert r["p_sign_flip_holm"] == pytest.approx(min(1.0, 3 * 2 / 2**7))  # smallest p, first in Holm
    assert all(v["levelled"] for v in out["levelled"].values()) and out["all_levelled"]
    # The lead is the same at 1600 and 6400 steps: the contrast holds.
    assert out["holds"]["ciou_dfl-ciou"]["label"] == "holds"
    change = out["secondary"]["ciou_dfl-ciou"]["change_3200_to_6400"]
    e = np.array(
        [
            (ap["long"]("ciou_dfl", s) - ap["long"]("ciou", s))
            - (ap["short"]("ciou_dfl", s) - ap["short"]("ciou", s))
            for s in kept
        ]
    )
    assert change["mean"] == pytest.approx(e.mean(), rel=1e-9, abs=1e-12)
    assert "at the plateau" in a4.markdown({"analysis": out, "complete": True, "remaining": 0, "commit": "x"})


def test_analyse_below_seven_seeds_reports_intervals_only():
    (base, short, long), _ = _fixture(list(range(100, 106)))
    out = a4.analyse(base, short, long)
    assert not out["tested"] and all("verdict" not in r for r in out["primary"].values())
    text = a4.markdown({"analysis": out, "complete": False, "remaining": 8, "commit": "x"})
    assert "intervals only" in text and "Cut off" in text and "(not tested)" in text


def test_planned_is_the_whole_pre_registered_list():
    chosen = {arm: {"lr": 0.001 * (i + 1), "gain": 0.1 * i} for i, arm in enumerate(a4.ARMS)}
    got = [(r.arm, r.seed, r.lr, r.gain, steps) for r, steps in a4.planned(chosen)]
    want = [
        (arm, seed, chosen[arm]["lr"], chosen[arm]["gain"], steps)
        for seed in range(100, 108)
        for arm in ("ciou", "ciou_l1", "ciou_dist_l1", "ciou_dfl")
        for steps in (3200, 6400)
    ]
    assert got == want


def test_levelled_boundary_is_inclusive():
    # Two seeds with equal gains: the interval is the point itself.
    assert a4.levelled([0.005, 0.005])["levelled"]
    assert not a4.levelled([0.0051, 0.0051])["levelled"]


def test_holds_needs_the_same_sign_and_changed_can_straddle_the_band():
    change = [0.001, -0.001, 0.002, 0.0]
    assert a4.holds(change, 0.004, 0.005)["label"] == "holds"
    assert a4.holds(change, 0.004, -0.005)["label"] == "cannot tell"  # opposite signs
    # Excludes 0 but reaches beyond +0.01: changed, not holds.
    assert a4.holds([0.008, 0.012, 0.010, 0.014], 0.01, 0.021)["label"] == "changed"


def test_analyse_uses_same_seed_means_for_the_sign_and_zero_for_a_diverged_run():
    seeds = list(range(100, 108))
    (base, short, long), ap = _fixture(seeds)
    # ciou_dfl 0.001 behind ciou_dist_l1 at 1600 steps and 0.001 ahead at 6400, on every seed: a
    # change of 0.002, inside the band, but the sign flipped, so the contrast does not hold.
    ref = {(r["arm"], r["seed"], k): r for k, runs in (("b", base), ("l", long)) for r in runs}
    for s in seeds:
        ref["ciou_dfl", s, "b"]["test"]["AP"] = ref["ciou_dist_l1", s, "b"]["test"]["AP"] - 0.001
        ref["ciou_dfl", s, "l"]["test"]["AP"] = ref["ciou_dist_l1", s, "l"]["test"]["AP"] + 0.001
    out = a4.analyse(base, short, long)
    h = out["holds"]["ciou_dfl-ciou_dist_l1"]
    assert h["mean"] == pytest.approx(0.002) and -a4.HOLD < h["lo"] and h["hi"] < a4.HOLD
    assert out["primary"]["ciou_dfl-ciou_dist_l1"]["mean"] == pytest.approx(0.001)
    assert h["label"] == "changed"  # not "holds": the signs differ; the interval excludes 0
    # A NaN test AP counts as 0 (the study's rule), it is not dropped.
    long[0]["test"]["AP"] = float("nan")  # ciou, seed 100
    out = a4.analyse(base, short, long)
    d = [ref["ciou_dfl", s, "l"]["test"]["AP"] - (0.0 if s == 100 else ap["long"]("ciou", s)) for s in seeds]
    assert out["primary"]["ciou_dfl-ciou"]["n"] == 8
    assert out["primary"]["ciou_dfl-ciou"]["mean"] == pytest.approx(np.mean(d), rel=1e-12)


def test_not_levelled_says_at_6400_steps_and_both_schedules_needs_equal_labels():
    seeds = list(range(100, 108))
    (base, short, long), _ = _fixture(seeds)
    for r in long:
        if r["arm"] == "ciou":
            r["curve"][-1]["val_AP"] += 0.02  # still gaining 0.021 from 3200 to 6400 steps
    out = a4.analyse(base, short, long)
    assert not out["levelled"]["ciou"]["levelled"] and not out["all_levelled"]
    labels = {name: r["verdict"] for name, r in out["primary"].items()}
    same = a4.both(out, labels)
    assert same["labels_differ"] == {} and same["every_contrast_holds"] == all(
        h["label"] == "holds" for h in out["holds"].values()
    )
    other = a4.both(out, {**labels, "ciou_dfl-ciou": "cannot tell"})
    assert not other["holds_at_both"] and set(other["labels_differ"]) == {"ciou_dfl-ciou"}
    text = a4.markdown(
        {"analysis": out, "complete": True, "remaining": 0, "commit": "x", "both_schedules": other}
    )
    assert "at 6400 steps (not shown levelled off)" in text and "not shown" in text
    assert "Holds at both schedules (item 6): no." in text


def test_record_provenance_flags_mixed_and_dirty_records():
    runs = [
        {"provenance": {"commit": "a", "uncommitted_changes": False, "xla_flags": "", "cpus": 2}},
        {"provenance": {"commit": "a", "uncommitted_changes": False, "xla_flags": "", "cpus": 2}},
    ]
    p = a4.record_provenance(runs)
    assert not (p["mixed"] or p["dirty"] or p["xla_flags_set"]) and p["entries"][0]["runs"] == 2
    runs.append({"provenance": {"commit": "b", "uncommitted_changes": True, "xla_flags": "--x", "cpus": 2}})
    p = a4.record_provenance(runs)
    assert p["mixed"] and p["dirty"] and p["xla_flags_set"]


def test_cut_off_analyses_never_overwrite_the_pre_registered_files(tmp_path):
    assert a4.analysis_files(tmp_path, True)[1].name == "amendment4.md"
    assert a4.analysis_files(tmp_path, True)[2].name == "curves_amendment4.png"
    assert a4.analysis_files(tmp_path, False)[2].name == "curves_amendment4_cutoff.png"
    assert a4.analysis_files(tmp_path, False)[1].name == "amendment4_cutoff.md"


def _curve_records(seeds, steps, values):
    return [
        {"arm": arm, "seed": s, "curve": [{"step": k, "val_AP": values(arm, s, k)} for k in steps]}
        for arm in a4.ARMS
        for s in seeds
    ]


def test_curve_summary_is_mean_min_max_over_the_chosen_seeds():
    steps = [50, 100, 150]
    runs = _curve_records(range(100, 104), steps, lambda arm, s, k: 0.001 * k + 0.01 * (s - 100))
    runs[0]["curve"][1]["val_AP"] = float("nan")  # ciou seed 100 diverged at step 100: counted as 0
    out = a4.curve_summary(runs, [100, 101, 102])  # seed 103 left out
    ciou = np.array([[0.001 * k + 0.01 * (s - 100) for k in steps] for s in (100, 101, 102)])
    ciou[0, 1] = 0.0
    np.testing.assert_allclose(out["ciou"]["mean"], ciou.mean(0), rtol=1e-12)
    np.testing.assert_allclose(out["ciou"]["min"], ciou.min(0), rtol=1e-12)
    np.testing.assert_allclose(out["ciou"]["max"], ciou.max(0), rtol=1e-12)
    np.testing.assert_array_equal(out["ciou_dfl"]["step"], steps)
    with pytest.raises(ValueError, match="expected"):
        a4.curve_summary(runs, [100, 104])
    runs[5]["curve"][0]["step"] = 60
    with pytest.raises(ValueError, match="validation steps differ"):
        a4.curve_summary(runs, [100, 101])


def test_schedule_curves_writes_one_figure(tmp_path):
    from experiments.detection_study import plots

    runs = _curve_records(range(100, 102), [50, 100], lambda arm, s, k: 0.001 * k)
    summary = a4.curve_summary(runs, [100, 101])
    path = tmp_path / "curves.png"
    plots.schedule_curves({1600: summary, 3200: summary}, a4.ARMS, path, "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sensitivity_analyses_get_their_own_files(tmp_path):
    # an exploratory analysis without some seeds never overwrites the pre-registered files
    names = {p.name for p in a4.analysis_files(tmp_path, True, [107])}
    assert names == {
        "amendment4_without_107.json",
        "amendment4_without_107.md",
        "curves_amendment4_without_107.png",
    }
    assert a4.analysis_files(tmp_path, True, [107, 103])[1].name == "amendment4_without_103_107.md"
    with pytest.raises(SystemExit, match="analyse-only"):
        a4.main(["--out", str(tmp_path), "--exclude-seeds", "107"])


def test_sensitivity_markdown_says_exploratory_and_descriptive():
    # the same analysis with seeds left out must not read as the pre-registered one
    result = {
        "complete": True,
        "remaining": 0,
        "commit": "abc",
        "excluded_seeds": [107],
        "analysis": a4.analyse(*_fixture(list(range(100, 107)))[0]),
    }
    text = a4.markdown(result)
    assert "(pre-registered)" not in text
    assert "exploratory sensitivity, not pre-registered" in text and "descriptive" in text
    assert "(pre-registered)" in a4.markdown({**result, "excluded_seeds": []})
