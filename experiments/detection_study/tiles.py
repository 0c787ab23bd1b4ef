"""Redraw the crowns' test-tile figure of a finished study: seed 0 of three arms, retrained.

    python -m experiments.detection_study.tiles --out results/detection_study

The figure needs the trained models, which the study does not save. This retrains seed 0 of
``ciou``, ``ciou_dist`` and ``ciou_dfl`` on the block split at the rates the study chose (read from
``results_real.json``), with the study's own configuration, and checks each run's test AP against
the study's record of the same run before drawing ``test_tiles_real.png``.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from experiments.detection_study import arms as arms_lib
from experiments.detection_study import evaluate as ev
from experiments.detection_study import fetch_data, plots
from experiments.detection_study.datasets import RealData
from experiments.detection_study.train import TrainConfig, train


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="the study's folder (results_real.json)")
    p.add_argument("--arms", nargs="+", default=["ciou", "ciou_dist", "ciou_dfl"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block", type=int, default=160, help="the study's block size (its preset's)")
    p.add_argument("--cache", type=pathlib.Path, default=fetch_data.default_cache())
    args = p.parse_args(argv)
    path = args.out / "results_real.json"  # a --data real run; a --data both run writes results.json
    study = json.loads((path if path.exists() else args.out / "results.json").read_text())["real"]
    fields = study["train_config"]
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    eval_config = ev.EvalConfig(**study["eval_config"])
    dataset = RealData(
        args.cache, config, split=study["data"]["split"], block=args.block, eval_config=eval_config
    )
    detections, check = {}, {}
    for arm in args.arms:
        spec = arms_lib.ARMS[arm]
        result = train(
            arm,
            seed=args.seed,
            lr=study["chosen_lr"][arm],
            gain=study.get("chosen_gain", {}).get(arm),  # absent in the first study: the default gain
            config=config,
            batch_fn=dataset.batch,
            validate=lambda m, s=spec: dataset.validate(s, m),
        )
        record = dataset.test(spec, result.model())
        detections[arm] = record.detections
        recorded = next(r for r in study["runs"] if r["arm"] == arm and r["seed"] == args.seed)["test"]["AP"]
        check[arm] = {"AP_now": ev.ap_from_matches(record.matches)["AP"], "AP_in_study": recorded}
        print(f"{arm}: test AP {check[arm]['AP_now']:.4f} (the study's run: {recorded:.4f})")
    plots.test_tiles(dataset.test_views(3), detections, args.out / "test_tiles_real.png")
    return check


if __name__ == "__main__":
    main()
