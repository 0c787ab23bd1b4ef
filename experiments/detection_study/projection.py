"""Exploratory (amendment 5, item 11): the schedule and budget at which each arm would level off.

    python -m experiments.detection_study.projection --out results/detection_test

Run after amendment 5's analysis, for the arms it finds not levelled off. Written, with its tests,
before any amendment-5 record was read; the method is fixed here:

* per arm, the seeds analysed (every arm at 1600, 3200, 6400 and 12800 steps), less those in which
  this arm has a collapsed run (item 7's rule) at any of the four schedules;
* per doubling (1600 to 3200, 3200 to 6400, 6400 to 12800 steps) the per-seed gain in final
  validation AP, its mean and the upper end of its paired 95 % t-interval (amendment 4's
  ``levelled``);
* the gain's ratio per doubling: the least-squares slope of log(mean gain) against the doubling's
  index, exponentiated (no projection if a mean gain is not positive, or if the ratio is 1 or more);
* the doublings still needed: the fewest ``n`` with ``upper * ratio ** n <= LEVEL`` for the last
  doubling's upper end (the interval is assumed to shrink at the mean's rate), "no projection" past
  ``MAX_DOUBLINGS``; the schedule is ``12800 * 2 ** n`` steps;
* the budget: seconds per training step measured on the 12800-step records (this CPU), times that
  schedule's steps, for one run and for the 32 runs (4 arms x 8 seeds) of one more amendment at it.

Three points make the fit: it is a rough guide to the order of magnitude, not a result.
Writes ``amendment5_projection.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from experiments.detection_study.amendment4 import LEVEL, levelled, write_pair
from experiments.detection_study.amendment5 import ARMS, SCHEDULES, STEPS, _reported, collapsed

ORDER = tuple(sorted(SCHEDULES))  # 1600, 3200, 6400, 12800
MAX_DOUBLINGS = 10  # 12800 x 2 ** 10 steps, about 6 days of this CPU per run: "no projection" beyond


def ratio_per_doubling(mean_gains: Sequence[float]) -> float | None:
    """``exp`` of the least-squares slope of ``log(gain)`` on the doubling's index; ``None`` if a
    gain is not positive (a geometric decay cannot fit it)."""
    g = np.asarray(mean_gains, np.float64)
    if len(g) < 2 or (g <= 0).any():
        return None
    k = np.arange(len(g), dtype=np.float64)
    slope = np.polyfit(k, np.log(g), 1)[0]
    return float(np.exp(slope))


def doublings_needed(
    upper: float, ratio: float | None, level: float = LEVEL, most: int = MAX_DOUBLINGS
) -> int | None:
    """Fewest ``n >= 0`` with ``upper * ratio ** n <= level``; ``None`` when it takes more than
    ``most`` doublings or never gets there."""
    if upper <= level:
        return 0
    if ratio is None or not 0 < ratio < 1:
        return None
    n = math.ceil(math.log(level / upper) / math.log(ratio) - 1e-12)
    return n if n <= most else None


def project_arm(final_val: Mapping[int, Mapping[int, float]], level: float = LEVEL) -> dict:
    """``final_val[steps][seed]``: final validation AP at each of :data:`ORDER` on the same seeds."""
    seeds = sorted(set.intersection(*(set(final_val[s]) for s in ORDER)))
    doublings = []
    for short, long in itertools.pairwise(ORDER):
        gains = [final_val[long][s] - final_val[short][s] for s in seeds]
        r = levelled(gains, level=level)
        doublings.append({"from": short, "to": long, **{k: r[k] for k in ("mean", "lo", "hi", "levelled")}})
    ratio = ratio_per_doubling([d["mean"] for d in doublings])
    n = doublings_needed(doublings[-1]["hi"], ratio, level)
    return {
        "seeds": seeds,
        "doublings": doublings,
        "ratio": ratio,
        "more_doublings": n,
        "steps": None if n is None else ORDER[-1] * 2**n,
    }


def project(
    runs: Mapping[int, Mapping[str, Mapping[int, dict]]], seconds_per_step: float, level: float = LEVEL
) -> dict:
    """``runs[steps][arm][seed]``: the records. Per arm, the projection on its kept seeds."""
    analysed = sorted(set.intersection(*(set(runs[s][a]) for s in ORDER for a in ARMS)))
    result = {"level": level, "seconds_per_step": seconds_per_step, "analysed_seeds": analysed, "arms": {}}
    for arm in ARMS:
        dropped = sorted({s for s in analysed for t in ORDER if collapsed(runs[t][arm][s]["curve"])})
        kept = [s for s in analysed if s not in dropped]
        final_val = {t: {s: _zero_nan(runs[t][arm][s]["curve"][-1]["val_AP"]) for s in kept} for t in ORDER}
        arm_result = {"dropped_collapsed": dropped, **project_arm(final_val, level)}
        steps = arm_result["steps"]
        arm_result["run_hours"] = None if steps is None else steps * seconds_per_step / 3600
        arm_result["amendment_hours"] = (
            None if steps is None else 4 * len(analysed) * steps * seconds_per_step / 3600
        )
        result["arms"][arm] = arm_result
    return result


def _zero_nan(x: float) -> float:
    return 0.0 if math.isnan(x) else float(x)


def markdown(result: Mapping) -> str:
    lines = [
        "Exploratory projection (amendment 5, item 11; method fixed in `projection.py` before the "
        "12800-step records were read): the gain in final validation AP per doubling of the schedule, "
        "the ratio by which it shrinks, and the schedule at which the upper end of its 95 % interval "
        f"would reach {result['level']} if it kept shrinking at that ratio. Seconds per step on this "
        f"CPU (12800-step records): {result['seconds_per_step']:.4f}.",
        "",
        "| arm | seeds | 1600→3200 | 3200→6400 | 6400→12800 | ratio | more doublings | steps | "
        "hours per run | hours for 32 runs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, r in result["arms"].items():
        cells = [f"{d['mean']:+.4f} (≤ {d['hi']:+.4f})" for d in r["doublings"]]
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        more = "no projection" if r["more_doublings"] is None else str(r["more_doublings"])
        steps = "n/a" if r["steps"] is None else str(r["steps"])
        hours = "n/a" if r["run_hours"] is None else f"{r['run_hours']:.1f}"
        total = "n/a" if r["amendment_hours"] is None else f"{r['amendment_hours']:.0f}"
        seeds = f"{len(r['seeds'])}" + (
            f" (without {r['dropped_collapsed']})" if r["dropped_collapsed"] else ""
        )
        lines.append(
            f"| {arm} | {seeds} | {' | '.join(cells)} | {ratio} | {more} | {steps} | {hours} | {total} |"
        )
    lines += [
        "",
        "Each gain cell: mean over seeds (upper end of its 95 % t-interval). Three points make each "
        "fit: an order of magnitude, not a result.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="the detection test's results folder")
    args = p.parse_args(argv)
    runs = {
        steps: {arm: _reported(args.out, folder, arm) for arm in ARMS} for steps, folder in SCHEDULES.items()
    }
    longest = [r for arm in ARMS for r in runs[STEPS][arm].values()]
    if not longest:
        raise SystemExit(f"no {STEPS}-step records yet")
    seconds_per_step = float(np.mean([r["train_seconds"] / STEPS for r in longest]))
    result = project(runs, seconds_per_step)
    write_pair(args.out, "amendment5_projection", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
