"""Amendment 4 of the detection test's pre-registration: the stride-8 contrasts at a longer schedule.

    python -m experiments.detection_study.amendment4 --plan --out results/detection_test
    python -m experiments.detection_study.amendment4 --out results/detection_test

``--plan`` (before the first run; trains nothing) writes the expected half-widths at 8 seeds
(``amendment4_plan.{json,md}``): per contrast the larger of two paired SDs of test AP, that of the
exploratory 3200-step records of seeds 100-103 (``records/synthetic_stride8_steps3200/``) and that
of the 32 confirmatory 1600-step seeds (``records/synthetic_stride8/``).

Without ``--plan``: trains what is missing, in the pre-registered order (seed by seed; within a
seed the arms ``ciou``, ``ciou_l1``, ``ciou_dist_l1``, ``ciou_dfl``, each at 3200 and then at 6400
steps, at its confirmatory learning rate and gain), one record per run written when it finishes
(``records/amendment4_steps3200/``, ``records/amendment4_steps6400/``; a restart skips finished
runs). Only once every planned run exists does it analyse (``amendment4.{json,md}``); until then it
reports how many runs remain and reads no test AP. ``--analyse-only`` analyses the complete seeds
there are, for the tests and for a cut-off run (stated as such in the output).

The analysis, as pre-registered (amendment 4, items 4-7), on the seeds with every run at 1600
(the confirmatory records), 3200 and 6400 steps:

* levelled off: per arm, the per-seed gain in final validation AP from 3200 to 6400 steps; the
  arm has levelled off if the upper end of the gain's 95 % t-interval is at most 0.005;
* primary: the three contrasts in test AP at 6400 steps, paired t-intervals, exact sign-flip p,
  Holm over the three, amendment 1's labels (``power.verdict``); with fewer than 7 seeds, intervals
  only;
* holds or changes: per contrast the per-seed change from 1600 to 6400 steps: *holds* if its
  interval lies inside (-0.01, 0.01) and the 6400-step mean has the 1600-step mean's sign,
  *changed* if the interval excludes 0, else *cannot tell*;
* secondary: the contrasts at 3200 steps and their change from 3200 to 6400; each arm's test AP at
  the three schedules.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from experiments.common import stats
from experiments.common.records import device_info, provenance
from experiments.common.store import RunStore, json_default
from experiments.detection_study import configs, plots, power, report, study
from experiments.detection_study.clipping import settings_for
from experiments.detection_study.fetch_data import default_cache
from experiments.detection_study.long_schedule import ARMS, CONTRASTS
from experiments.detection_study.train import Run

SEEDS = tuple(range(100, 108))
SHORT, LONG = 3200, 6400
LEVEL = 0.005  # item 4: the largest gain from 3200 to 6400 steps still called levelled off
HOLD = 0.01  # item 6: a contrast holds if its change from 1600 to 6400 steps lies inside (-HOLD, HOLD)
MIN_SEEDS = 7  # amendment 3, item 4: below this Holm over three cannot reach 0.05
NAMES = {SHORT: f"amendment4_steps{SHORT}", LONG: f"amendment4_steps{LONG}"}


def planned(chosen: Mapping[str, Mapping], seeds: Sequence[int] = SEEDS) -> list[tuple[Run, int]]:
    """``(run, steps)`` in the pre-registered order: seed, then arm, then 3200 before 6400 steps."""
    return [
        (Run(arm, seed, chosen[arm]["lr"], chosen[arm]["gain"]), steps)
        for seed in seeds
        for arm in ARMS
        for steps in (SHORT, LONG)
    ]


def levelled(gains: Sequence[float], *, level: float = LEVEL) -> dict:
    """Item 4: the gains' t-interval and whether its upper end is at most ``level``."""
    r = stats.t_interval(gains)
    return {**r, "levelled": bool(r["hi"] <= level)}  # NaN (under 2 seeds) compares False


def holds(change: Sequence[float], base_mean: float, long_mean: float, *, hold: float = HOLD) -> dict:
    """Item 6: ``holds`` / ``changed`` / ``cannot tell`` from the per-seed change of a contrast
    (6400 minus 1600 steps); ``base_mean`` and ``long_mean``: the contrast's means at 1600 and 6400
    steps over the same seeds. ``holds`` is checked first, so a change whose interval lies inside
    (-``hold``, ``hold``) holds even if it excludes 0 (a small, real change of the same sign)."""
    r = {**stats.t_interval(change), "p_sign_flip": stats.sign_flip_p(change)}
    if -hold < r["lo"] and r["hi"] < hold and math.copysign(1, long_mean) == math.copysign(1, base_mean):
        label = "holds"
    elif r["lo"] > 0 or r["hi"] < 0:
        label = "changed"
    else:
        label = "cannot tell"
    return {**r, "label": label}


def _zero_nan(x: float) -> float:
    # As in the study: a diverged run (NaN metric) detects nothing and counts as 0, not as missing.
    return 0.0 if math.isnan(x) else float(x)


def _final_val(run: dict) -> float:
    return _zero_nan(run["curve"][-1]["val_AP"])


def analyse(base: Sequence[dict], short: Sequence[dict], long: Sequence[dict]) -> dict:
    """The pre-registered analysis (module docstring) of run records (``arm``, ``seed``, ``test``,
    ``curve``) at 1600 (``base``), 3200 (``short``) and 6400 steps (``long``)."""
    by = {
        name: {(r["arm"], r["seed"]): r for r in runs}
        for name, runs in (("base", base), ("short", short), ("long", long))
    }
    seeds = sorted(s for s in {r["seed"] for r in long} if all((a, s) in by[n] for n in by for a in ARMS))

    def value(name: str, arm: str, s: int) -> float:
        return _zero_nan(by[name][arm, s]["test"]["AP"])

    def ap(name: str, arm: str) -> dict[int, dict]:
        return {s: {"AP": value(name, arm, s)} for s in seeds}

    def diffs(name: str, a: str, b: str) -> list[float]:
        return [value(name, a, s) - value(name, b, s) for s in seeds]

    out: dict = {"seeds": seeds, "tested": len(seeds) >= MIN_SEEDS, "levelled": {}, "holds": {}}
    for arm in ARMS:
        out["levelled"][arm] = levelled(
            [_final_val(by["long"][arm, s]) - _final_val(by["short"][arm, s]) for s in seeds]
        )
    out["all_levelled"] = all(v["levelled"] for v in out["levelled"].values())
    primary = report.paired_tests({a: ap("long", a) for a in ARMS}, CONTRASTS)
    if out["tested"]:
        for r in primary.values():
            r["verdict"] = power.verdict(r, r["p_sign_flip_holm"])
    out["primary"] = primary
    out["secondary"] = {}
    for a, b in CONTRASTS:
        name = f"{a}-{b}"
        d = {k: diffs(k, a, b) for k in by}
        out["holds"][name] = holds(
            [x - y for x, y in zip(d["long"], d["base"], strict=True)],
            stats.t_interval(d["base"])["mean"],
            primary[name]["mean"],
        )
        later = [x - y for x, y in zip(d["long"], d["short"], strict=True)]
        out["secondary"][name] = {
            "at_3200": {**stats.t_interval(d["short"]), "p_sign_flip": stats.sign_flip_p(d["short"])},
            "change_3200_to_6400": {**stats.t_interval(later), "p_sign_flip": stats.sign_flip_p(later)},
        }
    out["arms"] = {arm: {k: stats.t_interval([value(k, arm, s) for s in seeds]) for k in by} for arm in ARMS}
    return out


def curve_summary(runs: Sequence[dict], seeds: Sequence[int]) -> dict[str, dict[str, np.ndarray]]:
    """Per arm, the validation curve of the given seeds: ``step``, and ``mean``, ``min`` and ``max``
    over the seeds at each step (a diverged run's NaN counted as 0, as in the analysis). Every seed's
    run of an arm must have the same validation steps."""
    out = {}
    for arm in ARMS:
        mine = sorted((r for r in runs if r["arm"] == arm and r["seed"] in seeds), key=lambda r: r["seed"])
        if [r["seed"] for r in mine] != sorted(seeds):
            raise ValueError(f"{arm}: runs for seeds {[r['seed'] for r in mine]}, expected {sorted(seeds)}")
        steps = [[c["step"] for c in r["curve"]] for r in mine]
        if any(s != steps[0] for s in steps):
            raise ValueError(f"{arm}: the seeds' validation steps differ")
        ap = np.array([[_zero_nan(c["val_AP"]) for c in r["curve"]] for r in mine], np.float64)
        out[arm] = {"step": np.array(steps[0]), "mean": ap.mean(0), "min": ap.min(0), "max": ap.max(0)}
    return out


def both(analysis: Mapping, labels_1600: Mapping[str, str]) -> dict:
    """Item 6's combined reading: the stride-8 answer holds at both schedules if every contrast
    *holds* and each has the same label in the 1600-step family (32 seeds, ``verdicts.json``) and
    in the 6400-step one. Lists the contrasts whose labels differ: with 8 seeds against 32 a label
    can differ through the interval's width alone, which the page must say where it happens."""
    differ = {
        name: {"at_1600": labels_1600.get(name), "at_6400": r.get("verdict")}
        for name, r in analysis["primary"].items()
        if labels_1600.get(name) != r.get("verdict")
    }
    every_holds = all(h["label"] == "holds" for h in analysis["holds"].values())
    return {
        "holds_at_both": bool(analysis["tested"] and every_holds and not differ),
        "every_contrast_holds": every_holds,
        "labels_differ": differ,
    }


def record_provenance(runs: Sequence[dict]) -> dict:
    """The distinct provenance entries of the records (commit, uncommitted changes, ``XLA_FLAGS``,
    CPUs) with their counts, and whether they are mixed or any came from a dirty checkout."""
    seen: dict[str, dict] = {}
    for r in runs:
        p = {k: v for k, v in r.get("provenance", {}).items() if k != "data_sha256"}
        key = json.dumps(p, sort_keys=True)
        seen.setdefault(key, {**p, "runs": 0})["runs"] += 1
    entries = list(seen.values())
    return {
        "entries": entries,
        "mixed": len(entries) > 1,
        "dirty": any(e.get("uncommitted_changes", True) for e in entries),
        "xla_flags_set": any(e.get("xla_flags", "") for e in entries),
    }


def plan(out: pathlib.Path, seeds: int = len(SEEDS)) -> dict:
    """Item 8: the expected half-width of each contrast at ``seeds`` seeds from the larger of the two
    paired SDs (exploratory 3200-step records, confirmatory 1600-step records)."""
    rows = {}
    for a, b in CONTRASTS:
        sds = {}
        for name in ("synthetic_stride8_steps3200", "synthetic_stride8"):
            store = RunStore(out / "records" / name)
            values = {arm: {} for arm in (a, b)}
            for arm in (a, b):
                for path in sorted((out / "records" / name).glob(f"{arm}_seed*_lr*_gain*.json")):
                    record = store.read(path.stem)
                    if record.get("phase") == "reported":  # the pilot's records have no test AP
                        values[arm][record["seed"]] = record["test"]["AP"]
            common = sorted(set(values[a]) & set(values[b]))
            sds[name] = {"sd": power.paired_sd(values[a], values[b]), "seeds": common}
        if any(math.isnan(v["sd"]) for v in sds.values()):
            raise ValueError(f"{a}-{b}: fewer than 2 seeds in {sds}: item 8 needs both SDs")
        sd = max(v["sd"] for v in sds.values())
        rows[f"{a}-{b}"] = {**sds, "sd_used": sd, "expected_half_width": stats.expected_half_width(sd, seeds)}
    return {"seeds": seeds, "contrasts": rows}


def plan_markdown(result: Mapping) -> str:
    lines = [
        f"Amendment 4, item 8: expected half-widths of the 6400-step contrasts at {result['seeds']} seeds, "
        "from the larger of two paired SDs of test AP (written before the first run):",
        "",
        "| contrast | SD, 3200 steps (seeds) | SD, 1600 steps (seeds) | SD used | expected half-width |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["contrasts"].items():
        s, c = r["synthetic_stride8_steps3200"], r["synthetic_stride8"]
        flag = " (above 0.01)" if r["expected_half_width"] > 0.01 else ""
        lines.append(
            f"| {name} | {s['sd']:.4f} ({len(s['seeds'])}) | {c['sd']:.4f} ({len(c['seeds'])}) "
            f"| {r['sd_used']:.4f} | {r['expected_half_width']:.4f}{flag} |"
        )
    return "\n".join(lines) + "\n"


def _cell(r: Mapping) -> str:
    return f"{r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}]"


def markdown(result: Mapping) -> str:
    a = result["analysis"]
    seeds = a["seeds"]
    lines = []
    if not result["complete"]:
        lines += [f"**Cut off**: {result['remaining']} planned runs missing; complete seeds only.", ""]
    if result.get("excluded_seeds"):
        lines += [
            f"**Exploratory, not pre-registered**: seeds {', '.join(map(str, result['excluded_seeds']))} "
            "left out, chosen after the pre-registered analysis was seen. Its Holm p-values and labels "
            "apply the pre-registered rules to the remaining seeds and are descriptive: no test was "
            "planned on them.",
            "",
        ]
    kind = "exploratory sensitivity, not pre-registered" if result.get("excluded_seeds") else "pre-registered"
    lines += [
        f"Amendment 4 ({kind}): seeds {', '.join(map(str, seeds))} ({len(seeds)}), stride 8, "
        f"{SHORT} and {LONG} steps; code at `{result['commit']}`.",
        "",
        f"Levelled off (item 4: per-seed gain in final validation AP from {SHORT} to {LONG} steps, "
        f"levelled if the interval's upper end is at most {LEVEL}):",
        "",
        "| arm | gain [95% t-CI] | levelled off |",
        "|---|---|---|",
    ]
    lines += [
        f"| {arm} | {_cell(r)} | {'yes' if r['levelled'] else 'not shown'} |"
        for arm, r in a["levelled"].items()
    ]
    where = "at the plateau" if a["all_levelled"] else f"at {LONG} steps (not shown levelled off)"
    lines += [
        "",
        f"Primary (item 5), test AP {where}; Holm over the three on exact sign-flip p-values"
        + ("" if a["tested"] else f"; fewer than {MIN_SEEDS} seeds, so intervals only")
        + ":",
        "",
        "| contrast | mean [95% t-CI] | p (sign flip) | Holm p | label "
        "| change from 1600 [95% t-CI] | holds (item 6) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in a["primary"].items():
        h = a["holds"][name]
        lines.append(
            f"| {name} | {_cell(r)} | {r['p_sign_flip']:.3g} | {r['p_sign_flip_holm']:.3g} "
            f"| {r.get('verdict', '(not tested)')} | {_cell(h)} | {h['label']} |"
        )
    lines += [
        "",
        f"Secondary (item 7; unadjusted): the contrasts at {SHORT} steps and their change to {LONG}; "
        "test AP per arm:",
        "",
        f"| contrast | at {SHORT} steps (p) | change {SHORT} to {LONG} (p) |",
        "|---|---|---|",
    ]
    for name, r in a["secondary"].items():
        lines.append(
            f"| {name} | {_cell(r['at_3200'])} ({r['at_3200']['p_sign_flip']:.3g}) "
            f"| {_cell(r['change_3200_to_6400'])} ({r['change_3200_to_6400']['p_sign_flip']:.3g}) |"
        )
    lines += ["", f"| arm | 1600 steps | {SHORT} steps | {LONG} steps |", "|---|---|---|---|"]
    for arm, r in a["arms"].items():
        lines.append(
            f"| {arm} | {r['base']['mean']:.4f} | {r['short']['mean']:.4f} | {r['long']['mean']:.4f} |"
        )
    if "both_schedules" in result:
        b = result["both_schedules"]
        lines += ["", f"Holds at both schedules (item 6): {'yes' if b['holds_at_both'] else 'no'}."]
        for name, d in b["labels_differ"].items():
            lines.append(
                f"- {name}: '{d['at_1600']}' at 1600 steps (32 seeds), '{d['at_6400']}' at {LONG} steps "
                f"({len(seeds)} seeds); with fewer seeds a label can change by the interval's width alone."
            )
    if "record_provenance" in result:
        prov = result["record_provenance"]
        flags = [k for k in ("mixed", "dirty", "xla_flags_set") if prov[k]]
        lines += [
            "",
            "Records' provenance: "
            + "; ".join(
                f"{e.get('commit', '?')[:7]} x {e['runs']} (XLA_FLAGS '{e.get('xla_flags', '')}', "
                f"{e.get('cpus')} CPUs, uncommitted changes {e.get('uncommitted_changes')})"
                for e in prov["entries"]
            )
            + (f". Flags: {', '.join(flags)}." if flags else "."),
        ]
    return "\n".join(lines) + "\n"


def analysis_files(
    out: pathlib.Path, complete: bool, excluded: Sequence[int] = ()
) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """Where an analysis goes: ``amendment4.{json,md}`` and ``curves_amendment4.png`` only when every
    planned run exists and no seed is left out (item 9: analysed once, after the last record); a
    cut-off analysis goes to ``amendment4_cutoff.*``, an exploratory one with seeds left out to
    ``amendment4_without_<seeds>.*`` (each with its ``curves_`` figure)."""
    stem = "amendment4" if complete else "amendment4_cutoff"
    if excluded:
        stem += "_without_" + "_".join(map(str, sorted(excluded)))
    return out / f"{stem}.json", out / f"{stem}.md", out / f"curves_{stem}.png"


def write_pair(out: pathlib.Path, stem: str, result: Mapping, text: str) -> None:
    """``<stem>.json`` (the result) and ``<stem>.md`` (its table) under ``out``."""
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=json_default) + "\n")
    (out / f"{stem}.md").write_text(text)


def stride8_settings(out: pathlib.Path, cache: pathlib.Path):
    """The confirmatory stride-8 condition and each arm's confirmatory ``lr`` and ``gain``."""
    _, reported = study.conditions(configs.get("detection_test"), cache, "synthetic")
    stride8 = next(c for c in reported if c.name == "synthetic_stride8")
    return stride8, {arm: settings_for(out, stride8, arm) for arm in ARMS}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="the detection test's results folder")
    p.add_argument("--cache", type=pathlib.Path, default=default_cache())
    p.add_argument(
        "--plan", action="store_true", help="write the expected half-widths (item 8); train nothing"
    )
    p.add_argument(
        "--analyse-only",
        action="store_true",
        help="train nothing; analyse the complete seeds there are (with runs missing: a cut-off "
        "analysis, written to amendment4_cutoff.*, for when the budget ends the runs)",
    )
    p.add_argument(
        "--exclude-seeds",
        type=int,
        nargs="+",
        default=[],
        help="with --analyse-only: an exploratory sensitivity analysis without these seeds (not "
        "pre-registered), written to amendment4_without_<seeds>.*",
    )
    args = p.parse_args(argv)
    commit = provenance().get("commit", "unknown")  # the code this process loaded, asked at its start
    if args.plan:
        result = plan(args.out)
        write_pair(args.out, "amendment4_plan", result, plan_markdown(result))
        print(plan_markdown(result))
        return result
    if args.exclude_seeds and not args.analyse_only:
        raise SystemExit("--exclude-seeds is an exploratory analysis: use it with --analyse-only")
    if not args.analyse_only and os.environ.get("XLA_FLAGS"):
        raise SystemExit("amendment 4, item 2: every run with the default thread setting; unset XLA_FLAGS")
    stride8, chosen = stride8_settings(args.out, args.cache)
    condition = {steps: study.with_steps(stride8, steps, NAMES[steps]) for steps in (SHORT, LONG)}
    store = {steps: RunStore(args.out / "records" / NAMES[steps]) for steps in (SHORT, LONG)}
    order = planned(chosen)
    if not args.analyse_only:
        for run, steps in order:  # one run at a time, so the order is the pre-registered one
            study.run_phase([[run]], condition[steps], store[steps], phase="reported")
    remaining = sum(not store[steps].has(run.key) for run, steps in order)
    if remaining and not args.analyse_only:
        print(f"{remaining} planned runs missing: no analysis (item 9)")
        return {"remaining": remaining}
    kept = [(run, steps) for run, steps in order if run.seed not in args.exclude_seeds]
    base_store = RunStore(args.out / "records" / stride8.name)
    base = [base_store.read(run.key) for run, steps in kept if steps == SHORT and base_store.has(run.key)]
    runs = {
        steps: [store[steps].read(r.key) for r, s in kept if s == steps and store[steps].has(r.key)]
        for steps in store
    }
    analysis = analyse(base, runs[SHORT], runs[LONG])
    verdicts_path = args.out / "verdicts.json"  # the 1600-step family's labels (32 seeds)
    labels = (
        {k: v["verdict"] for k, v in json.loads(verdicts_path.read_text()).items()}
        if verdicts_path.exists()
        else {}
    )
    result = {
        "device": device_info(),
        "commit": commit,
        "complete": remaining == 0,
        "remaining": remaining,
        "excluded_seeds": sorted(args.exclude_seeds),
        "analysis": analysis,
        "both_schedules": both(analysis, labels),
        "record_provenance": record_provenance(runs[SHORT] + runs[LONG]),
    }
    json_path, md_path, png_path = analysis_files(args.out, result["complete"], args.exclude_seeds)
    json_path.write_text(json.dumps(result, indent=1, default=json_default) + "\n")
    md_path.write_text(markdown(result))
    seeds = analysis["seeds"]
    plots.schedule_curves(
        {
            1600: curve_summary(base, seeds),
            SHORT: curve_summary(runs[SHORT], seeds),
            LONG: curve_summary(runs[LONG], seeds),
        },
        ARMS,
        png_path,
        f"synthetic, stride 8, amendment 4: validation AP, mean over {len(seeds)} seeds (min-max band)"
        + (f"; exploratory, seeds {args.exclude_seeds} left out" if args.exclude_seeds else ""),
    )
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
