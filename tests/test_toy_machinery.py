"""The toy study's machinery: a vmapped seed equals the seed alone; a cut-off study resumes to
the same results; both crossing definitions; configs; the committed tables recompute."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np
import pytest

from experiments.toy_regression import configs, metrics, report, study
from experiments.toy_regression import task as toy_task
from experiments.toy_regression import train as toy_train

ROOT = pathlib.Path(__file__).resolve().parents[1]


# l1_std stands for the scalar heads (raw L1 shares its code path), dfl for the distribution heads.
@pytest.mark.parametrize("loss", ["l1_std", "dfl"])
def test_a_vmapped_seed_equals_the_same_seed_trained_alone(loss):
    task = toy_task.TaskConfig()
    config = toy_train.TrainConfig(hidden=32, steps=30, batch_size=64, warmup_steps=5)
    val = toy_task.make_batch(jax.random.key(7), 128, task)
    test = toy_task.make_batch(jax.random.key(8), 128, task)
    kwargs = dict(
        task=task, train_config=config, learning_rate=1e-2, eval_steps=[0, 10, 20, 30], eval_data=val,
        test_inputs=test[0], test_targets=test[1],
    )  # fmt: skip
    together = toy_train.train(loss, [3, 0, 1], **kwargs)
    assert together.curves[0, -1] < 0.8 * together.curves[0, 0]  # it learns
    for i, seed in enumerate([3, 0, 1]):
        alone = toy_train.train(loss, [seed], **kwargs)
        np.testing.assert_allclose(together.curves[i], alone.curves[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(together.test_curves[i], alone.test_curves[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            together.test_predictions[i], alone.test_predictions[0], rtol=1e-5, atol=1e-5
        )
        # Parameters and optimiser state (Adam's moments and step count) alike.
        for a, b in zip(jax.tree.leaves(together.state), jax.tree.leaves(alone.state), strict=True):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0], rtol=1e-5, atol=1e-6)
    # Seeds differ: their initialisations and data streams are their own.
    assert not np.allclose(together.curves[0], together.curves[1])


def _strip(x):
    """Everything but wall-clock times (and what is derived from them)."""
    if isinstance(x, dict):
        return {
            k: _strip(v)
            for k, v in x.items()
            if not any(word in k for word in ("seconds", "ms_per_step", "timing"))
        }
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _results(config, ran) -> dict:
    results = {
        "config": {
            **dataclasses.asdict(config),
            "seeds": study.seeds(config),
            "thresholds": ran["thresholds"],
        },
        **{k: ran[k] for k in ("noise_floor", "timing", "selected_lrs", "runs")},
    }
    results["summary"] = report.summarise(results)
    return json.loads(json.dumps(results))  # as written to results.json


def test_a_restarted_study_skips_finished_runs_and_gives_the_same_results(tmp_path, monkeypatch):
    # Two arms; the grid (3e-3, 1e-2) is extended while a choice sits on an edge, up to 3e-2.
    config = configs.override(configs.get("smoke"), ["extend_lr_grid=true", "lr_range=1e-3,3e-2"])
    config = dataclasses.replace(config, timing_rounds=1)
    whole_log: list[str] = []
    whole = study.run_study(config, tmp_path / "whole", log=whole_log.append)
    assert len(whole_log) >= 4

    real = study.train_and_record
    calls = {"n": 0}

    def cut(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the session ends during the third (arm, lr) run
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(study, "train_and_record", cut)
    with pytest.raises(KeyboardInterrupt):
        study.run_study(config, tmp_path / "cut", log=lambda _: None)
    monkeypatch.setattr(study, "train_and_record", real)
    assert not (tmp_path / "cut" / "records" / "timing.json").exists()
    resumed_log: list[str] = []
    resumed = study.run_study(config, tmp_path / "cut", log=resumed_log.append)
    assert len(resumed_log) == len(whole_log) - 2  # only what had not finished
    assert _strip(_results(config, resumed)) == _strip(_results(config, whole))
    # A finished study restarted trains nothing.
    again: list[str] = []
    study.run_study(config, tmp_path / "cut", log=again.append)
    assert again == []
    # Records of other settings are refused.
    with pytest.raises(ValueError, match="other settings"):
        study.run_study(configs.override(config, ["seeds=3"]), tmp_path / "cut")


def test_first_and_sustained_crossings():
    steps = [0, 10, 20, 30, 40, 50]
    curve = [1.0, 0.09, 0.12, 0.08, 0.11, 0.07]
    assert metrics.first_crossing(steps, curve, 0.1) == 10
    assert metrics.sustained_crossing(steps, curve, 0.1) == 50
    assert metrics.sustained_crossing(steps, curve, 0.115) == 30
    assert metrics.sustained_crossing(steps, curve, 0.12) == 10  # at or below: 0.12 counts
    assert metrics.sustained_crossing(steps, curve, 0.05) is None  # ends above
    assert metrics.sustained_crossing(steps, [0.01] * 6, 0.05) == 0
    out = metrics.crossings(steps, curve, {"0.1": 0.1, "0.2": 0.2})
    assert out == {"first": {"0.1": 10, "0.2": 10}, "sustained": {"0.1": 50, "0.2": 10}}
    rng = np.random.default_rng(0)
    for _ in range(50):
        noisy = np.exp(-np.linspace(0, 3, 30)) + 0.05 * rng.random(30)
        first = metrics.first_crossing(range(30), noisy, 0.2)
        sustained = metrics.sustained_crossing(range(30), noisy, 0.2)
        assert first is None or sustained is None or sustained >= first


def test_configs_are_variants_of_the_default_and_override():
    default = configs.get("default")
    assert configs.get("full") == default
    quick = configs.get("quick")
    assert quick.train.steps == 2000 and quick.train.hidden == default.train.hidden
    assert configs.get("accelerator").train.batch_size == 4096
    assert "l1_std" in default.losses and default.reference in default.losses
    for a, b in default.comparisons:
        assert a in default.losses and b in default.losses
    changed = configs.override(
        default, ["seeds=2", "train.steps=40", "lrs=3e-3,1e-2", "losses=l1,dfl", "extend_lr_grid=false"]
    )
    assert changed.seeds == 2 and changed.train.steps == 40 and changed.lrs == (3e-3, 1e-2)
    assert changed.losses == ("l1", "dfl") and changed.extend_lr_grid is False
    assert changed.task == default.task
    with pytest.raises(ValueError, match="no setting"):
        configs.override(default, ["seed=2"])
    with pytest.raises(ValueError, match="group"):
        configs.override(default, ["train=1"])


def test_summary_ratios_and_pairs_on_hand_made_runs():
    # Two arms, three seeds, curves that cross 0.1 at known steps.
    steps = [0, 10, 20, 40, 80, 160]

    def run(loss, seed, curve):
        return {
            "loss": loss, "seed": seed, "lr": 0.01, "final_mae": curve[-1], "selected_auc": True,
            "selected_final": True, "test_curve": [[s, m] for s, m in zip(steps, curve, strict=True)],
        }  # fmt: skip

    fast = [
        [1.0, 0.09, 0.2, 0.09, 0.08, 0.07],
        [1.0, 0.5, 0.09, 0.08, 0.08, 0.07],
        [1, 0.09, 0.2, 0.2, 0.09, 0.06],
    ]
    slow = [
        [1.0, 0.5, 0.5, 0.09, 0.08, 0.08],
        [1.0, 0.5, 0.5, 0.5, 0.09, 0.08],
        [1, 0.5, 0.5, 0.09, 0.2, 0.09],
    ]
    runs = [run("dfl", s, c) for s, c in enumerate(fast)] + [run("l1", s, c) for s, c in enumerate(slow)]
    results = {
        "config": {"losses": ["l1", "dfl"], "thresholds": {"0.1": 0.1}, "reference": "dfl"},
        "runs": runs,
        "timing": {"l1": {"median_s_per_step": 1e-3}, "dfl": {"median_s_per_step": 2e-3}},
    }
    summary = report.summarise(results)
    rows = summary["rows"]
    assert rows["dfl"]["auc"]["steps"]["first"]["0.1"]["per_seed"] == [10, 20, 10]
    assert rows["dfl"]["auc"]["steps"]["sustained"]["0.1"]["per_seed"] == [40, 20, 80]
    assert rows["l1"]["auc"]["steps"]["first"]["0.1"]["per_seed"] == [40, 80, 40]
    assert rows["l1"]["auc"]["steps"]["sustained"]["0.1"]["per_seed"] == [40, 80, 160]
    assert rows["l1"]["auc"]["steps"]["sustained"]["0.1"]["seconds_median"] == pytest.approx(0.08)
    entry = summary["pairs"]["l1 - dfl"]
    assert entry["ratio"]["first"]["0.1"]["median_ratio"] == 4.0
    assert entry["ratio"]["sustained"]["0.1"]["median_ratio"] == 2.0
    assert entry["ratio"]["sustained"]["0.1"]["geometric_mean"] == pytest.approx((1 * 4 * 2) ** (1 / 3))
    assert entry["steps"]["first"]["0.1"]["mean"] == pytest.approx((30 + 60 + 30) / 3)
    assert set(summary["holm"]["results"]) <= {
        "l1 - dfl: final MAE (lr by auc)",
        "l1 - dfl: final MAE (lr by final)",
        "l1 - dfl: first steps to 0.1, ratio",
        "l1 - dfl: sustained steps to 0.1, ratio",
    }
    assert "| l1 - dfl |" in report.tables(
        {**results, "noise_floor": {"test": {"median": 0.05, "mean": 0.05, "mode": 0.05}}}, summary
    )


def test_the_committed_full_run_recomputes_to_its_tables():
    """The committed results' per-seed test curves give the tables it reports (first crossings),
    with the shared statistics module in place of the toy's own t-interval."""
    path = ROOT / "results" / "toy_regression_full" / "results.json"
    saved = json.loads(path.read_text())
    summary = report.summarise(saved)
    old = saved["summary"]
    for loss in saved["config"]["losses"]:
        for name in saved["config"]["thresholds"]:
            if "steps_to_target" in old["rows"][loss]["auc"]:  # the results files before the crossings
                before = old["rows"][loss]["auc"]["steps_to_target"][name]
            else:
                before = old["rows"][loss]["auc"]["steps"]["first"][name]
            assert summary["rows"][loss]["auc"]["steps"]["first"][name]["per_seed"] == before["per_seed"]
        assert summary["rows"][loss]["auc"]["final_mae"] == old["rows"][loss]["auc"]["final_mae"]
    pairs = old.get("paired_vs_dfl")
    if pairs is not None:  # the old layout: intervals from SciPy's t quantile
        for loss, entry in pairs.items():
            new = summary["pairs"][f"{loss} - dfl"]
            for crit in ("auc", "final"):
                p = entry[f"final_mae_{crit}_lr"]
                q = new["final_mae"][crit]
                assert (q["mean"], q["lo"], q["hi"]) == pytest.approx(
                    (p["mean"], p["low"], p["high"]), abs=1e-12
                )
            for name, p in entry["steps_to_target"].items():
                q = new["steps"]["first"][name]
                assert (p is None) == (q is None)
                if p is not None:
                    assert (q["mean"], q["lo"], q["hi"]) == pytest.approx(
                        (p["mean"], p["low"], p["high"]), abs=1e-9
                    )
