"""Exploratory (amendment 5, item 11): the schedule and budget at which each arm would level off.

    python -m experiments.detection_study.projection --out results/detection_test

Run after amendment 5's analysis. Written, with its tests, before any amendment-5 record was read;
the method is fixed here:

* per arm, the seeds analysed (every arm at 1600, 3200, 6400 and 12800 steps), less those in which
  this arm has a collapsed run (item 7's rule) at any of the four schedules (3200 included, unlike
  item 7's sensitivity, because every doubling's gain enters the fit);
* per doubling (1600 to 3200, 3200 to 6400, 6400 to 12800 steps) the per-seed gain in final
  validation AP, its mean and its paired 95 % t-interval (amendment 4's ``levelled``). Neighbouring
  gains share a schedule's value, so their noise is negatively correlated;
* the gain's ratio per doubling: ``(last mean gain / first mean gain) ** (1 / (doublings - 1))``, the
  endpoint ratio (the middle gain only has to be positive: no projection if any mean gain is not);
* the doublings still needed, two ways: the fewest ``n`` with ``mean * ratio ** n <= LEVEL`` (the
  mean alone: a lower bound), and the fewest with ``mean * ratio ** n + half_width <= LEVEL``, the
  criterion itself with the last doubling's half-width held fixed (seed noise need not shrink with
  the schedule; unreachable if the half-width alone is ``LEVEL`` or more). "No projection" past
  ``MAX_DOUBLINGS``. The schedule is ``12800 * 2 ** n`` steps;
* the budget of one more amendment that tests it, as amendments 4 and 5 did: every arm and analysed
  seed at that schedule, plus at half of it when that leg does not exist yet (``n >= 2``), at the
  wall seconds per step of the 12800-step records (compile, training and evaluation; this CPU).

Beside each arm, amendment 5's own levelled-off verdict (on every analysed seed) when
``amendment5.json`` exists: the projection's seeds can differ from it. Three gains make each fit: an
order of magnitude, not a result. Writes ``amendment5_projection.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from experiments.detection_study.amendment4 import LEVEL, levelled, write_pair
from experiments.detection_study.amendment5 import ARMS, SCHEDULES, STEPS, _reported, _zero_nan, collapsed

ORDER = tuple(sorted(SCHEDULES))  # 1600, 3200, 6400, 12800
# 12800 x 2 ** 10 steps is about a week of this CPU per run: "no projection" beyond.
MAX_DOUBLINGS = 10


def ratio_per_doubling(mean_gains: Sequence[float]) -> float | None:
    """The endpoint ratio ``(g[-1] / g[0]) ** (1 / (len(g) - 1))``; ``None`` if a gain is not
    positive and finite (a geometric decay cannot fit it) or there are fewer than two."""
    g = np.asarray(mean_gains, np.float64)
    if len(g) < 2 or not np.isfinite(g).all() or (g <= 0).any():
        return None
    return float((g[-1] / g[0]) ** (1 / (len(g) - 1)))


def doublings_needed(
    mean: float, ratio: float | None, half_width: float = 0.0, level: float = LEVEL, most: int = MAX_DOUBLINGS
) -> int | None:
    """Fewest ``n >= 0`` with ``mean * ratio ** n + half_width <= level``; ``None`` when an input is
    not finite, when it takes more than ``most`` doublings, or when it never gets there."""
    if not (math.isfinite(mean) and math.isfinite(half_width)):
        return None
    if mean + half_width <= level:
        return 0
    if ratio is None or not 0 < ratio < 1 or half_width >= level or mean <= 0:
        return None
    n = math.ceil(math.log((level - half_width) / mean) / math.log(ratio) - 1e-12)
    return n if n <= most else None


def project_arm(final_val: Mapping[int, Mapping[int, float]], level: float = LEVEL) -> dict:
    """``final_val[steps][seed]``: final validation AP at each of :data:`ORDER` on the same seeds."""
    seeds = sorted(set.intersection(*(set(final_val[s]) for s in ORDER)))
    doublings = []
    for short, long in itertools.pairwise(ORDER):
        gains = [final_val[long][s] - final_val[short][s] for s in seeds]
        r = levelled(gains, level=level)
        doublings.append({"from": short, "to": long, **{k: r[k] for k in ("mean", "lo", "hi", "levelled")}})
    last = doublings[-1]
    ratio = ratio_per_doubling([d["mean"] for d in doublings])
    half = (last["hi"] - last["lo"]) / 2
    by_mean = doublings_needed(last["mean"], ratio, 0.0, level)
    by_upper = doublings_needed(last["mean"], ratio, half, level)
    return {
        "seeds": seeds,
        "doublings": doublings,
        "levelled_on_these_seeds": bool(last["levelled"]),
        "ratio": ratio,
        "half_width": half,
        "more_doublings_mean": by_mean,
        "more_doublings": by_upper,
        "steps": None if by_upper is None else ORDER[-1] * 2**by_upper,
    }


def amendment_hours(more: int | None, arms: int, seeds: int, seconds_per_step: float) -> float | None:
    """Hours of one more amendment that tests ``more`` further doublings: every arm and seed at
    ``12800 * 2 ** more`` steps, plus the half-length leg when it was not run (``more >= 2``)."""
    if more is None:
        return None
    if more == 0:
        return 0.0
    steps = ORDER[-1] * 2**more
    legs = steps + (steps // 2 if more >= 2 else 0)
    return arms * seeds * legs * seconds_per_step / 3600


def project(
    runs: Mapping[int, Mapping[str, Mapping[int, dict]]],
    seconds_per_step: float,
    level: float = LEVEL,
    verdicts: Mapping[str, bool] | None = None,
) -> dict:
    """``runs[steps][arm][seed]``: the records. Per arm, the projection on its kept seeds;
    ``verdicts``: amendment 5's levelled-off verdict per arm, shown beside it."""
    analysed = sorted(set.intersection(*(set(runs[s][a]) for s in ORDER for a in ARMS)))
    result = {
        "level": level,
        "seconds_per_step": seconds_per_step,
        "analysed_seeds": analysed,
        "arms": {},
    }
    for arm in ARMS:
        dropped = sorted({s for s in analysed for t in ORDER if collapsed(runs[t][arm][s]["curve"])})
        kept = [s for s in analysed if s not in dropped]
        final_val = {t: {s: _zero_nan(runs[t][arm][s]["curve"][-1]["val_AP"]) for s in kept} for t in ORDER}
        r = {"dropped_collapsed": dropped, **project_arm(final_val, level)}
        more = r["more_doublings"]
        r["run_hours"] = None if r["steps"] is None else r["steps"] * seconds_per_step / 3600
        r["amendment_hours"] = amendment_hours(more, len(ARMS), len(analysed), seconds_per_step)
        r["amendment5_levelled"] = None if verdicts is None else verdicts.get(arm)
        result["arms"][arm] = r
    return result


def _n(x) -> str:
    return "no projection" if x is None else str(x)


def markdown(result: Mapping) -> str:
    seeds = len(result["analysed_seeds"])
    lines = [
        "Exploratory projection (amendment 5, item 11; method fixed in `projection.py` before the "
        "12800-step records were read): the gain in final validation AP per doubling of the schedule, "
        "the ratio by which it shrank from the first doubling to the last, and the further doublings "
        f"after which the gain would meet the criterion (upper end of its 95 % interval at most "
        f"{result['level']}) if it kept shrinking at that ratio: by the mean alone (a lower bound) and "
        "with the last half-width held fixed. Wall seconds per step on this CPU (12800-step records): "
        f"{result['seconds_per_step']:.4f}.",
        "",
        "| arm | seeds | 1600→3200 | 3200→6400 | 6400→12800 | levelled (these seeds; amendment 5) | "
        "ratio | more doublings (mean; with half-width) | steps | hours per run | "
        f"hours, 4 arms x {seeds} seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, r in result["arms"].items():
        cells = [f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]" for d in r["doublings"]]
        verdict = "n/a" if r["amendment5_levelled"] is None else ("yes" if r["amendment5_levelled"] else "no")
        level = f"{'yes' if r['levelled_on_these_seeds'] else 'no'}; {verdict}"
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        more = f"{_n(r['more_doublings_mean'])}; {_n(r['more_doublings'])}"
        steps = "n/a" if r["steps"] is None else str(r["steps"])
        hours = "n/a" if r["run_hours"] is None else f"{r['run_hours']:.1f}"
        total = "n/a" if r["amendment_hours"] is None else f"{r['amendment_hours']:.0f}"
        kept = f"{len(r['seeds'])}" + (
            f" (without {r['dropped_collapsed']})" if r["dropped_collapsed"] else ""
        )
        lines.append(
            f"| {arm} | {kept} | {' | '.join(cells)} | {level} | {ratio} | {more} | {steps} | {hours} "
            f"| {total} |"
        )
    lines += [
        "",
        "Gain cells: mean over the arm's seeds [95 % t-interval]. The last two columns price the "
        "schedule of the doublings with the half-width held fixed (every arm and seed at it, plus the "
        "half-length leg when it was not run). Three gains make each fit: an order of magnitude, not a "
        "result.",
    ]
    return "\n".join(lines) + "\n"


def seconds_per_step(records: Sequence[Mapping], steps: int = STEPS) -> float:
    """Mean wall seconds per training step: compile, training and evaluation over ``steps``."""
    return float(
        np.mean([(r["compile_seconds"] + r["train_seconds"] + r["eval_seconds"]) / steps for r in records])
    )


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
    analysis = args.out / "amendment5.json"
    verdicts = None
    if analysis.exists():
        levelled_off = json.loads(analysis.read_text())["analysis"]["levelled"]
        verdicts = {arm: bool(v["levelled"]) for arm, v in levelled_off.items()}
    result = project(runs, seconds_per_step(longest), verdicts=verdicts)
    write_pair(args.out, "amendment5_projection", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
