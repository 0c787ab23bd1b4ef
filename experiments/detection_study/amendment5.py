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
runs). It prints only how many runs remain: no test AP is read while the runs go (item 3). Once
every planned run exists it analyses, once (items 4-9): ``amendment5.{json,md}`` and
``curves_amendment5.png``. ``--analyse-only`` analyses the complete seeds there are without
training (a cut-off analysis, item 11, to ``amendment5_cutoff.*``).

The analysis, as pre-registered, on the seeds with every arm at 1600, 6400 and 12800 steps:

* levelled off per arm (final validation AP, 6400 to 12800 steps, upper end of the 95 % t-interval
  at most 0.005, one-sided); per contrast "at the plateau" if both of its arms levelled off;
* primary: the three contrasts in test AP at 12800 steps, Holm over the three, amendment 1's labels
  (intervals only under 7 seeds);
* collapsed runs (final validation AP below half of the curve's best) per arm and schedule, and the
  planned sensitivity without seeds in which an arm involved collapsed (descriptive);
* holds or changes from 1600 to 12800 steps: amendment 4's rule, and beside it the variant that
  asks for the same sign only where the 1600-step interval excludes 0 (proposed after amendment 4);
* secondary: the contrasts at 6400 steps and their change to 12800; each arm's test AP at 1600,
  3200, 6400 and 12800 steps; the validation curves at the four schedules.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence

from experiments.common import stats
from experiments.common.records import device_info, provenance
from experiments.common.store import RunStore, json_default
from experiments.detection_study import plots, power, report, study
from experiments.detection_study.amendment4 import (
    HOLD,
    LEVEL,
    MIN_SEEDS,
    SEEDS,
    curve_summary,
    holds,
    levelled,
    record_provenance,
    stride8_settings,
    write_pair,
)
from experiments.detection_study.amendment4 import NAMES as A4_NAMES
from experiments.detection_study.fetch_data import default_cache
from experiments.detection_study.long_schedule import ARMS, CONTRASTS
from experiments.detection_study.train import Run

STEPS = 12800
SHORTER = 6400  # amendment 4's longer schedule, the shorter leg here (item 2)
NAME = f"amendment5_steps{STEPS}"
EXPLORATORY_GAIN = 1.6  # item 12: ``ciou_l1`` at the pilot's second-best gain, at 6400 steps
EXPLORATORY_NAME = f"amendment5_ciou_l1_gain{EXPLORATORY_GAIN}_steps{SHORTER}"
SCHEDULES = {1600: "synthetic_stride8", 3200: A4_NAMES[3200], SHORTER: A4_NAMES[SHORTER], STEPS: NAME}
COLLAPSE = 0.5  # item 7: collapsed if the final validation AP is below this fraction of the curve's best


def planned(chosen: Mapping[str, Mapping], seeds: Sequence[int] = SEEDS) -> list[Run]:
    """The primary runs in the pre-registered order: seed, then arm (item 3)."""
    return [Run(arm, seed, chosen[arm]["lr"], chosen[arm]["gain"]) for seed in seeds for arm in ARMS]


def exploratory(chosen: Mapping[str, Mapping], seeds: Sequence[int] = SEEDS) -> list[Run]:
    """Item 12's runs: ``ciou_l1`` at its confirmatory learning rate and gain 1.6, seed by seed."""
    return [Run("ciou_l1", seed, chosen["ciou_l1"]["lr"], EXPLORATORY_GAIN) for seed in seeds]


def exploratory_analysis(gain_16: Sequence[dict], shorter: Sequence[dict]) -> dict:
    """Item 12 (exploratory, unadjusted): at 6400 steps, ``ciou_l1`` at gain 1.6 minus its
    confirmatory runs (amendment 4), and ``ciou_dfl`` minus ``ciou_l1`` at gain 1.6, on the seeds
    both have; paired t-intervals and exact sign-flip p-values."""
    new = {r["seed"]: _zero_nan(r["test"]["AP"]) for r in gain_16}
    old = {r["seed"]: _zero_nan(r["test"]["AP"]) for r in shorter if r["arm"] == "ciou_l1"}
    dfl = {r["seed"]: _zero_nan(r["test"]["AP"]) for r in shorter if r["arm"] == "ciou_dfl"}
    seeds = sorted(set(new) & set(old) & set(dfl))
    out = {"seeds": seeds}
    for name, d in (
        ("ciou_l1 gain 1.6 - confirmatory gain", [new[s] - old[s] for s in seeds]),
        ("ciou_dfl - ciou_l1 gain 1.6", [dfl[s] - new[s] for s in seeds]),
    ):
        out[name] = {**stats.t_interval(d), "p_sign_flip": stats.sign_flip_p(d)}
    return out


def exploratory_markdown(result: Mapping) -> str:
    lines = [
        f"Amendment 5, item 12 (exploratory, planned before the runs; unadjusted): `ciou_l1` at gain "
        f"{EXPLORATORY_GAIN} at {SHORTER} steps, seeds {', '.join(map(str, result['seeds']))}, against "
        "amendment 4's runs of the same seeds; test AP:",
        "",
        "| difference | mean [95% t-CI] | p (sign flip) |",
        "|---|---|---|",
    ]
    for name, r in result.items():
        if name != "seeds":
            lines.append(f"| {name} | {_cell(r)} | {r['p_sign_flip']:.3g} |")
    return "\n".join(lines) + "\n"


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


def _zero_nan(x: float) -> float:
    # As in the study: a diverged run (NaN metric) detects nothing and counts as 0, not as missing.
    return 0.0 if math.isnan(x) else float(x)


def holds_variant(
    change: Sequence[float], base: Sequence[float], long_mean: float, *, hold: float = HOLD
) -> dict:
    """Item 8's variant (proposed after amendment 4 was seen; reported beside the unchanged rule):
    as :func:`amendment4.holds`, but the same sign is asked for only where the contrast's 1600-step
    95 % t-interval (``base``, per seed) excludes 0."""
    b = stats.t_interval(base)
    if b["lo"] > 0 or b["hi"] < 0:
        return holds(change, b["mean"], long_mean, hold=hold)
    return holds(change, 1.0, 1.0, hold=hold)  # no sign to keep: only the band decides


def analyse(runs: Mapping[int, Sequence[dict]], labels_1600: Mapping[str, str] | None = None) -> dict:
    """The pre-registered analysis (module docstring) of run records (``arm``, ``seed``, ``test``,
    ``curve``) by schedule: ``runs[1600]``, ``runs[3200]``, ``runs[6400]``, ``runs[12800]``.
    ``labels_1600``: the 1600-step family's labels (32 seeds), for the reading across schedules."""
    by = {steps: {(r["arm"], r["seed"]): r for r in rs} for steps, rs in runs.items()}
    seeds = sorted(
        s
        for s in {r["seed"] for r in runs[STEPS]}
        if all((a, s) in by[k] for k in (1600, SHORTER, STEPS) for a in ARMS)
    )

    def value(steps: int, arm: str, s: int) -> float:
        return _zero_nan(by[steps][arm, s]["test"]["AP"])

    def final_val(steps: int, arm: str, s: int) -> float:
        return _zero_nan(by[steps][arm, s]["curve"][-1]["val_AP"])

    def diffs(steps: int, a: str, b: str, keep: Sequence[int]) -> list[float]:
        return [value(steps, a, s) - value(steps, b, s) for s in keep]

    fell = {
        steps: {
            arm: [s for s in seeds if (arm, s) in by[steps] and collapsed(by[steps][arm, s]["curve"])]
            for arm in ARMS
        }
        for steps in runs
    }
    # Item 7: the sensitivity leaves out a seed in which an arm involved collapsed at 1600, 6400 or 12800.
    bad = {arm: sorted({s for k in (1600, SHORTER, STEPS) for s in fell[k][arm]}) for arm in ARMS}

    def gains(arm: str, keep: Sequence[int]) -> list[float]:
        return [final_val(STEPS, arm, s) - final_val(SHORTER, arm, s) for s in keep]

    out: dict = {"seeds": seeds, "tested": len(seeds) >= MIN_SEEDS}
    out["levelled"] = {arm: levelled(gains(arm, seeds)) for arm in ARMS}
    out["all_levelled"] = all(v["levelled"] for v in out["levelled"].values())
    out["at_plateau"] = {
        f"{a}-{b}": out["levelled"][a]["levelled"] and out["levelled"][b]["levelled"] for a, b in CONTRASTS
    }
    primary = report.paired_tests(
        {a: {s: {"AP": value(STEPS, a, s)} for s in seeds} for a in ARMS}, CONTRASTS
    )
    if out["tested"]:
        for r in primary.values():
            r["verdict"] = power.verdict(r, r["p_sign_flip_holm"])
    out["primary"] = primary
    out["holds"], out["holds_variant"], out["secondary"] = {}, {}, {}
    for a, b in CONTRASTS:
        name = f"{a}-{b}"
        base, long = diffs(1600, a, b, seeds), diffs(STEPS, a, b, seeds)
        change = [x - y for x, y in zip(long, base, strict=True)]
        out["holds"][name] = holds(change, stats.t_interval(base)["mean"], primary[name]["mean"])
        out["holds_variant"][name] = holds_variant(change, base, primary[name]["mean"])
        shorter = diffs(SHORTER, a, b, seeds)
        later = [x - y for x, y in zip(long, shorter, strict=True)]
        out["secondary"][name] = {
            "at_6400": {**stats.t_interval(shorter), "p_sign_flip": stats.sign_flip_p(shorter)},
            "change_6400_to_12800": {**stats.t_interval(later), "p_sign_flip": stats.sign_flip_p(later)},
        }
    out["arms"] = {
        arm: {
            steps: stats.t_interval([value(steps, arm, s) for s in seeds if (arm, s) in by[steps]])
            for steps in sorted(runs)
        }
        for arm in ARMS
    }
    out["collapsed"] = {arm: {steps: fell[steps][arm] for steps in sorted(runs)} for arm in ARMS}
    # Item 7's planned sensitivity: descriptive, no Holm family.
    sensitivity: dict = {"levelled": {}, "contrasts": {}}
    for arm in ARMS:
        keep = [s for s in seeds if s not in bad[arm]]
        sensitivity["levelled"][arm] = {**levelled(gains(arm, keep)), "seeds_left_out": bad[arm]}
    for a, b in CONTRASTS:
        drop = sorted(set(bad[a]) | set(bad[b]))
        keep = [s for s in seeds if s not in drop]
        d = diffs(STEPS, a, b, keep)
        sensitivity["contrasts"][f"{a}-{b}"] = {
            **stats.t_interval(d),
            "p_sign_flip": stats.sign_flip_p(d),
            "seeds_left_out": drop,
            "at_plateau": sensitivity["levelled"][a]["levelled"] and sensitivity["levelled"][b]["levelled"],
        }
    out["collapse_sensitivity"] = sensitivity
    if labels_1600 is not None:
        differ = {
            name: {"at_1600": labels_1600.get(name), "at_12800": r.get("verdict")}
            for name, r in primary.items()
            if labels_1600.get(name) != r.get("verdict")
        }
        every = all(h["label"] == "holds" for h in out["holds"].values())
        out["all_schedules"] = {
            "holds_at_all": bool(out["tested"] and every and not differ),
            "every_contrast_holds": every,
            "labels_differ": differ,
        }
    return out


def _cell(r: Mapping) -> str:
    return f"{r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}]"


def markdown(result: Mapping) -> str:
    a = result["analysis"]
    seeds = a["seeds"]
    lines = []
    if not result["complete"]:
        lines += [
            f"**Cut off** (item 11): {result['remaining']} planned runs missing; complete seeds only.",
            "",
        ]
    lines += [
        f"Amendment 5 (pre-registered): seeds {', '.join(map(str, seeds))} ({len(seeds)}), stride 8, "
        f"{SHORTER} (amendment 4's records) and {STEPS} steps; code at `{result['commit']}`.",
        "",
        f"Levelled off (item 5: per-seed gain in final validation AP from {SHORTER} to {STEPS} steps, "
        f"levelled if the interval's upper end is at most {LEVEL}; one-sided):",
        "",
        "| arm | gain [95% t-CI] | levelled off | collapsed runs (1600 / 3200 / 6400 / 12800) |",
        "|---|---|---|---|",
    ]
    for arm, r in a["levelled"].items():
        fell = " / ".join(str(len(a["collapsed"][arm].get(k, []))) for k in sorted(a["collapsed"][arm]))
        lines.append(f"| {arm} | {_cell(r)} | {'yes' if r['levelled'] else 'not shown'} | {fell} |")
    lines += [
        "",
        f"Primary (item 6), test AP at {STEPS} steps; Holm over the three on exact sign-flip p-values"
        + ("" if a["tested"] else f"; fewer than {MIN_SEEDS} seeds, so intervals only")
        + ":",
        "",
        "| contrast | where | mean [95% t-CI] | p (sign flip) | Holm p | label "
        "| change from 1600 [95% t-CI] | holds (item 8) | variant |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in a["primary"].items():
        h, v = a["holds"][name], a["holds_variant"][name]
        where = "at the plateau" if a["at_plateau"][name] else f"at {STEPS} steps"
        lines.append(
            f"| {name} | {where} | {_cell(r)} | {r['p_sign_flip']:.3g} | {r['p_sign_flip_holm']:.3g} "
            f"| {r.get('verdict', '(not tested)')} | {_cell(h)} | {h['label']} | {v['label']} |"
        )
    lines += [
        "",
        "The variant (item 8, proposed after amendment 4 was seen) asks for the same sign only where the "
        "1600-step interval excludes 0; the pre-registered reading is the column before it.",
        "",
        "Collapse sensitivity (item 7; descriptive, no Holm family): without the seeds in which an arm "
        "involved collapsed at 1600, 6400 or 12800 steps:",
        "",
        "| contrast | seeds left out | mean [95% t-CI] | p (sign flip) | both arms levelled |",
        "|---|---|---|---|---|",
    ]
    for name, r in a["collapse_sensitivity"]["contrasts"].items():
        left = ", ".join(map(str, r["seeds_left_out"])) or "none"
        lines.append(
            f"| {name} | {left} | {_cell(r)} | {r['p_sign_flip']:.3g} "
            f"| {'yes' if r['at_plateau'] else 'no'} |"
        )
    lines += [
        "",
        f"Secondary (item 9; unadjusted): the contrasts at {SHORTER} steps and their change to {STEPS}; "
        "test AP per arm:",
        "",
        f"| contrast | at {SHORTER} steps (p) | change {SHORTER} to {STEPS} (p) |",
        "|---|---|---|",
    ]
    for name, r in a["secondary"].items():
        x, y = r["at_6400"], r["change_6400_to_12800"]
        lines.append(
            f"| {name} | {_cell(x)} ({x['p_sign_flip']:.3g}) | {_cell(y)} ({y['p_sign_flip']:.3g}) |"
        )
    schedules = sorted(next(iter(a["arms"].values())))
    lines += [
        "",
        "| arm | " + " | ".join(f"{k} steps" for k in schedules) + " |",
        "|---" * (1 + len(schedules)) + "|",
    ]
    for arm, r in a["arms"].items():
        lines.append(f"| {arm} | " + " | ".join(f"{r[k]['mean']:.4f}" for k in schedules) + " |")
    if "all_schedules" in a:
        b = a["all_schedules"]
        lines += ["", f"Holds at all schedules (item 8): {'yes' if b['holds_at_all'] else 'no'}."]
        for name, d in b["labels_differ"].items():
            lines.append(
                f"- {name}: '{d['at_1600']}' at 1600 steps (32 seeds), '{d['at_12800']}' at {STEPS} steps "
                f"({len(seeds)} seeds); with fewer seeds a label can change by the interval's width alone."
            )
    return "\n".join(lines) + "\n"


def analysis_files(out: pathlib.Path, complete: bool) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """``amendment5.{json,md}`` and ``curves_amendment5.png`` when every planned run exists; a cut-off
    analysis (item 11) goes to ``amendment5_cutoff.*``."""
    stem = "amendment5" if complete else "amendment5_cutoff"
    return out / f"{stem}.json", out / f"{stem}.md", out / f"curves_{stem}.png"


def write_analysis(
    out: pathlib.Path, runs: Mapping[int, Sequence[dict]], remaining: int, commit: str
) -> dict:
    """Analyse ``runs`` (records by schedule) and write ``amendment5.{json,md}`` and the figure (or
    the cut-off files when ``remaining`` runs are missing)."""
    verdicts_path = out / "verdicts.json"  # the 1600-step family's labels (32 seeds)
    labels = (
        {k: v["verdict"] for k, v in json.loads(verdicts_path.read_text()).items()}
        if verdicts_path.exists()
        else None
    )
    analysis = analyse(runs, labels)
    result = {
        "device": device_info(),
        "commit": commit,
        "complete": remaining == 0,
        "remaining": remaining,
        "analysis": analysis,
        "record_provenance": record_provenance(runs[STEPS]),
    }
    json_path, md_path, png_path = analysis_files(out, result["complete"])
    json_path.write_text(json.dumps(result, indent=1, default=json_default) + "\n")
    md_path.write_text(markdown(result))
    seeds = analysis["seeds"]
    plots.schedule_curves(
        {steps: curve_summary(runs[steps], seeds) for steps in SCHEDULES},
        ARMS,
        png_path,
        f"synthetic, stride 8, amendment 5: validation AP, mean over {len(seeds)} seeds (min-max band)",
    )
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="the detection test's results folder")
    p.add_argument("--cache", type=pathlib.Path, default=default_cache())
    p.add_argument(
        "--plan", action="store_true", help="write the expected half-widths (item 10); train nothing"
    )
    p.add_argument(
        "--analyse-only",
        action="store_true",
        help="train nothing; analyse the complete seeds there are (with runs missing: the cut-off "
        "analysis of item 11, written to amendment5_cutoff.*)",
    )
    args = p.parse_args(argv)
    commit = provenance().get("commit", "unknown")  # the code this process loaded, asked at its start
    if args.plan:
        result = plan(args.out)
        write_pair(args.out, "amendment5_plan", result, plan_markdown(result))
        print(plan_markdown(result))
        return result
    if not args.analyse_only and os.environ.get("XLA_FLAGS"):
        raise SystemExit("amendment 5, item 3: every run with the default thread setting; unset XLA_FLAGS")
    stride8, chosen = stride8_settings(args.out, args.cache)
    condition = study.with_steps(stride8, STEPS, NAME)
    store = RunStore(args.out / "records" / NAME)
    order = planned(chosen)
    if not args.analyse_only:
        for run in order:  # one run at a time, so the order is the pre-registered one
            study.run_phase([[run]], condition, store, phase="reported")
    remaining = sum(not store.has(run.key) for run in order)
    if remaining and not args.analyse_only:
        print(f"{remaining} planned runs missing: no analysis (item 13)")
        return {"remaining": remaining}
    runs = {}
    for steps, folder in SCHEDULES.items():
        kept = RunStore(args.out / "records" / folder)
        runs[steps] = [kept.read(run.key) for run in order if kept.has(run.key)]
    done = analysis_files(args.out, remaining == 0)[0]
    if done.exists() and remaining == 0:  # item 13: the analysis runs once
        print(f"{done.name} exists: the pre-registered analysis is not run again")
        result = json.loads(done.read_text())
    else:
        result = write_analysis(args.out, runs, remaining, commit)
        print(markdown(result))
    if args.analyse_only or remaining:
        return result
    # Item 12, after the primary runs and their analysis: the first thing dropped if time runs short.
    extra = RunStore(args.out / "records" / EXPLORATORY_NAME)
    for run in exploratory(chosen):
        study.run_phase(
            [[run]], study.with_steps(stride8, SHORTER, EXPLORATORY_NAME), extra, phase="reported"
        )
    gain_16 = [extra.read(run.key) for run in exploratory(chosen)]
    explored = exploratory_analysis(gain_16, runs[SHORTER])
    (args.out / "amendment5_exploratory.json").write_text(json.dumps(explored, indent=1) + "\n")
    (args.out / "amendment5_exploratory.md").write_text(exploratory_markdown(explored))
    print(exploratory_markdown(explored))
    return {**result, "exploratory": explored}


if __name__ == "__main__":
    main()
