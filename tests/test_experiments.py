"""The experiment scripts end to end, at tiny sizes."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name: str):
    # An experiment with its own folder (flax examples' layout) has its entry script in main.py.
    folder = ROOT / "experiments" / name
    path = folder / "main.py" if folder.is_dir() else ROOT / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = ["--steps", "40", "--eval-every", "20", "--seeds", "2", "--eval-size", "64"]


def test_toy_regression_writes_results_and_is_reproducible(tmp_path):
    script = _load("toy_regression")
    argv = [*TINY, "--lr", "3e-3", "1e-2", "--timing-rounds", "2"]
    first = script.main([*argv, "--losses", "l1", "dfl", "--out", str(tmp_path / "a")])
    # Same seeds, same numbers: rerun one loss and compare its runs.
    second = script.main([*argv, "--losses", "dfl", "--out", str(tmp_path / "b")])

    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["device"]["platform"] == "cpu" and saved["device"]["device_count"] >= 1
    assert saved["config"]["seeds"] == [0, 1]
    runs = saved["runs"]
    assert len(runs) == 2 * 2 * 2  # losses x learning rates x seeds
    for run in runs:
        assert {"loss", "seed", "lr", "final_mae", "curve", "test_curve", "seconds", "val_auc"} <= run.keys()
        assert [s for s, _ in run["curve"]] == [0, 20, 40]
        assert run["final_mae"] > 0
        assert set(run["steps_to_target"]) == {"0.2", "0.1", "0.07", "0.06", "floor+10%"}
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
    paired = saved["summary"]["paired_vs_dfl"]["l1"]
    assert paired["final_mae_auc_lr"]["n"] == 2
    for name in ("curves.png", "steps_to_target.png"):
        assert (tmp_path / "a" / name).stat().st_size > 1000
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "| dfl |" in summary and "| l1 |" in summary and "floor" in summary

    strip = lambda rs: [(r["seed"], r["lr"], r["final_mae"], r["curve"]) for r in rs if r["loss"] == "dfl"]
    assert strip(first["runs"]) == strip(second["runs"])
    assert len(strip(second["runs"])) == 4


def test_paired_interval_against_a_hand_calculation():
    script = _load("toy_regression")
    # Differences 2, 3, 1: mean 2, sample sd 1, t_{0.975, 2} = 4.302653, half-width 4.302653 / sqrt(3).
    out = script.paired_interval([3.0, 5.0, 4.0], [1.0, 2.0, 3.0])
    half = 4.302653 / np.sqrt(3)
    assert out["mean"] == 2.0 and out["n"] == 3
    assert out["low"] == pytest.approx(2 - half, rel=1e-6) and out["high"] == pytest.approx(
        2 + half, rel=1e-6
    )
    assert not out["significant"]
    # Five seeds, all clearly below: significant. t_{0.975, 4} = 2.776445.
    out = script.paired_interval([1.0, 1.1, 0.9, 1.0, 1.2], [2.0, 2.0, 2.0, 2.0, 2.0])
    d = np.array([-1.0, -0.9, -1.1, -1.0, -0.8])
    half = 2.776445 * d.std(ddof=1) / np.sqrt(5)
    assert out["high"] == pytest.approx(d.mean() + half, rel=1e-6) and out["significant"]


def test_learning_rate_grid_and_selection():
    script = _load("toy_regression")
    assert script.neighbour_lr(3e-2, +1) == 0.1 and script.neighbour_lr(1e-2, +1) == 0.03
    assert script.neighbour_lr(1e-3, -1) == 3e-4 and script.neighbour_lr(3e-3, -1) == 1e-3
    assert script.select_lr({1e-3: 0.5, 3e-3: 0.2, 1e-2: 0.2}) == 3e-3  # ties go to the smaller rate
    tried = [1e-3, 3e-3, 1e-2]
    inner = {1e-3: 0.5, 3e-3: 0.1, 1e-2: 0.3}
    assert script.lr_to_add([inner], tried) is None
    # Either criterion on an edge extends the grid on that side.
    assert script.lr_to_add([inner, {1e-3: 0.5, 3e-3: 0.4, 1e-2: 0.3}], tried) == 0.03
    assert script.lr_to_add([{1e-3: 0.1, 3e-3: 0.4, 1e-2: 0.5}], tried) == 3e-4


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
    # Scratch memory is deterministic, so the structural bound holds even at this size.
    f32 = out["results"][0]
    assert f32["ratios"]["dfl value_and_grad scratch / logits bytes"]["value"] <= 0.3


def test_doctests_of_the_experiment_modules():
    # The library's doctests run through pytest's --doctest-modules (testpaths); the experiments'
    # modules moved out of the package keep theirs here.
    import doctest

    from experiments.synthetic_detection import toy_detection
    from experiments.toy_regression import toy

    for module, at_least in ((toy, 3), (toy_detection, 0)):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
        assert result.attempted >= at_least, module.__name__
