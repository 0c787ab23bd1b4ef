"""Do the detection test's bins clip any training target? The clipped fraction, logged in training.

    python -m experiments.detection_study.clipping --out results/detection_test

``coverage.py`` bounds clipping from the data alone (the assigner's candidates); this script
watches it where it happens: it trains each arm with a distribution head (``ciou_dist_l1``,
``ciou_dfl``) on each condition of the detection test with ``TrainConfig(log_clipped=True)``,
so that every step also computes :func:`jax_dfl.clipped_fraction` of the assignment it trains
on (the share of the batch's foreground side targets outside the bins), and the training curve
keeps its mean over each ``eval_every`` interval. A mean of 0 over an interval means no step of
it clipped a target (the fractions are non-negative).

Runs: one seed, the first pilot seed (its records are not reported), trained as the
confirmatory runs are: the learning rate, gain and number of steps of the arm's records for the
first reported seed (``records/<condition>/``), or, where those records do not exist yet, the
synthetic stride-8 ones (the crowns at their own configuration's steps). Validation is
skipped (only the training log is read). Each run's record is written when it finishes
(``clipping/<condition>_<arm>.json``) and skipped on restart; the script then writes
``clipping.json`` and ``clipping.md``. About a minute per synthetic run on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import pathlib

import numpy as np

from experiments.common.records import device_info
from experiments.common.store import RunStore, json_default
from experiments.detection_study import configs, coverage, study
from experiments.detection_study.fetch_data import default_cache
from experiments.detection_study.train import train

ARMS = ("ciou_dist_l1", "ciou_dfl")


def settings_for(out: pathlib.Path, condition: study.Condition, arm: str) -> dict:
    """``{"lr", "gain", "steps", "from"}``: those of the arm's record for the first reported seed
    of ``condition``, else of the synthetic stride-8 records (the crowns at their own steps)."""
    first = configs.get("detection_test").first_seed
    for name in (condition.name, "synthetic_stride8"):
        found = sorted((out / "records" / name).glob(f"{arm}_seed{first}_lr*_gain*.json"))
        if found:
            record = json.loads(found[0].read_text())
            # The synthetic strides share the schedule decision; the crowns train their own steps.
            same_schedule = name == condition.name or condition.data == "synthetic"
            steps = record["curve"][-1]["step"] if same_schedule else condition.dataset.config.steps
            return {
                "lr": record["lr"],
                "gain": record["gain"],
                "steps": steps,
                "from": f"{name}/{found[0].name}",
            }
    raise FileNotFoundError(f"no record of {arm} seed {first} under {out / 'records'}: run the study first")


def logged_run(condition: study.Condition, arm: str, settings: dict, seed: int) -> dict:
    """Train ``arm`` on ``condition`` for one seed with the clipped fraction logged."""
    dataset = copy.copy(condition.dataset)  # shares the loaded images; only the config differs
    dataset.config = dataclasses.replace(dataset.config, steps=settings["steps"], log_clipped=True)
    result = train(
        arm,
        seed=seed,
        lr=settings["lr"],
        gain=settings["gain"],
        config=dataset.config,
        batch_fn=dataset.batch,
        validate=lambda model: {},
    )
    curve = [
        {"step": c["step"], "clipped": c["train"]["clipped"], "foreground": c["train"]["foreground"]}
        for c in result.curve
    ]
    return {
        "condition": condition.name,
        "arm": arm,
        "seed": seed,
        **settings,
        "strides": list(dataset.config.strides),
        "curve": curve,
        "max_interval_clipped": max(c["clipped"] for c in curve),
        "mean_clipped": float(np.mean([c["clipped"] for c in curve])),
        "train_seconds": result.train_seconds,
    }


def _percent(x: float) -> str:
    return "0" if x == 0 else f"{100 * x:.3g} %"  # a tiny non-zero share must not print as 0.00 %


def markdown(result: dict) -> str:
    lines = [
        "Written by `python -m experiments.detection_study.clipping`: each arm with a distribution "
        f"head trained for seed {result['seed']} (a pilot seed, not reported) with the clipped "
        "fraction logged at every step (`TrainConfig(log_clipped=True)`, `jax_dfl.clipped_fraction` "
        "of the assignment the step trains on), at the settings of the confirmatory records named. "
        "Per run: the largest and the mean over the training of the per-interval mean fraction "
        f"(intervals of `eval_every` steps). `real`: the NEON crowns.",
        "",
        "| condition | arm | lr | gain | steps | largest interval mean | mean | settings from |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['condition']} | `{r['arm']}` | {r['lr']:g} | {r['gain']:g} | {r['steps']} | "
            f"{_percent(r['max_interval_clipped'])} | {_percent(r['mean_clipped'])} | `{r['from']}` |"
        )
    clipped = [r for r in result["runs"] if r["max_interval_clipped"] > 0]
    lines += [
        "",
        "No training step of these runs clipped a target."
        if not clipped
        else f"{len(clipped)} of {len(result['runs'])} runs clipped targets in some steps (see the table).",
    ]
    if result["skipped"]:
        lines += ["", result["skipped"] + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="the detection test's results folder")
    p.add_argument("--cache", type=pathlib.Path, default=default_cache())
    args = p.parse_args(argv)
    seed = configs.get("detection_test").pilot_seeds[0]
    found, skipped = coverage.conditions(args.cache)
    store = RunStore(args.out / "clipping")
    runs = []
    for condition in found:
        for arm in ARMS:
            key = f"{condition.name}_{arm}"
            if not store.has(key):
                settings = settings_for(args.out, condition, arm)
                print(f"{key}: seed {seed}, {settings['steps']} steps, clipped fraction logged")
                store.write(key, logged_run(condition, arm, settings, seed))
            record = store.read(key)
            print(f"{key}: largest interval mean {record['max_interval_clipped']:.4%}")
            runs.append(record)
    result = {"device": device_info(), "seed": seed, "runs": runs, "skipped": skipped}
    (args.out / "clipping.json").write_text(json.dumps(result, indent=2, default=json_default) + "\n")
    (args.out / "clipping.md").write_text(markdown(result))
    print(f"wrote {args.out / 'clipping.json'} and {args.out / 'clipping.md'}")
    return result


if __name__ == "__main__":
    main()
