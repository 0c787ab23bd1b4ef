"""The descriptive figures the detection test's page quotes beside its committed tables.

    python -m experiments.detection_study.page_figures --out results/detection_test

The page's intervals, p-values and labels come from the pre-registered analyses (``verdicts``,
``secondary``, ``amendment4``, ...). Around them the page describes: how many seeds are positive,
how much an arm gained between two schedules, how far the learning rate had decayed at a step,
which runs collapsed. Those figures were first worked out by hand; this script computes each of
them from the committed records and results files, so that no number on the page is computed by
hand. It reads test AP that those files already hold and trains nothing.

Writes ``page_figures.{json,md}``: per figure its value, what it is and the files it reads.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from experiments.common import stats
from experiments.common.store import RunStore
from experiments.detection_study.amendment4 import write_pair
from experiments.detection_study.amendment5 import collapsed

CONTRASTS = ("ciou_dfl-ciou_dist_l1", "ciou_dfl-ciou_l1", "ciou_dfl-ciou")
HYPOTHESIS = dict(zip(CONTRASTS, ("H1", "H2", "H3"), strict=True))
ARMS = ("ciou", "ciou_l1", "ciou_dist_l1", "ciou_dfl")  # the four arms of the longer schedules
MARGIN = 0.01  # amendment 1's margin
FAILED = 0.1  # the pilot runs at 2e-2 end below 0.03 or above 0.25: nothing in between
WARMUP = 0.05  # the trainer's warmup fraction (``train.TrainConfig.warmup``)


# ---------------------------------------------------------------------------------------------
# Small pure helpers (tested against closed forms and NumPy in tests/test_detection_page_figures.py)


def by_seed(runs: Sequence[Mapping], arm: str, metric: str = "AP") -> dict[int, float]:
    """Test ``metric`` of ``arm``'s reported runs by seed."""
    return {
        r["seed"]: r["test"][metric]
        for r in runs
        if r["arm"] == arm and r.get("phase", "reported") == "reported"
    }


def paired(runs: Sequence[Mapping], contrast: str, seeds: Sequence[int] | None = None) -> np.ndarray:
    """Per-seed differences ``a - b`` of test AP for ``contrast = "a-b"``, on the seeds both arms
    have (or on ``seeds``), in seed order."""
    a, b = contrast.split("-")
    ya, yb = by_seed(runs, a), by_seed(runs, b)
    common = sorted(set(ya) & set(yb) if seeds is None else seeds)
    return np.array([ya[s] - yb[s] for s in common], np.float64)


def arm_gain(long: Sequence[Mapping], short: Sequence[Mapping], arm: str, seeds: Sequence[int]) -> float:
    """Mean test AP of ``arm`` on ``seeds`` in ``long`` minus the same in ``short``."""
    a, b = by_seed(long, arm), by_seed(short, arm)
    return float(np.mean([a[s] for s in seeds]) - np.mean([b[s] for s in seeds]))


def half_width(interval: Mapping[str, float]) -> float:
    """Half the width of a ``{"lo", "hi"}`` interval."""
    return (interval["hi"] - interval["lo"]) / 2


def unit_rate(step: float, steps: int, warmup: float = WARMUP) -> float:
    """The trainer's learning rate at ``step`` as a fraction of its peak: linear warmup over
    ``max(1, int(warmup * steps))`` steps, then a cosine to 0 at ``steps`` (closed form of
    ``train.unit_schedule``)."""
    w = max(1, int(warmup * steps))
    if step < w:
        return step / w
    t = min(step, steps) - w
    return 0.5 * (1 + math.cos(math.pi * t / (steps - w)))


def tail_mean_rate(steps: int, fraction: float = 0.2, warmup: float = WARMUP) -> float:
    """Mean fraction of the peak learning rate over the last ``fraction`` of the steps."""
    first = steps - round(fraction * steps)
    return float(np.mean([unit_rate(s, steps, warmup) for s in range(first, steps)]))


def final_over_peak(curve: Sequence[Mapping]) -> float:
    """Final validation AP over the largest on the curve (NaN evaluations count as 0)."""
    ap = [0.0 if math.isnan(c["val_AP"]) else c["val_AP"] for c in curve]
    return ap[-1] / max(ap) if max(ap) > 0 else math.nan


def at_step(curve: Sequence[Mapping], step: int) -> Mapping:
    """The curve's evaluation at ``step``."""
    found = [c for c in curve if c["step"] == step]
    if not found:
        raise KeyError(f"no evaluation at step {step}")
    return found[0]


def deepest_dip(curve: Sequence[Mapping]) -> dict:
    """The lowest validation AP (NaN as 0) as a fraction of the best before it on the curve, and its
    step: a fall that the curve later recovers from, which the collapse rule (final against best)
    does not see."""
    val = [0.0 if math.isnan(c["val_AP"]) else c["val_AP"] for c in curve]
    best, low, at = 0.0, 1.0, None
    for c, v in zip(curve, val, strict=True):
        if best > 0 and v / best < low:
            low, at = v / best, c["step"]
        best = max(best, v)
    return {"fraction_of_best_so_far": low, "step": at, "final_over_peak": final_over_peak(curve)}


def collapse_point(curve: Sequence[Mapping]) -> dict:
    """Where a collapsed curve fell: its best validation AP (NaN as 0) and step, the first later
    evaluation below half of it, the training loss at the evaluations before and at that one, and the
    last evaluation's validation AP and training loss."""
    val = [0.0 if math.isnan(c["val_AP"]) else c["val_AP"] for c in curve]
    best = int(np.argmax(val))
    fall = next(k for k in range(best, len(val)) if val[k] < val[best] / 2)
    return {
        "best_val_AP": val[best],
        "best_step": curve[best]["step"],
        "fell_at_step": curve[fall]["step"],
        "val_AP_before_and_at": [val[fall - 1], val[fall]],
        "train_loss_before_and_at": [curve[fall - 1]["train"]["loss"], curve[fall]["train"]["loss"]],
        "final_val_AP": val[-1],
        "final_train_loss": curve[-1]["train"]["loss"],
    }


# ---------------------------------------------------------------------------------------------
# The figures


def _load(out: pathlib.Path, name: str) -> dict:
    return json.loads((out / name).read_text())


def _records(out: pathlib.Path, folder: str, phases: Sequence[str] = ("reported",)) -> list[dict]:
    store = RunStore(out / "records" / folder)
    found = [store.read(p.stem) for p in sorted((out / "records" / folder).glob("*.json"))]
    return [r for r in found if r.get("phase") in phases]


def _entry(value, what: str, source: str) -> dict:
    return {"value": value, "what": what, "source": source}


def primary_figures(out: pathlib.Path) -> dict:
    synthetic = _load(out, "results_synthetic.json")["synthetic"]
    runs = synthetic["conditions"]["8"]["runs"]
    tests = synthetic["tests"]["synthetic_stride8"]
    src = "results_synthetic.json"
    fig = {}
    for c in CONTRASTS:
        d = paired(runs, c)
        fig[f"positive_seeds_{HYPOTHESIS[c]}_1600"] = _entry(
            [int((d > 0).sum()), len(d)], f"{HYPOTHESIS[c]} ({c}) at 1600 steps: seeds positive, of", src
        )
    fig["H2_lower_end_minus_margin_1600"] = _entry(
        tests["ciou_dfl-ciou_l1"]["lo"] - MARGIN, "H2's interval lower end minus the 0.01 margin", src
    )
    fig["H1_over_H3_1600"] = _entry(
        tests["ciou_dfl-ciou_dist_l1"]["mean"] / tests["ciou_dfl-ciou"]["mean"],
        "H1's mean over H3's mean at 1600 steps",
        src,
    )
    # Amendment 3 expected stride 4's half-widths from stride 8's seed SD at 16 seeds.
    stride4 = _load(out, "secondary.json")["synthetic_stride4"]
    fig["stride4_half_widths"] = _entry(
        {c: half_width(stride4[c]) for c in CONTRASTS},
        "stride 4 (16 seeds): half-widths reached",
        "secondary.json",
    )
    fig["stride4_expected_from_stride8_sd"] = _entry(
        {c: stats.expected_half_width(tests[c]["sd"], 16) for c in CONTRASTS},
        "expected half-width at 16 seeds with stride 8's paired SD",
        src,
    )
    fig["stride4_reached_over_expected"] = _entry(
        {
            c: fig["stride4_half_widths"]["value"][c] / fig["stride4_expected_from_stride8_sd"]["value"][c]
            for c in CONTRASTS
        },
        "stride 4: half-width reached over expected",
        "secondary.json, results_synthetic.json",
    )
    # At 2e-2 the pilot's runs either failed early or trained: the figure shows the gap between them.
    lr02 = [p for p in synthetic["pilot"] if p["lr"] == 0.02 and p["arm"] in ARMS]
    low = [p for p in lr02 if p["final_val_AP"] < FAILED]
    # A run whose logged loss, and foreground count, end at exactly 0 degenerated (no foreground
    # assigned): its "loss" is not a trained value, so it is counted apart.
    empty = [p for p in low if p["curve"][-1]["train"]["foreground"] == 0]
    flat = [p for p in low if p not in empty]
    fig["pilot_lr0.02_failed"] = _entry(
        {
            "runs": len(lr02),
            f"final_val_AP_below_{FAILED}": len(low),
            "their_highest_final_val_AP": max(p["final_val_AP"] for p in low),
            "the_others_lowest_final_val_AP": min(p["final_val_AP"] for p in lr02 if p not in low),
            "their_arms": dict(Counter(p["arm"] for p in low)),
            "ending_with_no_foreground": len(empty),
            "the_rest_final_train_loss": sorted(round(p["curve"][-1]["train"]["loss"], 2) for p in flat),
            "the_rest_final_val_AP": sorted(round(p["final_val_AP"], 4) for p in flat),
            "collapsed_by_amendment5_rule": sum(collapsed(p["curve"]) for p in lr02),
        },
        "stride-8 pilot at learning rate 2e-2, four arms (800 steps)",
        src,
    )
    fig["pilot_lr0.02_l1_final_val_AP"] = _entry(
        [p["final_val_AP"] for p in synthetic["pilot"] if p["lr"] == 0.02 and p["arm"] == "l1"],
        "stride-8 pilot at learning rate 2e-2, the l1 arm: final validation AP per seed",
        src,
    )
    pilot = _records(out, "synthetic_stride8", phases=("pilot", "pilot_edge"))
    fig["pilot_collapsed_by_lr"] = _entry(
        {
            str(lr): [
                sum(collapsed(p["curve"]) for p in pilot if p["lr"] == lr),
                sum(p["lr"] == lr for p in pilot),
            ]
            for lr in sorted({p["lr"] for p in pilot})
        },
        "stride-8 pilot (every arm, grid and edge points): runs collapsed by amendment 5's rule, of runs, "
        "per learning rate",
        "records/synthetic_stride8/",
    )
    return fig


def crowns_figures(out: pathlib.Path) -> dict:
    real = _load(out, "results_real.json")["real"]
    src = "results_real.json"
    scores = real["pilot_scores"]
    fig = {
        "crowns_ciou_dfl_pilot_margin": _entry(
            scores["ciou_dfl"]["0.003,1.6"] - scores["ciou_dfl"]["0.01,0.4"],
            "crowns pilot, ciou_dfl: validation AP at (3e-3, 1.6) minus at (1e-2, 0.4)",
            src,
        ),
        "crowns_ciou_l1_pilot_lead": _entry(
            scores["ciou_l1"]["0.01,0.4"] - scores["ciou_l1"]["0.01,1.6"],
            "crowns pilot, ciou_l1: validation AP at (1e-2, 0.4) minus at (1e-2, 1.6)",
            src,
        ),
    }
    runs = [r for r in real["runs"] if r.get("phase") == "reported"]
    ranked = sorted(runs, key=lambda r: r["test"]["AP"])
    fig["crowns_lowest_test_AP"] = _entry(
        {
            "key": ranked[0]["key"],
            "AP": ranked[0]["test"]["AP"],
            "next_lowest": ranked[1]["test"]["AP"],
            "runs": len(runs),
        },
        "crowns: the run with the lowest test AP",
        src,
    )
    seed = ranked[0]["seed"]
    fig["crowns_lowest_seed_other_arms"] = _entry(
        {r["arm"]: r["test"]["AP"] for r in runs if r["seed"] == seed and r is not ranked[0]},
        "crowns: the other arms' test AP on that seed",
        src,
    )
    fig["crowns_lowest_final_val_AP"] = _entry(
        ranked[0]["curve"][-1]["val_AP"], "crowns: that run's final validation AP", src
    )
    blocks = real["data"]["blocks"]
    fig["crowns_test_split"] = _entry(
        {k: sum(site.get("test", {}).get(k, 0) for site in blocks.values()) for k in ("blocks", "crowns")},
        "crowns: test blocks and crowns",
        src,
    )
    fig["crowns_record_commits"] = _entry(
        dict(Counter(r["provenance"]["commit"][:7] for r in runs)), "crowns: records per commit", src
    )
    fig["crowns_tail_mean_rate"] = _entry(
        tail_mean_rate(real["train_config"]["steps"], warmup=real["train_config"]["warmup"]),
        "mean learning rate over the last 20 % of the steps, fraction of the peak",
        "train.py's schedule",
    )
    reached = _load(out, "secondary.json")["real"]
    expected = _load(out, "power_real.json")["expected_half_width"]
    fig["crowns_half_width_reached_over_expected"] = _entry(
        {c: half_width(reached[c]) / expected[c] for c in CONTRASTS},
        "crowns: half-width reached over expected",
        "secondary.json, power_real.json",
    )
    # Stride 8's gains scaled to the crowns' AP level: the comparator's AP there over here.
    synthetic = _load(out, "results_synthetic.json")["synthetic"]
    tests8, runs8 = synthetic["tests"]["synthetic_stride8"], synthetic["conditions"]["8"]["runs"]
    relative = {}
    for c in CONTRASTS:
        b = c.split("-")[1]
        scale = np.mean(list(by_seed(runs, b).values())) / np.mean(list(by_seed(runs8, b).values()))
        relative[c] = {
            "scaled_gain": tests8[c]["mean"] * scale,
            "crowns_interval": [reached[c]["lo"], reached[c]["hi"]],
        }
    fig["stride8_gain_at_crowns_scale"] = _entry(
        relative,
        "stride 8's mean gain times (comparator's crowns test AP / its stride-8 test AP), beside the "
        "crowns' t-interval",
        "results_synthetic.json, results_real.json, secondary.json",
    )
    return fig


def amendment4_figures(out: pathlib.Path) -> dict:
    synthetic = _load(out, "results_synthetic.json")["synthetic"]
    base = synthetic["conditions"]["8"]["runs"]
    short, long = _records(out, "amendment4_steps3200"), _records(out, "amendment4_steps6400")
    seeds = sorted(by_seed(long, "ciou"))
    src = "results_synthetic.json, records/amendment4_steps{3200,6400}/"
    fig = {
        "a4_test_gain_3200_to_6400": _entry(
            {a: arm_gain(long, short, a, seeds) for a in ARMS},
            "each arm's mean test AP, 6400 minus 3200 steps",
            src,
        ),
        "a4_test_gain_1600_to_6400": _entry(
            {a: arm_gain(long, base, a, seeds) for a in ARMS},
            "each arm's mean test AP, 6400 minus 1600 steps",
            src,
        ),
    }
    without = [s for s in seeds if s != 107]
    fig["a4_test_gain_1600_to_6400_without_107"] = _entry(
        {a: arm_gain(long, base, a, without) for a in ARMS},
        "the same without seed 107 (exploratory)",
        src,
    )
    h1 = stats.t_interval(paired(base, "ciou_dfl-ciou_dist_l1", seeds))
    fig["a4_H1_1600_on_its_seeds"] = _entry(
        {k: h1[k] for k in ("mean", "lo", "hi", "n")}, "H1 at 1600 steps on seeds 100-107", src
    )
    h3_1600 = float(paired(base, "ciou_dfl-ciou", without).mean())
    h3_6400 = float(paired(long, "ciou_dfl-ciou", without).mean())
    fig["a4_H3_without_107"] = _entry(
        {"1600": h3_1600, "6400": h3_6400, "shrink_fraction": (h3_1600 - h3_6400) / h3_1600},
        "H3's mean on seeds 100-106 at 1600 and 6400 steps and the fraction it shrank",
        src,
    )
    a4 = _load(out, "amendment4.json")["analysis"]
    a4_without = _load(out, "amendment4_without_107.json")["analysis"]
    fig["a4_half_widths_6400"] = _entry(
        {
            **{c: half_width(a4["primary"][c]) for c in CONTRASTS[:2]},
            "ciou_dfl-ciou": half_width(a4["primary"]["ciou_dfl-ciou"]),
            "ciou_dfl-ciou without 107": half_width(a4_without["primary"]["ciou_dfl-ciou"]),
        },
        "amendment 4: half-widths reached at 6400 steps",
        "amendment4.json, amendment4_without_107.json",
    )
    # The collapse rule on every reported stride-8 run at 1600, 3200 and 6400 steps.
    every = {
        "1600 (confirmatory)": base,
        "3200 (amendment 4)": short,
        "6400 (amendment 4)": long,
        "3200 (exploratory, twice the schedule)": _records(out, "synthetic_stride8_steps3200"),
    }
    fell, rest = {}, []
    for group, runs in every.items():
        for r in runs:
            if collapsed(r["curve"]):
                fell[f"{r['arm']} seed {r['seed']} at {group}"] = final_over_peak(r["curve"])
            else:
                rest.append(final_over_peak(r["curve"]))
    fig["collapse_rule_stride8"] = _entry(
        {
            "runs": {group: len(runs) for group, runs in every.items()},
            "collapsed": fell,
            "lowest_final_over_peak_of_the_rest": min(rest),
        },
        "amendment 5's collapse rule on every reported stride-8 run before amendment 5 (the pilot: "
        "pilot_collapsed_by_lr)",
        src + ", records/synthetic_stride8_steps3200/",
    )
    run = next(r for r in long if r["arm"] == "ciou" and r["seed"] == 107)
    curve = run["curve"]
    fig["a4_collapsed_run_curve"] = _entry(
        {
            "val_AP": {s: at_step(curve, s)["val_AP"] for s in (1900, 1950, 2000)},
            "max_val_AP_after_2000": max(c["val_AP"] for c in curve if c["step"] >= 2000),
            "train_loss": {s: at_step(curve, s)["train"]["loss"] for s in (1900, 1950)},
            "mean_train_loss_after_2000": float(
                np.mean([c["train"]["loss"] for c in curve if c["step"] >= 2000])
            ),
            "test_AP": run["test"]["AP"],
        },
        "amendment 4's collapsed run (ciou, seed 107, 6400 steps)",
        "records/amendment4_steps6400/",
    )
    fig["rate_at_step_1950"] = _entry(
        {str(steps): unit_rate(1950, steps) for steps in (3200, 6400)},
        "learning rate at step 1950, fraction of the peak",
        "train.py's schedule",
    )
    long_schedule = _load(out, "long_schedule.json")["analysis"]["contrasts"]
    fig["long_schedule_change_half_widths"] = _entry(
        {c: half_width(long_schedule[c]["change"]) for c in CONTRASTS},
        "exploratory twice-the-schedule: half-widths of the change intervals",
        "long_schedule.json",
    )
    reproduce = _load(out, "reproduce.json")["runs"]["ciou_dist_l1_seed104_lr0.01_gain0.4"]["test_AP"]
    fig["reproduce_test_AP_difference"] = _entry(
        reproduce["record"] - reproduce["rerun"],
        "ciou_dist_l1 seed 104: record minus rerun, test AP",
        "reproduce.json",
    )
    return fig


def amendment5_figures(out: pathlib.Path) -> dict:
    """Amendment 5's descriptive figures; empty until its pre-registered analysis
    (``amendment5.json``) exists, so that nothing here reads its records before that analysis."""
    if not (out / "amendment5.json").exists():
        return {}
    analysis = _load(out, "amendment5.json")["analysis"]
    seeds = analysis["seeds"]
    synthetic = _load(out, "results_synthetic.json")["synthetic"]
    base = synthetic["conditions"]["8"]["runs"]
    mid, long = _records(out, "amendment4_steps6400"), _records(out, "amendment5_steps12800")
    src = "amendment5.json, results_synthetic.json, records/amendment{4_steps6400,5_steps12800}/"
    fig = {
        "a5_test_gain_6400_to_12800": _entry(
            {a: arm_gain(long, mid, a, seeds) for a in ARMS},
            "each arm's mean test AP on the analysed seeds, 12800 minus 6400 steps",
            src,
        ),
        "a5_test_gain_1600_to_12800": _entry(
            {a: arm_gain(long, base, a, seeds) for a in ARMS},
            "each arm's mean test AP on the analysed seeds, 12800 minus 1600 steps",
            src,
        ),
        "a5_positive_seeds_12800": _entry(
            {
                HYPOTHESIS[c]: [int((d > 0).sum()), len(d)]
                for c in CONTRASTS
                for d in [paired(long, c, seeds)]
            },
            "seeds with a positive difference at 12800 steps, of the analysed seeds",
            src,
        ),
    }
    fell, rest = {}, []
    for r in long:
        if collapsed(r["curve"]):
            fell[f"{r['arm']} seed {r['seed']}"] = final_over_peak(r["curve"])
        else:
            rest.append(final_over_peak(r["curve"]))
    fig["a5_collapse_rule_12800"] = _entry(
        {"runs": len(long), "collapsed": fell, "lowest_final_over_peak_of_the_rest": min(rest)},
        "amendment 5's collapse rule on its 12800-step runs",
        "records/amendment5_steps12800/",
    )
    fig["a5_collapsed_runs"] = _entry(
        {f"{r['arm']} seed {r['seed']}": collapse_point(r["curve"]) for r in long if collapsed(r["curve"])},
        "each collapsed 12800-step run: its best validation AP and step, the first later evaluation "
        "below half of it, the training loss at the evaluations either side, and at the end",
        "records/amendment5_steps12800/",
    )
    dips = {f"{r['arm']} seed {r['seed']}": deepest_dip(r["curve"]) for r in long}
    fig["a5_falls_below_half"] = _entry(
        {k: v for k, v in dips.items() if v["fraction_of_best_so_far"] < 0.5},
        "every 12800-step run whose validation AP fell below half of its best so far at some "
        "evaluation, collapsed (final below half its best) or recovered",
        "records/amendment5_steps12800/",
    )
    fig["a5_deepest_dip_per_arm"] = _entry(
        {
            a: min(v["fraction_of_best_so_far"] for k, v in dips.items() if k.split(" seed")[0] == a)
            for a in ARMS
        },
        "per arm, the lowest validation AP of its 12800-step runs as a fraction of the best so far",
        "records/amendment5_steps12800/",
    )
    plan = _load(out, "amendment5_plan.json")["contrasts"]
    fig["a5_half_widths_12800"] = _entry(
        {
            HYPOTHESIS[c]: {
                "expected": plan[c]["expected_half_width"],
                "reached": half_width(analysis["primary"][c]),
                "reached_without_collapsed_seeds": half_width(
                    analysis["collapse_sensitivity"]["contrasts"][c]
                ),
            }
            for c in CONTRASTS
        },
        "amendment 5, item 10: expected half-widths (amendment5_plan.json) and those reached at 12800 steps",
        "amendment5_plan.json, amendment5.json",
    )
    fig["a5_rate_at_collapse"] = _entry(
        {k: unit_rate(v["fell_at_step"], 12800) for k, v in fig["a5_collapsed_runs"]["value"].items()},
        "the learning rate where each collapsed 12800-step run fell, fraction of the peak",
        "train.py's schedule",
    )
    seconds = [r["compile_seconds"] + r["train_seconds"] + r["eval_seconds"] for r in long]
    fig["a5_run_seconds"] = _entry(
        {"min": min(seconds), "max": max(seconds), "median": float(np.median(seconds))},
        "wall seconds per 12800-step run (compile, training, evaluation; 2-core development CPU)",
        "records/amendment5_steps12800/",
    )
    commits = Counter(r["provenance"]["commit"][:7] for r in long)
    fig["a5_record_commits"] = _entry(dict(sorted(commits.items())), "commits the records name", src)
    return fig


def figures(out: pathlib.Path) -> dict:
    return {
        **primary_figures(out),
        **crowns_figures(out),
        **amendment4_figures(out),
        **amendment5_figures(out),
    }


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_format(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def markdown(result: Mapping) -> str:
    lines = [
        "Descriptive figures the page quotes (`python -m experiments.detection_study.page_figures`; "
        "computed from the committed files named; no new test AP):",
        "",
        "| figure | value | what | from |",
        "|---|---|---|---|",
    ]
    for key, e in result.items():
        lines.append(f"| `{key}` | {_format(e['value'])} | {e['what']} | {e['source']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="the detection test's results folder")
    args = p.parse_args(argv)
    result = figures(args.out)
    write_pair(args.out, "page_figures", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
