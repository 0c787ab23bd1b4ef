"""The experiment machinery: vmapped runs equal runs alone; a restarted study resumes exactly."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types

import jax
import numpy as np
import pytest

pytest.importorskip("pycocotools")

from experiments.common.store import RunStore
from experiments.detection_study import configs, study
from experiments.detection_study import synthetic as syn
from experiments.detection_study.datasets import SyntheticData
from experiments.detection_study.train import Run, TrainConfig, train, train_batch

TINY = TrainConfig(steps=3, batch=2, eval_every=3, tile=96, strides=(8,), max_gt=16)


# One arm: the batching (parameters, optimiser state, data, rates and gains) is the same code for every arm.
@pytest.mark.parametrize("arm", ["ciou_dfl"])
def test_a_vmapped_run_equals_the_same_run_alone(arm):
    task = syn.SyntheticTask()
    data = SyntheticData(task, TINY, val_images=4, test_images=4, chunk=4)
    validate = lambda m: {"val_AP": 0.0}
    runs = [Run(arm, 0, 3e-3, 0.4), Run(arm, 1, 1e-2, 1.5), Run(arm, 0, 1e-2, 1.5)]
    together = train_batch(runs, config=TINY, batch_fn=data.batch, validate=validate)
    for run, batched in zip(runs, together, strict=True):
        alone = train(
            arm, seed=run.seed, lr=run.lr, gain=run.gain, config=TINY, batch_fn=data.batch, validate=validate
        )
        assert batched.curve[-1]["train"]["loss"] == pytest.approx(alone.curve[-1]["train"]["loss"], rel=1e-4)
        for a, b in zip(jax.tree.leaves(batched.params), jax.tree.leaves(alone.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # The gain is live: the same seed and rate with another gain trains differently.
    assert together[1].curve[-1]["train"]["loss"] != together[2].curve[-1]["train"]["loss"]


def test_a_restarted_study_skips_finished_runs_and_gives_the_same_results(tmp_path, monkeypatch):
    config = dataclasses.replace(configs.get("smoke"), data=("synthetic",), lrs=(1e-3, 1e-2), gains=(0.4,))
    cache = tmp_path / "no_cache"
    whole_log = []
    whole = study.run_data(config, "synthetic", cache, tmp_path / "whole", log=whole_log.append)
    # Cut off: the second batch raises, as if the session ended during it.
    real_train = study.train_and_record
    calls = {"n": 0}

    def cut(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(study, "train_and_record", cut)
    with pytest.raises(KeyboardInterrupt):
        study.run_data(config, "synthetic", cache, tmp_path / "cut", log=lambda _: None)
    monkeypatch.setattr(study, "train_and_record", real_train)
    done = sorted(p.name for p in (tmp_path / "cut" / "records" / "synthetic_stride8").glob("*.json"))
    assert done and len(done) < len(
        list((tmp_path / "whole" / "records" / "synthetic_stride8").glob("*.json"))
    )
    trained = []
    resumed = study.run_data(
        config, "synthetic", cache, tmp_path / "cut", log=lambda message: trained.append(message)
    )
    assert len(trained) == len(whole_log) - 1  # every batch but the one that had finished
    assert resumed["chosen"] == whole["chosen"]
    for path in (tmp_path / "whole" / "records" / "synthetic_stride8").glob("*.json"):
        a = json.loads(path.read_text())
        assert set(a["provenance"]) == {"commit", "uncommitted_changes", "xla_flags", "cpus", "versions"}
        b = json.loads((tmp_path / "cut" / "records" / "synthetic_stride8" / path.name).read_text())
        strip = lambda r: {k: v for k, v in r.items() if not k.endswith("seconds")}
        a["curve"] = [{k: v for k, v in c.items() if k != "seconds"} for c in a["curve"]]
        b["curve"] = [{k: v for k, v in c.items() if k != "seconds"} for c in b["curve"]]
        assert strip(a) == strip(b), path.name


def test_curve_metrics():
    curve = [{"step": s, "val_AP": v} for s, v in ((10, 0.1), (20, 0.3), (30, 0.35), (40, 0.4), (50, 0.42))]
    m = study.curve_metrics(curve, 50)
    assert m["final_val_AP"] == 0.42
    assert m["val_auc"] == pytest.approx((0.2 + 0.325 + 0.375 + 0.41) * 10 / 40)
    assert m["plateau_gain"] == pytest.approx(0.42 - 0.4)  # last eval at or before step 40


# --- the tuning rules (pilot choice, edge rule, schedule check) and the reported order ---------------


def _fake_pilot(store, arm, values):
    """Hand-written pilot records: ``values[(lr, gain)] = [metric per pilot seed]``."""
    for (lr, gain), per_seed in values.items():
        for seed, v in zip((1000, 1001), per_seed, strict=True):
            store.write(Run(arm, seed, lr, gain).key, {"metrics": {"final_val_AP": v}})


def test_choose_counts_a_diverged_seed_as_zero_and_breaks_ties_by_lr_then_gain(tmp_path):
    # The grid listed in descending order: the choice must not depend on it.
    config = dataclasses.replace(
        configs.get("smoke"), lrs=(1e-2, 1e-3), gains=(1.0, 0.4), pilot_seeds=(1000, 1001)
    )
    store = RunStore(tmp_path)
    _fake_pilot(
        store,
        "ciou_dfl",
        {
            (1e-2, 1.0): [0.5, float("nan")],  # 0.5 if the NaN were left out; 0.25 counted as 0
            (1e-2, 0.4): [0.3, 0.3],
            (1e-3, 1.0): [0.2, 0.4],
            (1e-3, 0.4): [0.4, 0.2],
        },
    )
    lr, gain, scores = study.choose(config, "ciou_dfl", store)
    assert (lr, gain) == (1e-3, 0.4)  # three points tie at 0.3: the smaller lr, then the smaller gain
    assert scores["0.01,1"] == pytest.approx(0.25)
    assert study.best_point({(2.0, 1.0): 0.1, (1.0, 2.0): 0.1, (1.0, 1.0): 0.0}) == (1.0, 2.0)


def test_choose_with_the_edge_rule_chooses_again_over_grid_and_extra_points(tmp_path):
    config = dataclasses.replace(
        configs.get("smoke"), lrs=(1e-3, 1e-2), gains=(0.4, 1.0), pilot_seeds=(1000, 1001), extend_edges=True
    )
    store = RunStore(tmp_path)
    grid = {
        (1e-3, 0.4): [0.1, 0.1],
        (1e-3, 1.0): [0.2, 0.2],
        (1e-2, 0.4): [0.0, 0.0],
        (1e-2, 1.0): [0.3, 0.3],
    }
    _fake_pilot(store, "ciou_dfl", grid)
    # Grid choice (1e-2, 1.0): largest lr and largest gain, so (2e-2, 1.0) and (1e-2, 4.0) are added.
    added = study.added_points(config, "ciou_dfl", store)
    assert [(p["lr"], p["gain"]) for p in added] == [(2e-2, 1.0), (1e-2, 4.0)]
    with pytest.raises(FileNotFoundError):  # the extra points' records are part of the choice
        study.choose(config, "ciou_dfl", store)
    _fake_pilot(store, "ciou_dfl", {(2e-2, 1.0): [0.35, float("nan")], (1e-2, 4.0): [0.31, 0.31]})
    lr, gain, scores = study.choose(config, "ciou_dfl", store)
    assert (lr, gain) == (1e-2, 4.0) and len(scores) == 6  # 2e-2's diverged seed counts 0: 0.175
    # Without the switch, the grid alone.
    assert study.choose(dataclasses.replace(config, extend_edges=False), "ciou_dfl", store)[:2] == (1e-2, 1.0)


@pytest.mark.parametrize(
    ("lrs", "gains", "choice", "auxiliary", "expected"),
    [
        ((3e-3, 1e-2, 2e-2), (0.1, 0.4, 1.6), (2e-2, 1.6), True, [(4e-2, 1.6), (2e-2, 6.4)]),
        ((3e-3, 1e-2, 2e-2), (0.1, 0.4, 1.6), (3e-3, 0.1), True, [(1.5e-3, 0.1), (3e-3, 0.025)]),
        ((3e-3, 1e-2, 2e-2), (0.1, 0.4, 1.6), (1e-2, 1.6), True, [(1e-2, 6.4)]),
        ((3e-3, 1e-2, 2e-2), (0.1, 0.4, 1.6), (2e-2, 0.4), True, [(4e-2, 0.4)]),
        ((3e-3, 1e-2, 2e-2), (0.1, 0.4, 1.6), (1e-2, 0.4), True, []),  # inside the grid
        ((3e-3, 1e-2, 2e-2), (0.1, 0.4, 1.6), (3e-3, 0.0), False, [(1.5e-3, 0.0)]),  # no gain to extend
        ((3e-3, 1e-2, 2e-2), (0.1, 0.4, 1.6), (1e-2, 0.0), False, []),
        ((1e-2,), (0.4,), (1e-2, 0.4), True, [(2e-2, 0.4)]),  # one lr: its largest; one gain: no gain rule
        ((1e-3, 1e-2), (0.4, 1.0), (1e-3, 1.0), True, [(5e-4, 1.0), (1e-3, 4.0)]),
    ],
)
def test_edge_points(lrs, gains, choice, auxiliary, expected):
    points = study.edge_points(lrs, gains, choice, auxiliary)
    assert [(p["lr"], p["gain"]) for p in points] == expected
    assert all(p["why"] for p in points)


def _aps(**per_arm):
    return {arm: dict(zip((1000, 1001), v, strict=True)) for arm, v in per_arm.items()}


def test_schedule_decision_keeps_or_lengthens_and_says_which_criterion_failed():
    decide = lambda short, long: study.schedule_decision(
        short,
        long,
        [("ciou_dfl", "ciou"), ("ciou_dfl", "l1")],
        steps=800,
        check_steps=1600,
        schedule_tolerance=0.01,
        contrast_tolerance=0.005,
    )
    short = _aps(ciou=[0.50, 0.52], l1=[0.40, 0.42], ciou_dfl=[0.55, 0.57])
    # ciou and l1 gain 0.004, ciou_dfl 0.003: each contrast moves by 0.001: keep 800.
    kept = decide(short, _aps(ciou=[0.504, 0.524], l1=[0.404, 0.424], ciou_dfl=[0.553, 0.573]))
    assert kept["kept"] and kept["steps"] == 800 and kept["failed"] == {}
    assert kept["gain"]["ciou_dfl"] == pytest.approx(0.003)
    assert kept["contrast_change"]["ciou_dfl-ciou"]["change"] == pytest.approx(-0.001)
    # Every arm gains 0.02 alike: (a) fails, the contrasts do not move.
    longer = decide(short, _aps(ciou=[0.52, 0.54], l1=[0.42, 0.44], ciou_dfl=[0.57, 0.59]))
    assert not longer["kept"] and longer["steps"] == 1600
    assert longer["failed"] == {"gain": ["ciou", "l1", "ciou_dfl"]}
    # Only ciou_dfl gains, 0.008: within (a), but both of its contrasts move by more than 0.005.
    moved = decide(short, _aps(ciou=[0.50, 0.52], l1=[0.40, 0.42], ciou_dfl=[0.558, 0.578]))
    assert moved["steps"] == 1600 and moved["failed"] == {"contrast": ["ciou_dfl-ciou", "ciou_dfl-l1"]}
    assert moved["contrast_change"]["ciou_dfl-l1"] == pytest.approx(
        {"short": 0.15, "long": 0.158, "change": 0.008}
    )
    # A seed that diverged at the long schedule counts 0: a loss, not a gain, yet the contrasts move.
    nan = decide(short, _aps(ciou=[0.50, 0.52], l1=[0.40, 0.42], ciou_dfl=[float("nan"), 0.57]))
    assert nan["gain"]["ciou_dfl"] == pytest.approx(-0.275) and set(nan["failed"]) == {"contrast"}


def test_reported_batches_go_seed_by_seed():
    settings = {"a": (1e-2, 0.0), "b": (3e-3, 0.4)}
    one = study.reported_batches(["a", "b"], settings, [100, 101, 102], 1)
    assert [[(r.arm, r.seed) for r in b] for b in one] == [
        [("a", 100)],
        [("b", 100)],
        [("a", 101)],
        [("b", 101)],
        [("a", 102)],
        [("b", 102)],
    ]
    two = study.reported_batches(["a", "b"], settings, [100, 101, 102], 2)
    assert [[(r.arm, r.seed) for r in b] for b in two] == [
        [("a", 100), ("a", 101)],
        [("b", 100), ("b", 101)],
        [("a", 102)],
        [("b", 102)],
    ]
    assert two[1][0] == Run("b", 100, 3e-3, 0.4)
    assert two == study.reported_batches(["a", "b"], settings, [100, 101, 102], 2)  # the same on a restart


def test_workers_share_the_reported_runs_seed_by_seed_without_overlap():
    settings = {"a": (1e-2, 0.0), "b": (3e-3, 0.4), "c": (1e-2, 0.1)}
    seeds = list(range(100, 107))
    planned = study.reported_batches(["a", "b", "c"], settings, seeds, 1)
    shares = [study.worker_share(planned, 3, i, 2) for i in range(2)]
    # Worker 0 takes seeds 100, 102, ..., worker 1 the others; each seed's arms stay in one worker.
    assert [{r.seed for b in s for r in b} for s in shares] == [{100, 102, 104, 106}, {101, 103, 105}]
    assert [[r.arm for r in b] for b in shares[1][:3]] == [["a"], ["b"], ["c"]]
    merged = sorted((r.arm, r.seed) for s in shares for b in s for r in b)
    assert merged == sorted((r.arm, r.seed) for b in planned for r in b)  # all, once
    assert study.worker_share(planned, 3, 0, 1) == planned
    with pytest.raises(ValueError, match="worker index 2"):
        study.worker_share(planned, 3, 2, 2)


def test_worker_argument_is_checked():
    from experiments.detection_study import main

    assert main.worker_arg("1/2") == (1, 2)
    for bad in ("2/2", "x/2", "1"):
        with pytest.raises(argparse.ArgumentTypeError, match="--worker"):
            main.worker_arg(bad)


def test_pilot_only_runs_grid_edges_and_schedule_check_then_reports_at_the_decided_steps(
    tmp_path, monkeypatch
):
    from experiments.detection_study import main

    config = dataclasses.replace(
        configs.get("smoke"),
        data=("synthetic",),
        lrs=(1e-3, 1e-2),
        gains=(0.4,),
        seeds=1,
        first_seed=100,
        max_batch=1,
        extend_edges=True,
        schedule_check_steps=4,
        schedule_tolerance=-1.0,  # any gain fails (a): the reported runs must train 4 steps
    )
    monkeypatch.setattr(configs, "get", lambda name: config)
    out = tmp_path / "out"
    argv = ["--config", "tiny", "--out", str(out), "--cache", str(tmp_path / "no_cache")]
    pilot = json.loads(json.dumps(main.main([*argv, "--pilot-only"])["synthetic"]["tuning"]))
    assert set(pilot["edges"]) == {"ciou", "ciou_dfl"}
    for edge in pilot["edges"].values():
        assert len(edge["added"]) == 1 and edge["added"][0]["why"]  # one lr edge; one gain: no gain rule
        assert edge["choice"]["lr"] in (1e-3, 1e-2, edge["added"][0]["lr"])
    schedule = pilot["schedule"]
    assert schedule["steps"] == 4 and schedule["failed"]["gain"] == ["ciou", "ciou_dfl"]
    assert schedule["condition"] == "synthetic_stride8_steps4"
    checked = list((out / "records" / "synthetic_stride8_steps4").glob("*.json"))
    assert len(checked) == 2 and all(json.loads(p.read_text())["curve"][-1]["step"] == 4 for p in checked)
    assert json.loads((out / "pilot_synthetic.json").read_text())["synthetic"]["tuning"] == pilot
    table = (out / "pilot_synthetic.md").read_text()  # the pilot's page table, from the records
    assert "| ciou_dfl |" in table and "+:" in table and "**(" in table and "schedule check" in table
    results = main.main(argv)
    # The reported phase reuses the pilot's records: the same tuning (JSON: seeds as strings).
    assert json.loads(json.dumps(results["synthetic"]["tuning"])) == pilot
    runs = results["synthetic"]["conditions"]["8"]["runs"]
    assert sorted((r["arm"], r["seed"]) for r in runs) == [("ciou", 100), ("ciou_dfl", 100)]
    assert all(r["curve"][-1]["step"] == 4 for r in runs)
    assert results["synthetic"]["conditions"]["8"]["train_config"]["steps"] == 4


def test_a_record_from_another_schedule_is_not_taken_for_this_one(tmp_path):
    # A lengthened reported condition keeps its directory: its old records must not pass as done.
    store = RunStore(tmp_path)
    run = Run("ciou", 100, 1e-2, 0.0)
    store.write(run.key, {"curve": [{"step": 400}, {"step": 800}]})
    condition = lambda steps: study.Condition(
        "synthetic_stride8", "synthetic", types.SimpleNamespace(config=TrainConfig(steps=steps))
    )
    assert study.run_phase([[run]], condition(800), store, phase="reported") == {"trained": 0, "skipped": 1}
    with pytest.raises(ValueError, match="trained for 800 steps"):
        study.run_phase([[run]], condition(1600), store, phase="reported")


def test_a_condition_can_report_fewer_seeds_than_the_others(tmp_path, monkeypatch):
    config = dataclasses.replace(
        configs.get("smoke"),
        data=("synthetic",),
        seeds=3,
        first_seed=100,
        max_batch=1,
        condition_seeds=(("synthetic_stride4", 2),),
        synthetic=dataclasses.replace(configs.get("smoke").synthetic, strides=(8, 4), pilot_stride=8),
    )
    assert study.reported_seeds(config, "synthetic_stride8") == [100, 101, 102]
    assert study.reported_seeds(config, "synthetic_stride4") == [100, 101]
    assert study.reported_seeds(config) == [100, 101, 102]
    # The run planner trains each condition's own seeds (the tuning is not what is tested here).
    arms = list(config.arms)
    monkeypatch.setattr(study, "tune", lambda *a, **k: ({a: (1e-2, 0.0, {}) for a in arms}, {"steps": None}))
    monkeypatch.setattr(study, "with_steps", lambda c, steps: c)
    planned = {}
    monkeypatch.setattr(
        study,
        "run_phase",
        lambda batches, condition, *a, **k: planned.setdefault(
            condition.name, sorted({r.seed for b in batches for r in b})
        ),
    )
    study.run_data(config, "synthetic", tmp_path, tmp_path, log=lambda m: None)
    assert planned == {"synthetic_stride8": [100, 101, 102], "synthetic_stride4": [100, 101]}
    steps = config.synthetic.steps
    full = dataclasses.replace(config, condition_seeds=())
    assert (
        study.total_steps(full, ["synthetic"]) - study.total_steps(config, ["synthetic"]) == len(arms) * steps
    )
    for bad in (0, 4):
        with pytest.raises(ValueError, match="condition_seeds"):
            study.reported_seeds(
                dataclasses.replace(config, condition_seeds=(("synthetic_stride4", bad),)),
                "synthetic_stride4",
            )


def test_the_detection_test_reports_32_seeds_at_stride_8_and_16_at_stride_4():
    # Amendment 2 of the pre-registration; the crowns' target is 8 seeds.
    config = configs.get("detection_test")
    assert study.reported_seeds(config, "synthetic_stride8") == list(range(100, 132))
    assert study.reported_seeds(config, "synthetic_stride4") == list(range(100, 116))
    assert study.reported_seeds(configs.get("detection_test_crowns"), "real") == list(range(100, 108))


def test_provenance_names_the_commit_and_the_thread_settings(monkeypatch):
    import subprocess

    from experiments.common import records
    from experiments.common.records import provenance

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    records._checkout.cache_clear()
    stamp = provenance()
    provenance()  # the checkout is read once a process: the code it loaded, whatever HEAD becomes
    assert records._checkout.cache_info().misses == 1
    assert stamp["xla_flags"] == "--xla_cpu_multi_thread_eigen=false" and stamp["cpus"] >= 1
    assert stamp["versions"]["jax"] == jax.__version__ and set(stamp["versions"]) == {
        "jax",
        "jaxlib",
        "numpy",
    }
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (CI's is a clone): the commit and a dirty flag
        assert stamp["commit"] == head.stdout.strip() and isinstance(stamp["uncommitted_changes"], bool)
    else:  # an unpacked sdist: no history to name
        assert stamp["commit"] is None
