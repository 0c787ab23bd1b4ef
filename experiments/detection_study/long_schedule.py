"""Exploratory, not pre-registered: do the detection test's contrasts hold with twice the schedule?

    python -m experiments.detection_study.long_schedule --out results/detection_test

Why: at the confirmatory schedule (1600 steps at stride 8) every arm's validation AP still gained
about 0.011 over the last 20 % of the steps, and on the pilot seeds ``ciou_dfl - ciou`` shrank when
the schedule went from 800 to 1600 steps. So the confirmatory contrasts may partly measure speed.
This script trains the arms of the three primary contrasts (``ciou``, ``ciou_l1``,
``ciou_dist_l1``, ``ciou_dfl``; ``l1`` is in none of them) at each arm's confirmatory learning rate
and gain for ``--steps`` (default 3200) on the first ``--seeds`` confirmatory seeds, seed by seed
(every arm of a seed before the next seed, so a cut-off leaves complete seeds), with the same
data, initialisation and test set as the confirmatory runs of those seeds. Records go to
``records/synthetic_stride8_steps<steps>/`` (one per finished run; a restart skips them).

Reported (``long_schedule.json``, ``long_schedule.md``, ``curves_synthetic_stride8_steps<steps>.png``),
on the seeds every arm has finished: each contrast in test AP at 1600 and at ``--steps`` steps on
those same seeds, and the per-seed change between the two, each with a paired 95 % t-interval and
an unadjusted exact sign-flip p-value; each arm's test AP at both schedules; and the gain of
validation AP over the last 20 % of the longer schedule. Decided after the confirmatory results
were seen (their plateau numbers): exploratory, and labelled so.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from experiments.common import stats
from experiments.common.records import device_info
from experiments.common.store import RunStore, json_default
from experiments.detection_study import configs, plots, report, study
from experiments.detection_study.clipping import settings_for
from experiments.detection_study.fetch_data import default_cache
from experiments.detection_study.train import Run

ARMS = ("ciou", "ciou_l1", "ciou_dist_l1", "ciou_dfl")
CONTRASTS = (("ciou_dfl", "ciou_dist_l1"), ("ciou_dfl", "ciou_l1"), ("ciou_dfl", "ciou"))


def planned(out: pathlib.Path, condition: study.Condition, seeds: list[int]) -> list[list[Run]]:
    """One batch per run, seed by seed, at each arm's confirmatory (lr, gain)."""
    chosen = {arm: settings_for(out, condition, arm) for arm in ARMS}
    return [[Run(arm, seed, chosen[arm]["lr"], chosen[arm]["gain"])] for seed in seeds for arm in ARMS]


def compare(short: list[dict], long: list[dict], contrasts=CONTRASTS) -> dict:
    """The analysis on the seeds every arm has at both schedules (``short``, ``long``: run records
    with ``arm``, ``seed``, ``test`` and ``metrics``)."""
    complete = None
    for runs in (short, long):
        for arm in ARMS:
            seeds = {r["seed"] for r in runs if r["arm"] == arm}
            complete = seeds if complete is None else complete & seeds
    seeds = sorted(complete or ())
    pick = {
        name: {(r["arm"], r["seed"]): r for r in runs if r["seed"] in complete}
        for name, runs in (("short", short), ("long", long))
    }
    out: dict = {"seeds": seeds, "contrasts": {}, "arms": {}}
    for a, b in contrasts:
        d = {
            name: [pick[name][a, s]["test"]["AP"] - pick[name][b, s]["test"]["AP"] for s in seeds]
            for name in pick
        }
        change = [x - y for x, y in zip(d["long"], d["short"], strict=True)]
        out["contrasts"][f"{a}-{b}"] = {
            name: {**stats.t_interval(v), "p_sign_flip": stats.sign_flip_p(v)}
            for name, v in (("short", d["short"]), ("long", d["long"]), ("change", change))
        }
    for arm in ARMS:
        out["arms"][arm] = {
            name: stats.t_interval([pick[name][arm, s]["test"]["AP"] for s in seeds]) for name in pick
        }
        out["arms"][arm]["gain"] = stats.t_interval(
            [pick["long"][arm, s]["test"]["AP"] - pick["short"][arm, s]["test"]["AP"] for s in seeds]
        )
    out["plateau"] = report.plateau_summary([pick["long"][arm, s] for arm in ARMS for s in seeds])
    return out


def _cell(r: dict, p: bool = True) -> str:
    text = f"{r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}]"
    return text + (f" (p {r['p_sign_flip']:.3g})" if p else "")


def markdown(result: dict) -> str:
    short, long = result["short_steps"], result["long_steps"]
    seeds = result["analysis"]["seeds"]
    lines = [
        f"Exploratory (not pre-registered; decided after the confirmatory plateau numbers): the arms of "
        f"the primary contrasts at {long} steps against the confirmatory {short}, on the {len(seeds)} "
        f"seeds every arm finished ({', '.join(map(str, seeds))}), each arm at its confirmatory learning "
        "rate and gain, same data and initialisation per seed. Test AP differences, mean [95% paired "
        "t-interval] (unadjusted exact sign-flip p):",
        "",
        f"| contrast | at {short} steps | at {long} steps | change ({long} minus {short}) |",
        "|---|---|---|---|",
    ]
    for name, r in result["analysis"]["contrasts"].items():
        lines.append(f"| {name} | {_cell(r['short'])} | {_cell(r['long'])} | {_cell(r['change'])} |")
    lines += [
        "",
        f"Test AP per arm (mean [95% t-interval] over the same seeds) and the gain from {short} to "
        f"{long} steps; gain in validation AP over the last 20 % of the {long} steps (mean, min to max):",
        "",
        f"| arm | {short} steps | {long} steps | gain | last 20 % of {long} steps |",
        "|---|---|---|---|---|",
    ]
    for arm, r in result["analysis"]["arms"].items():
        plateau = result["analysis"]["plateau"][arm]["plateau_gain"]
        lines.append(
            f"| {arm} | {r['short']['mean']:.4f} [{r['short']['lo']:.4f}, {r['short']['hi']:.4f}] "
            f"| {r['long']['mean']:.4f} [{r['long']['lo']:.4f}, {r['long']['hi']:.4f}] "
            f"| {_cell(r['gain'], False)} "
            f"| {plateau['mean']:.4f} ({plateau['min']:.4f} to {plateau['max']:.4f}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="the detection test's results folder")
    p.add_argument("--steps", type=int, default=3200)
    p.add_argument("--seeds", type=int, default=5, help="the first confirmatory seeds")
    p.add_argument("--cache", type=pathlib.Path, default=default_cache())
    p.add_argument("--analyse-only", action="store_true", help="train nothing; analyse the records there are")
    args = p.parse_args(argv)
    config = configs.get("detection_test")
    _, reported = study.conditions(config, args.cache, "synthetic")
    stride8 = next(c for c in reported if c.name == "synthetic_stride8")
    short_steps = settings_for(args.out, stride8, "ciou_dfl")["steps"]
    seeds = study.reported_seeds(config)[: args.seeds]
    long = study.with_steps(stride8, args.steps, f"synthetic_stride8_steps{args.steps}")
    store = RunStore(args.out / "records" / long.name)
    batches = planned(args.out, stride8, seeds)
    if not args.analyse_only:
        study.run_phase(batches, long, store, phase="reported")
    short_store = RunStore(args.out / "records" / stride8.name)
    runs = {
        name: [s.read(r.key) for (r,) in batches if s.has(r.key)]
        for name, s in (("short", short_store), ("long", store))
    }
    analysis = compare(runs["short"], runs["long"])
    result = {
        "device": device_info(),
        "short_steps": short_steps,
        "long_steps": args.steps,
        "analysis": analysis,
        "exploratory": True,
    }
    (args.out / "long_schedule.json").write_text(json.dumps(result, indent=2, default=json_default) + "\n")
    (args.out / "long_schedule.md").write_text(markdown(result))
    complete = [r for r in runs["long"] if r["seed"] in analysis["seeds"]]
    if complete:
        plots.curves(
            complete,
            args.out / f"curves_{long.name}.png",
            f"synthetic, stride 8, {args.steps} steps: validation AP (mean over {len(analysis['seeds'])} "
            "seeds, min-max band)",
        )
    print((args.out / "long_schedule.md").read_text())
    return result


if __name__ == "__main__":
    main()
