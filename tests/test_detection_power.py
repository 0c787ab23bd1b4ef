"""The detection test's power rule and verdicts (experiments/detection_study/power.py)."""

import doctest
import json
import math

import numpy as np
import pytest

from experiments.common import stats
from experiments.detection_study import power


def test_doctests():
    assert doctest.testmod(power).failed == 0


def test_paired_sd_closed_form():
    # Differences 1 and 3: sample SD sqrt(2); a seed only one arm has is ignored.
    assert power.paired_sd({0: 2.0, 1: 5.0, 7: 9.0}, {0: 1.0, 1: 2.0}) == pytest.approx(math.sqrt(2))
    assert math.isnan(power.paired_sd({0: 1.0}, {0: 0.0}))


def test_planned_seeds_is_the_smallest_n_meeting_the_target():
    sds = {"a": 0.012, "b": 0.02}
    plan = power.planned_seeds(sds, target=0.01, min_seeds=16, max_seeds=64)
    n = plan["seeds"]
    assert not plan["capped"]
    assert all(stats.expected_half_width(sd, n) <= 0.01 for sd in sds.values())
    assert stats.expected_half_width(0.02, n - 1) > 0.01  # one fewer seed misses it
    assert plan["expected_half_width"]["b"] == pytest.approx(stats.expected_half_width(0.02, n))


def test_planned_seeds_floor_and_cap():
    assert power.planned_seeds({"a": 1e-4})["seeds"] == 16
    plan = power.planned_seeds({"a": 0.1}, max_seeds=32)
    assert plan["seeds"] == 32 and plan["capped"]
    assert plan["expected_half_width"]["a"] > 0.01


@pytest.mark.parametrize(
    ("lo", "hi", "p", "expected"),
    [
        (0.001, 0.03, 0.04, "support"),
        (0.001, 0.009, 0.04, "support, below margin"),
        (-0.02, -0.001, 0.2, "no useful gain"),  # below 0, but Holm does not reach 0.05
        (0.001, 0.03, 0.06, "cannot tell"),  # the interval excludes 0 but Holm does not reach 0.05
        (-0.02, -0.001, 0.01, "worse"),
        (-0.005, 0.0099, 0.5, "no useful gain"),
        (-0.005, 0.0101, 0.5, "cannot tell"),
    ],
)
def test_verdict(lo, hi, p, expected):
    assert power.verdict({"lo": lo, "hi": hi}, p) == expected


def test_verdict_probabilities_are_a_distribution_and_follow_the_effect():
    null = power.verdict_probabilities(0.01, 16, 0.0, simulations=300)
    big = power.verdict_probabilities(0.01, 16, 0.02, simulations=300)
    assert sum(null.values()) == pytest.approx(1.0) and sum(big.values()) == pytest.approx(1.0)
    # With no effect, "support" is rare (about alpha/2 at most); with 2 margins of effect, common.
    assert null.get("support", 0) < 0.06
    assert big.get("support", 0) > 0.9


def test_verdicts_read_the_primary_condition():
    tests = {"c": {"a-b": {"mean": 0.02, "lo": 0.01, "hi": 0.03, "p_sign_flip_holm": 0.01}}}
    out = power.verdicts({"tests": tests}, "c", ["a-b", "missing"])
    assert list(out) == ["a-b"] and out["a-b"]["verdict"] == "support"


def test_power_markdown_lists_every_contrast():
    sds = {"a-b": 0.012, "a-c": 0.03}
    plan = power.planned_seeds(sds)
    result = {
        "sd": sds,
        "detail": {k: {"pilot_sd": 0.01, "earlier_sd": v, "earlier_contrast": "x-y"} for k, v in sds.items()},
        **plan,
        "verdict_chances": {k: {"effect 0, holm x1": {"cannot tell": 1.0}} for k in sds},
    }
    text = power.power_markdown(result)
    assert f"**{plan['seeds']} seeds**" in text and "| a-b | 0.0120 |" in text and "| a-c |" in text


def test_secondary_tests_and_plateau_summary_read_the_right_fields():
    import itertools

    from experiments.detection_study import report

    rng = np.random.default_rng(3)
    seeds = [100, 101, 102, 103, 104, 105]
    runs = []
    for arm in ("ciou_dfl", "ciou", "l1"):
        for seed in seeds[: 5 if arm == "l1" else 6]:  # l1 lacks a seed: pairs use the common ones
            test = {"AP": rng.uniform(), "AP75": rng.uniform(), "AP_small": rng.uniform()}
            metrics = {
                "val_auc": rng.uniform(),
                "final_val_AP": rng.uniform(),
                "plateau_gain": rng.normal(0, 0.01),
            }
            runs.append({"arm": arm, "seed": seed, "test": test, "metrics": metrics})
    out = report.secondary_tests(runs, [("ciou_dfl", "ciou"), ("ciou_dfl", "l1"), ("ciou_dfl", "absent")])
    assert set(out) == {"ciou_dfl-ciou", "ciou_dfl-l1"}
    by = {(r["arm"], r["seed"]): r for r in runs}
    for (a, b), n in ((("ciou_dfl", "ciou"), 6), (("ciou_dfl", "l1"), 5)):
        for metric, field in (("AP75", "test"), ("AP_small", "test"), ("val_auc", "metrics")):
            d = np.array([by[a, s][field][metric] - by[b, s][field][metric] for s in seeds[:n]])
            row = out[f"{a}-{b}"][metric]
            assert row["n"] == n and row["mean"] == pytest.approx(d.mean(), abs=1e-12)
            # Brute force: the share of all 2^n sign assignments with |sum| at least the observed one.
            sums = [abs(np.dot(signs, d)) for signs in itertools.product((-1, 1), repeat=n)]
            expected = np.mean(np.array(sums) >= abs(d.sum()) - 1e-12)
            assert row["p_sign_flip"] == pytest.approx(expected, abs=1e-12)
    plateau = report.plateau_summary(runs)
    gains = [r["metrics"]["plateau_gain"] for r in runs if r["arm"] == "l1"]
    assert plateau["l1"]["seeds"] == 5
    assert plateau["l1"]["plateau_gain"] == pytest.approx(
        {"mean": np.mean(gains), "min": min(gains), "max": max(gains)}, abs=1e-12
    )
    text = "\n".join(report.secondary_markdown(out, plateau, 1600))
    assert "| ciou_dfl-l1 |" in text and "last 20 % of the 1600 steps" in text and "| l1 | 5 |" in text


def test_verdicts_markdown_states_the_half_width_reached_and_the_expected_one():
    row = {"n": 32, "mean": 0.012, "lo": 0.004, "hi": 0.02, "p_sign_flip": 0.004, "p_sign_flip_holm": 0.012}
    out = {"a-b": {**row, "verdict": "support"}, "a-c": {**row, "verdict": "support"}}
    text = power.verdicts_markdown(out, {"expected_half_width": {"a-b": 0.0116}})
    assert "| a-b | 32 | +0.0120 [+0.0040, +0.0200] | 0.0080 (0.0116) | 0.004 | 0.012 | **support** |" in text
    assert "| a-c | 32 | +0.0120 [+0.0040, +0.0200] | 0.0080 | 0.004 |" in text


def test_long_schedule_compares_the_contrasts_on_the_seeds_every_arm_finished():
    from experiments.detection_study import long_schedule

    rng = np.random.default_rng(5)

    def runs(seeds_of):
        out = []
        for arm in long_schedule.ARMS:
            for seed in seeds_of(arm):
                metrics = {"final_val_AP": rng.uniform(), "plateau_gain": rng.uniform(), "val_auc": 0.0}
                out.append({"arm": arm, "seed": seed, "test": {"AP": rng.uniform()}, "metrics": metrics})
        return out

    short = runs(lambda arm: [100, 101, 102, 103])
    long = runs(lambda arm: [100, 101, 102] + ([103] if arm != "ciou" else []))  # ciou lacks seed 103
    out = long_schedule.compare(short, long)
    assert out["seeds"] == [100, 101, 102]
    ap = {(k, r["arm"], r["seed"]): r["test"]["AP"] for k, rs in (("s", short), ("l", long)) for r in rs}
    for a, b in long_schedule.CONTRASTS:
        row = out["contrasts"][f"{a}-{b}"]
        ds = np.array([ap["s", a, s] - ap["s", b, s] for s in (100, 101, 102)])
        dl = np.array([ap["l", a, s] - ap["l", b, s] for s in (100, 101, 102)])
        assert row["short"]["mean"] == pytest.approx(ds.mean(), abs=1e-12)
        assert row["long"]["mean"] == pytest.approx(dl.mean(), abs=1e-12)
        assert row["change"]["mean"] == pytest.approx((dl - ds).mean(), abs=1e-12)
        assert row["change"]["p_sign_flip"] == pytest.approx(stats.sign_flip_p(dl - ds), abs=1e-12)
    gain = [ap["l", "ciou", s] - ap["s", "ciou", s] for s in (100, 101, 102)]
    assert out["arms"]["ciou"]["gain"]["mean"] == pytest.approx(np.mean(gain), abs=1e-12)
    assert out["plateau"]["ciou"]["seeds"] == 3
    text = long_schedule.markdown({"short_steps": 1600, "long_steps": 3200, "analysis": out})
    assert "| ciou_dfl-ciou |" in text and "on the 3 seeds every arm finished (100, 101, 102)" in text


def test_image_bootstrap_table_sets_both_intervals_side_by_side():
    from experiments.detection_study import image_bootstrap

    result = {
        "contrasts": ["a-b"],
        "intervals": {
            "seeds": 32,
            "blocks": 512,
            "replicates": 300,
            "diff": {"a-b": {"AP": {"mean": 0.0015, "lo": -0.0004, "hi": 0.0033}}},
        },
        "t_intervals": {"a-b": {"mean": 0.0015, "lo": 0.0001, "hi": 0.0029, "n": 32}},
    }
    text = image_bootstrap.markdown(result)
    assert "| a-b | +0.0015 | [-0.0004, +0.0033] | [+0.0001, +0.0029] |" in text
    assert "32 seeds and the 512 test images" in text


def test_reproduce_parses_keys_and_measures_differences():
    from experiments.detection_study import reproduce
    from experiments.detection_study.train import Run

    run = Run("ciou_dist_l1", 131, 0.01, 0.4)
    assert reproduce.parse_key(run.key) == run
    with pytest.raises(ValueError, match="not a run key"):
        reproduce.parse_key("ciou_seed1_lr0.0100_gain0")
    old = {"test": {"AP": 0.5, "AP75": 0.6}, "curve": [{"step": 50, "val_AP": 0.1, "seconds": 3.0}]}
    new = {"test": {"AP": 0.5, "AP75": 0.6005}, "curve": [{"step": 50, "val_AP": 0.1002, "seconds": 9.0}]}
    d = reproduce.differences(old, new)
    assert d["test_max_abs"] == pytest.approx(0.0005) and d["val_curve_max_abs"] == pytest.approx(0.0002)
    assert not d["identical"] and reproduce.differences(old, old)["identical"]


def test_without_seeds_recomputes_the_tests_on_the_seeds_left():
    rng = np.random.default_rng(7)
    runs = [
        {"arm": arm, "seed": seed, "test": {"AP": float(rng.uniform())}}
        for arm in ("a", "b", "c")
        for seed in range(100, 108)
    ]
    results = {"conditions": {"8": {"runs": runs}}}
    out = power.without_seeds(results, "synthetic_stride8", [("a", "b"), ("a", "c")], [101, 105])
    tests = out["tests"]["synthetic_stride8"]
    ap = {(r["arm"], r["seed"]): r["test"]["AP"] for r in runs}
    kept = [s for s in range(100, 108) if s not in (101, 105)]
    for ref in ("b", "c"):
        d = [ap["a", s] - ap[ref, s] for s in kept]
        assert tests[f"a-{ref}"]["n"] == 6 and tests[f"a-{ref}"]["mean"] == pytest.approx(
            np.mean(d), abs=1e-12
        )
        assert tests[f"a-{ref}"]["p_sign_flip"] == pytest.approx(stats.sign_flip_p(d), abs=1e-12)
    holm = stats.holm({k: v["p_sign_flip"] for k, v in tests.items()})
    assert all(tests[k]["p_sign_flip_holm"] == pytest.approx(holm[k]["p_holm"]) for k in tests)
    assert set(power.verdicts(out, "synthetic_stride8", ["a-b", "a-c"])) == {"a-b", "a-c"}


def test_the_crowns_power_statement_uses_the_earlier_crowns_seeds_at_the_budgets_count(tmp_path):
    # Before the crowns' pilot has run: the SD is the earlier study's crowns SD alone, n is 8.
    result = power.main(["--config", "detection_test_crowns", "--out", str(tmp_path)])
    runs = json.loads(power.EARLIER_REAL.read_text())["real"]["runs"]
    ap = {(r["arm"], r["seed"]): r["test"]["AP"] for r in runs}
    for name, (a, b) in power.EARLIER_NEAREST.items():
        d = np.array([ap[a, s] - ap[b, s] for s in range(5)], np.float64)
        assert result["sd"][name] == pytest.approx(d.std(ddof=1), rel=1e-12)
        assert math.isnan(result["detail"][name]["pilot_sd"])
    assert result["seeds"] == 8 and result["condition"] == "real"
    assert (tmp_path / "power_real.md").read_text().startswith("Crowns: **8 seeds**")


def test_secondary_reads_stride_4_and_the_crowns_but_not_the_primary(tmp_path):
    config = power.configs.get("detection_test")
    row = lambda mean: {"n": 16, "mean": mean, "lo": mean - 0.01, "hi": mean + 0.01, "p_sign_flip": 0.2}
    tests = {
        cond: {
            f"{a}-{b}": {**row(m), "p_sign_flip_holm": 0.4}
            for (a, b), m in zip(power.contrasts(config), ms, strict=True)
        }
        for cond, ms in {
            "synthetic_stride8": (0.1, 0.2, 0.3),
            "synthetic_stride4": (0.01, 0.02, 0.03),
        }.items()
    }
    (tmp_path / "results_synthetic.json").write_text(json.dumps({"synthetic": {"tests": tests}}))
    assert set(power.secondary(tmp_path, config)) == {"synthetic_stride4"}  # no crowns file yet
    name = "ciou_dfl-ciou"
    real = {
        "tests": {"real": {name: {**row(0.05), "n": 8, "p_sign_flip_holm": 0.03}}},
        "intervals": {"diff": {name: {"AP": {"mean": 0.05, "lo": -0.002, "hi": 0.09}}}},
    }
    (tmp_path / "results_real.json").write_text(json.dumps({"real": real}))
    (tmp_path / "power_real.json").write_text(json.dumps({"expected_half_width": {name: 0.007}}))
    rows = power.secondary(tmp_path, config)
    assert [r["mean"] for r in rows["synthetic_stride4"].values()] == [0.01, 0.02, 0.03]
    assert (
        rows["real"][name]["bootstrap"]["lo"] == -0.002 and rows["real"][name]["expected_half_width"] == 0.007
    )
    text = power.secondary_markdown(rows)
    assert "| real | ciou_dfl-ciou | 8 | +0.0500 [+0.0400, +0.0600] | 0.0100 (0.0070) | 0.2 | 0.03 |" in text
    assert "[-0.0020, +0.0900]" in text and text.count("(test set fixed)") == 3
    power.main(["--secondary", "--out", str(tmp_path)])  # one file per condition as well
    assert (tmp_path / "secondary.md").read_text() == text
    own = (tmp_path / "secondary_real.md").read_text()
    assert "| real | ciou_dfl-ciou |" in own and "synthetic_stride4" not in own
    assert (tmp_path / "secondary_synthetic_stride4.md").read_text().count("| synthetic_stride4 |") == 3


def test_secondary_sensitivity_recomputes_stride_4_without_the_seeds_given(tmp_path):
    config = power.configs.get("detection_test")
    rng = np.random.default_rng(0)
    arms = ["ciou", "ciou_l1", "ciou_dist_l1", "ciou_dfl"]
    runs = [
        {"arm": a, "seed": s, "test": {"AP": float(rng.uniform(0.5, 0.6))}} for a in arms for s in range(6)
    ]
    per_arm = {a: {r["seed"]: r["test"] for r in runs if r["arm"] == a} for a in arms}
    tests = {
        c: power.paired_tests(per_arm, power.contrasts(config))
        for c in ("synthetic_stride8", "synthetic_stride4")
    }
    results = {"synthetic": {"tests": tests, "conditions": {"4": {"runs": runs}, "8": {"runs": runs}}}}
    (tmp_path / "results_synthetic.json").write_text(json.dumps(results))
    power.main(["--secondary", "--exclude-seeds", "3", "--out", str(tmp_path)])
    left = json.loads((tmp_path / "secondary_sensitivity.json").read_text())["tests"]
    assert list(left) == ["synthetic_stride4"]
    ap = {(r["arm"], r["seed"]): r["test"]["AP"] for r in runs}
    kept = [0, 1, 2, 4, 5]
    d = np.array([ap["ciou_dfl", s] - ap["ciou", s] for s in kept], np.float64)
    assert left["synthetic_stride4"]["ciou_dfl-ciou"]["n"] == 5
    assert left["synthetic_stride4"]["ciou_dfl-ciou"]["mean"] == pytest.approx(d.mean(), rel=1e-12)
    assert "seeds 3 left out" in (tmp_path / "secondary_sensitivity.md").read_text()
    # The crowns: their own file, from results_real.json's runs; the synthetic file stays as it was.
    real = {"tests": {"real": tests["synthetic_stride4"]}, "intervals": {"diff": {}}, "runs": runs}
    (tmp_path / "results_real.json").write_text(json.dumps({"real": real}))
    before = (tmp_path / "secondary_sensitivity.json").read_text()
    power.main(
        ["--secondary", "--exclude-seeds", "0", "1", "--sensitivity-of", "real", "--out", str(tmp_path)]
    )
    assert (tmp_path / "secondary_sensitivity.json").read_text() == before
    crowns = json.loads((tmp_path / "secondary_sensitivity_real.json").read_text())["tests"]
    assert list(crowns) == ["real"]
    kept = [2, 3, 4, 5]
    d = np.array([ap["ciou_dfl", s] - ap["ciou_l1", s] for s in kept], np.float64)
    assert crowns["real"]["ciou_dfl-ciou_l1"]["n"] == 4
    assert crowns["real"]["ciou_dfl-ciou_l1"]["mean"] == pytest.approx(d.mean(), rel=1e-12)
