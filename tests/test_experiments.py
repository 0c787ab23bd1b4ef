"""The experiment scripts end to end, at tiny sizes."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest


def _load(name: str):
    # Every experiment is a module of the experiments package, run as python -m experiments.<name>.
    return importlib.import_module(f"experiments.{name}")


def _toy():
    from experiments.toy_regression import main

    return main


SMOKE = ["--config", "smoke"]


def test_toy_regression_writes_results_and_is_reproducible(tmp_path):
    script = _toy()
    first = script.main([*SMOKE, "--out", str(tmp_path / "a")])
    # Same seeds, same numbers: rerun one loss and compare its runs.
    second = script.main([*SMOKE, "--set", "losses=dfl", "--out", str(tmp_path / "b")])

    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["device"]["platform"] == "cpu" and saved["device"]["device_count"] >= 1
    assert saved["config"]["seeds"] == [0, 1] and saved["config"]["name"] == "smoke"
    runs = saved["runs"]
    assert len(runs) == 2 * 2 * 2  # losses x learning rates x seeds
    for run in runs:
        assert {"loss", "seed", "lr", "final_mae", "curve", "test_curve", "seconds", "val_auc"} <= run.keys()
        assert [s for s, _ in run["curve"]] == [0, 20, 40]
        assert run["final_mae"] > 0
        assert set(run["steps_to_target"]) == {"first", "sustained"}
        for by_name in run["steps_to_target"].values():
            assert set(by_name) == {"0.2", "0.1", "0.07", "0.06", "floor+10%"}
        # The last point of the test curve is the final test MAE.
        assert run["test_curve"][-1][1] == pytest.approx(run["final_mae"], rel=1e-4)
    # One learning rate selected per loss and criterion, each the best on validation data.
    for loss in ("l1", "dfl"):
        for criterion, key in (("auc", "val_auc"), ("final", "final_val_mae")):
            chosen = {r["lr"] for r in runs if r["loss"] == loss and r[f"selected_{criterion}"]}
            assert len(chosen) == 1
            score = {
                lr: np.mean([r[key] for r in runs if r["loss"] == loss and r["lr"] == lr])
                for lr in (3e-3, 1e-2)
            }
            assert chosen == {min(score, key=score.get)}
    assert 0.01 < saved["noise_floor"]["test"]["median"] < 0.2
    assert set(saved["timing"]) == {"l1", "dfl"}
    paired = saved["summary"]["pairs"]["l1 - dfl"]
    assert paired["final_mae"]["auc"]["n"] == 2
    assert set(paired["ratio"]) == {"first", "sustained"}
    for name in ("curves.png", "steps_to_target.png"):
        assert (tmp_path / "a" / name).stat().st_size > 1000
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "| dfl |" in summary and "| l1 |" in summary and "floor" in summary
    assert "sustained crossing" in summary and "| l1 - dfl |" in summary

    strip = lambda rs: [(r["seed"], r["lr"], r["final_mae"], r["curve"]) for r in rs if r["loss"] == "dfl"]
    assert strip(first["runs"]) == strip(second["runs"])
    assert len(strip(second["runs"])) == 4


def test_learning_rate_grid_and_selection():
    from experiments.toy_regression import study

    assert study.neighbour_lr(3e-2, +1) == 0.1 and study.neighbour_lr(1e-2, +1) == 0.03
    assert study.neighbour_lr(1e-3, -1) == 3e-4 and study.neighbour_lr(3e-3, -1) == 1e-3
    assert study.select_lr({1e-3: 0.5, 3e-3: 0.2, 1e-2: 0.2}) == 3e-3  # ties go to the smaller rate
    tried, limits = [1e-3, 3e-3, 1e-2], (1e-4, 1.0)
    inner = {1e-3: 0.5, 3e-3: 0.1, 1e-2: 0.3}
    assert study.lr_to_add([inner], tried, limits) is None
    # Either criterion on an edge extends the grid on that side.
    assert study.lr_to_add([inner, {1e-3: 0.5, 3e-3: 0.4, 1e-2: 0.3}], tried, limits) == 0.03
    assert study.lr_to_add([{1e-3: 0.1, 3e-3: 0.4, 1e-2: 0.5}], tried, limits) == 3e-4
    # Never beyond the range.
    assert study.lr_to_add([{1e-3: 0.1, 3e-3: 0.4, 1e-2: 0.5}], tried, (1e-3, 1.0)) is None


def test_gradients_script(tmp_path):
    data = _load("gradients").main(["--points", "21", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "gradients.json").read_text())
    assert saved["error"] == pytest.approx(data["error"])
    assert len(saved["l1"]) == len(saved["smooth_l1"]) == len(saved["dfl"]) == 21
    assert all(abs(g) == 1 for g in saved["l1"])
    assert len(saved["dfl_logits_grad_norm"]) == 21
    assert set(saved["families"]) == {"gaussian", "laplace", "skewed", "bimodal"}
    for family in saved["families"].values():
        # L1 on the decoded expectation is +-1 along any family.
        assert np.allclose(np.abs(family["dist_l1"]), 1, atol=1e-4)
        assert len(family["dfl"]) == len(family["hl_gauss_0.75"]) == 21
    assert (tmp_path / "gradients.png").stat().st_size > 1000


def test_seed_examples_script(capsys):
    _load("seed_examples").main()
    out = capsys.readouterr().out
    assert "0.63 0.37" in out and "0.5004" in out and "4.8000" in out and "1.05" in out


def test_benchmark_script_tiny(tmp_path):
    out = _load("benchmark").main(
        [
            "--rows",
            "4096",
            "--bins",
            "17",
            "--repeats",
            "2",
            "--images",
            "1",
            "--runs",
            "2",
            # Not "vmap": it compiles the conv detector vmapped (about 40 s on CI's CPU); the
            # machinery's tests check that vmapped runs equal runs alone.
            "--part",
            "dfl",
            "detection",
            "toy",
            "--json",
            str(tmp_path / "bench.json"),
        ]
    )
    detection = out["detection"]
    assert set(detection["median_seconds"]) >= {
        "box loss v&g 1% fg",
        "dfl v&g, all points",
        "task_aligned_assign (vmapped)",
        "nms 8400 -> 100",
    }
    assert detection["notes"]["foreground points per image at 1%"] == 84
    # Structural: the assigner never holds an images x gts x points x classes array.
    assert detection["ratios"]["assigner scratch / (images x gts x points x classes) bytes"] < 0.25
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["device"]["platform"] == "cpu"
    assert [r["dtype"] for r in saved["results"]] == ["float32", "bfloat16"]
    for result in out["results"]:
        assert set(result["median_seconds"]) >= {"logsumexp v&g", "dfl v&g", "decode", "naive JAX DFL v&g"}
        assert all(t > 0 for t in result["median_seconds"].values())
        ratio = result["ratios"]["dfl value_and_grad / logsumexp value_and_grad"]
        assert ratio["value"] > 0 and ratio["target"] == 1.15
    toy = saved["toy_seeds"]["arms"]
    assert set(toy) == {"l1", "dfl"}
    assert set(toy["dfl"]["seeds"]) == {"2 vmap", "2 map"}
    assert all(r["speedup_vs_sequential"] > 0 for r in toy["dfl"]["seeds"].values())
    # Scratch memory is deterministic, so the structural bound holds even at this size.
    f32 = out["results"][0]
    assert f32["ratios"]["dfl value_and_grad scratch / logits bytes"]["value"] <= 0.3


def test_doctests_of_the_experiment_modules():
    # The library's doctests run through pytest's --doctest-modules (testpaths); the experiments'
    # modules moved out of the package keep theirs here.
    import doctest

    from experiments.common import stats
    from experiments.synthetic_detection import toy_detection
    from experiments.toy_regression import metrics, study, task, train

    for module, at_least in ((task, 2), (train, 1), (metrics, 4), (study, 2), (stats, 5), (toy_detection, 0)):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
        assert result.attempted >= at_least, module.__name__
