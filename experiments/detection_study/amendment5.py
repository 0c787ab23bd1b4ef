"""Amendment 5 of the detection test's pre-registration: the stride-8 contrasts at 12800 steps.

    python -m experiments.detection_study.amendment5 --plan --out results/detection_test
    python -m experiments.detection_study.amendment5 --out results/detection_test

``--plan`` (before the first run; trains nothing) writes the expected half-widths at 8 seeds
(``amendment5_plan.{json,md}``, item 10): per contrast the larger of two paired SDs of test AP,
that of amendment 4's 6400-step records without the seeds in which an arm of the contrast has a
collapsed run (item 7) and that of the 32 confirmatory 1600-step seeds; the SD with every seed
kept is written beside them.

Without ``--plan``: trains what is missing, in the pre-registered order (seed by seed; within a
seed the arms ``ciou``, ``ciou_l1``, ``ciou_dist_l1``, ``ciou_dfl``, each at its confirmatory
learning rate and gain, at 12800 steps; the 6400-step leg is amendment 4's records), one record
per run written when it finishes (``records/amendment5_steps12800/``; a restart skips finished
runs). It prints only how many runs remain: no test AP is read while the runs go (item 3). The
analysis (items 4-9) is written, with its tests, before the last record.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence

from experiments.common import stats
from experiments.common.records import provenance
from experiments.common.store import RunStore, json_default
from experiments.detection_study import configs, power, study
from experiments.detection_study.amendment4 import NAMES as A4_NAMES
from experiments.detection_study.amendment4 import SEEDS
from experiments.detection_study.clipping import settings_for
from experiments.detection_study.fetch_data import default_cache
from experiments.detection_study.long_schedule import ARMS, CONTRASTS
from experiments.detection_study.train import Run

STEPS = 12800
SHORTER = 6400  # amendment 4's longer schedule, the shorter leg here (item 2)
NAME = f"amendment5_steps{STEPS}"
COLLAPSE = 0.5  # item 7: collapsed if the final validation AP is below this fraction of the curve's best


def planned(chosen: Mapping[str, Mapping], seeds: Sequence[int] = SEEDS) -> list[Run]:
    """The primary runs in the pre-registered order: seed, then arm (item 3)."""
    return [Run(arm, seed, chosen[arm]["lr"], chosen[arm]["gain"]) for seed in seeds for arm in ARMS]


def collapsed(curve: Sequence[Mapping]) -> bool:
    """Item 7: the final validation AP is below half of the largest on the curve (a NaN evaluation
    counts as 0, so a run that ends in NaN after learning anything has collapsed; a run that never
    rose above 0 has not collapsed, it never learned)."""
    ap = [0.0 if math.isnan(c["val_AP"]) else c["val_AP"] for c in curve]
    return ap[-1] < COLLAPSE * max(ap)


def _reported(out: pathlib.Path, folder: str, arm: str) -> dict[int, dict]:
    """The reported records of ``arm`` under ``records/<folder>/`` by seed."""
    store = RunStore(out / "records" / folder)
    found = {}
    for path in sorted((out / "records" / folder).glob(f"{arm}_seed*_lr*_gain*.json")):
        record = store.read(path.stem)
        if record.get("phase") == "reported":  # the pilot's records have no test AP
            found[record["seed"]] = record
    return found


def _ap(records: Mapping[int, dict], leave_out: Sequence[int] = ()) -> dict[int, float]:
    return {s: r["test"]["AP"] for s, r in records.items() if s not in leave_out}


def plan(out: pathlib.Path, seeds: int = len(SEEDS)) -> dict:
    """Item 10: the expected half-width of each contrast at ``seeds`` seeds from the larger of two
    paired SDs of test AP (amendment 4's 6400-step records without seeds with a collapsed run in an
    arm of the contrast; the confirmatory 1600-step records), with the SD of every 6400-step seed."""
    rows = {}
    for a, b in CONTRASTS:
        long = {arm: _reported(out, A4_NAMES[SHORTER], arm) for arm in (a, b)}
        base = {arm: _reported(out, "synthetic_stride8", arm) for arm in (a, b)}
        dropped = sorted(
            s
            for arm in (a, b)
            for s, r in long[arm].items()
            if collapsed(r["curve"]) or (s in base[arm] and collapsed(base[arm][s]["curve"]))
        )

        sds = {
            "steps6400": power.paired_sd(_ap(long[a], dropped), _ap(long[b], dropped)),
            "steps1600": power.paired_sd(_ap(base[a]), _ap(base[b])),
        }
        if any(math.isnan(v) for v in sds.values()):
            raise ValueError(f"{a}-{b}: fewer than 2 seeds for an SD in {sds}: item 10 needs both")
        sd = max(sds.values())
        every = power.paired_sd(_ap(long[a]), _ap(long[b]))
        rows[f"{a}-{b}"] = {
            **sds,
            "seeds_dropped_6400": dropped,
            "seeds_6400": len(set(long[a]) & set(long[b])) - len(set(dropped)),
            "seeds_1600": len(set(base[a]) & set(base[b])),
            "sd_used": sd,
            "expected_half_width": stats.expected_half_width(sd, seeds),
            "sd_6400_every_seed": every,
            "expected_half_width_every_seed": stats.expected_half_width(every, seeds),
        }
    return {"seeds": seeds, "contrasts": rows}


def plan_markdown(result: Mapping) -> str:
    lines = [
        f"Amendment 5, item 10: expected half-widths of the 12800-step contrasts at {result['seeds']} "
        "seeds, from the larger of two paired SDs of test AP (written before the first run):",
        "",
        "| contrast | SD, 6400 steps (seeds; left out) | SD, 1600 steps (seeds) | SD used "
        "| expected half-width | with every 6400-step seed |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in result["contrasts"].items():
        flag = " (above 0.01)" if r["expected_half_width"] > 0.01 else ""
        left = ", ".join(map(str, r["seeds_dropped_6400"])) or "none"
        every = r["expected_half_width_every_seed"]
        lines.append(
            f"| {name} | {r['steps6400']:.4f} ({r['seeds_6400']}; {left}) | {r['steps1600']:.4f} "
            f"({r['seeds_1600']}) | {r['sd_used']:.4f} | {r['expected_half_width']:.4f}{flag} "
            f"| {every:.4f}{' (above 0.01)' if every > 0.01 else ''} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="the detection test's results folder")
    p.add_argument("--cache", type=pathlib.Path, default=default_cache())
    p.add_argument(
        "--plan", action="store_true", help="write the expected half-widths (item 10); train nothing"
    )
    args = p.parse_args(argv)
    provenance()  # the commit this process loaded, before any later commit moves HEAD
    if args.plan:
        result = plan(args.out)
        (args.out / "amendment5_plan.json").write_text(
            json.dumps(result, indent=1, default=json_default) + "\n"
        )
        (args.out / "amendment5_plan.md").write_text(plan_markdown(result))
        print(plan_markdown(result))
        return result
    if os.environ.get("XLA_FLAGS"):
        raise SystemExit("amendment 5, item 3: every run with the default thread setting; unset XLA_FLAGS")
    config = configs.get("detection_test")
    _, reported = study.conditions(config, args.cache, "synthetic")
    stride8 = next(c for c in reported if c.name == "synthetic_stride8")
    chosen = {arm: settings_for(args.out, stride8, arm) for arm in ARMS}
    condition = study.with_steps(stride8, STEPS, NAME)
    store = RunStore(args.out / "records" / NAME)
    order = planned(chosen)
    for run in order:  # one run at a time, so the order is the pre-registered one
        study.run_phase([[run]], condition, store, phase="reported")
    remaining = sum(not store.has(run.key) for run in order)
    print(f"{remaining} planned runs missing" if remaining else "every planned run recorded")
    return {"remaining": remaining}


if __name__ == "__main__":
    main()
