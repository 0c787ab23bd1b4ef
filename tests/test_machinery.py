"""The experiment machinery: vmapped runs equal runs alone; a restarted study resumes exactly."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

pytest.importorskip("pycocotools")

from experiments.detection_study import configs, study
from experiments.detection_study import synthetic as syn
from experiments.detection_study.datasets import SyntheticData
from experiments.detection_study.train import Run, TrainConfig, train, train_batch

TINY = TrainConfig(steps=3, batch=2, eval_every=3, tile=96, strides=(8,), max_gt=16)


@pytest.mark.parametrize("arm", ["ciou_dist_l1", "ciou_dfl"])
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
