"""Tables, intervals and figures from the runs' records (and from the committed results files).

:func:`collect` gathers one data set's records into the results layout (pilot grid and choices,
runs, per-arm t-intervals, paired differences, the crowns' bootstrap, the synthetic resolution
cells) and adds ``tests``: for each condition, every declared pair (against the references,
and ``config.comparisons``) with its paired t-interval, t p-value, exact sign-flip p-value and
Holm's adjustment over the family. :func:`summary_markdown` writes the tables.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np

from experiments.common import stats
from experiments.common.store import RunStore

from . import evaluate as ev
from . import plots
from . import synthetic as syn
from .configs.default import StudyConfig
from .study import Run, describe_decision, grid, reported_seeds, seed_count

REAL_METRICS = ["AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AP_T1", "AP_T2", "AP_T3"]
SYN_METRICS = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"]
# Pairs beyond the references in the committed study's tables: DFL against the best scalar loss,
# and the variants against DFL. The detection test's exploratory decomposition of its contrasts
# (not pre-registered; a pair whose arms did not run is skipped): the distribution head with a
# plain L1 term against each scalar arm, and the scalar second term alone.
FURTHER_PAIRS = [
    ("ciou_dfl", "l1"),
    ("ciou_dfl_log", "ciou_dfl"),
    ("ciou_hl_gauss", "ciou_dfl"),
    ("ciou_dist_l1", "ciou"),
    ("ciou_dist_l1", "ciou_l1"),
    ("ciou_l1", "ciou"),
]


def _fmt(x: dict, digits: int = 3) -> str:
    if x is None or np.isnan(x["mean"]):
        return "n/a"
    return f"{x['mean']:.{digits}f} [{x['lo']:.{digits}f}, {x['hi']:.{digits}f}]"


def premise_summary(runs: list[dict]) -> dict:
    """Mean over seeds of the Spearman correlations, per arm and size group."""
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r["premise"] for r in runs if r["arm"] == arm]
        out[arm] = {
            group: {key: ev.nanmean([m[group][key] for m in mine]) for key in mine[0][group]}
            for group in mine[0]
        }
    return out


def summary_markdown(results: dict) -> str:
    lines = ["# Detection study: box-regression arms on NEON tree crowns and synthetic controls", ""]
    for name, res in results.items():
        if name in ("device", "config"):
            continue
        lines += [f"## {name}", ""]
        if res.get("skipped"):
            lines += [f"Skipped: {res['skipped']}", ""]
            continue
        gains = res.get("chosen_gain", {})
        lines += [
            "Chosen peak learning rates (pilot, final validation AP): "
            + ", ".join(
                f"{a} {lr:g}" + (f" (gain {gains[a]:g})" if gains.get(a) else "")
                for a, lr in res["chosen_lr"].items()
            ),
            "",
        ]
        lines += pilot_table(res["pilot"], res.get("pilot_extra", [])) + [""]
        if name.startswith("real"):
            if res.get("tuning"):  # the detection test's crowns leg: exploratory, its own pilot
                lines += [
                    "Secondary condition (exploratory): no verdicts; Holm within this condition only.",
                    "",
                    pilot_markdown(res),
                ]
            checks = res.get("data_sha256")
            if checks:
                lines += [
                    "Data read (SHA-256 of each file; mismatches with the pinned values: "
                    f"{', '.join(checks['mismatched']) or 'none'}): "
                    + ", ".join(f"`{k}` {(v or 'missing')[:16]}" for k, v in checks["files"].items()),
                    "",
                ]
            iv = res["intervals"]
            edges = ", ".join(f"{e:.1f}" for e in res["data"]["tercile_edges_sqrt_area_px"])
            lines += [
                f"Test AP, mean over {iv['seeds']} seeds, 95% bootstrap over seeds and {iv['blocks']} test "
                f"blocks ({iv['replicates']} replicates); areas in original pixels, T1-T3 crown-size "
                f"terciles (sqrt area edges {edges} px).",
                "",
            ]
            lines += _table(iv["AP"], REAL_METRICS) + [""]
            if iv["diff"]:
                lines += ["Paired differences (arm - reference), the same bootstrap:", ""]
                lines += _table(iv["diff"], REAL_METRICS) + [""]
            lines += (
                []
                if not iv["diff"]
                else [
                    f"The bootstrap resamples only {iv['seeds']} seeds (percentile limits), so its seed part "
                    f"under-covers. The same pairs with a t-interval over the {iv['seeds']} seeds' test AP "
                    f"(t({iv['seeds'] - 1}) quantiles; test blocks held fixed, so block sampling is not in "
                    "these):",
                    "",
                    *_table(seed_pairs(res["runs"], REAL_METRICS, list(iv["diff"])), REAL_METRICS),
                    "",
                ]
            )
            if res.get("tests"):
                lines += tests_markdown(res["tests"])
            if res.get("secondary"):
                lines += secondary_markdown(
                    res["secondary"], res["plateau"], res["runs"][0]["curve"][-1]["step"]
                )
            further = seed_pairs(res["runs"], REAL_METRICS)
            if further:
                lines += [
                    "Further pairs (exploratory, not in the Holm family), same seed t-interval:",
                    "",
                    *_table(further, REAL_METRICS),
                    "",
                ]
            oos = {r["arm"]: [] for r in res["runs"]}
            for r in res["runs"]:
                oos[r["arm"]].append(r["extra"].get("out_of_site", {}).get("AP", np.nan))
            lines += [
                "Out-of-site AP (OSBS + SOAP, never trained on), mean over seeds: "
                + ", ".join(f"{a} {ev.nanmean(v):.3f}" for a, v in oos.items()),
                "",
            ]
        else:
            if res.get("tests"):
                lines += tests_markdown(res["tests"])
            for stride, cond in res["conditions"].items():
                lines += [f"### stride {stride}", "", "Test AP, mean and 95% t-interval over seeds:", ""]
                lines += _table(cond["AP"], SYN_METRICS) + [""]
                if cond["diff"]:  # against the config's references (the detection test has none)
                    lines += ["Paired differences:", ""] + _table(cond["diff"], SYN_METRICS) + [""]
                lines += ["Further pairs (exploratory, not in the Holm family; same t-interval):", ""]
                lines += _table(seed_pairs(cond["runs"], SYN_METRICS), SYN_METRICS) + [""]
                if cond.get("secondary"):
                    steps = cond["runs"][0]["curve"][-1]["step"]
                    lines += secondary_markdown(cond["secondary"], cond["plateau"], steps)
        premises = (
            {"": res["premise"]}
            if name.startswith("real")
            else {f", stride {st}": c["premise"] for st, c in res["conditions"].items()}
        )
        for label, premise in premises.items():
            lines += [
                f"Spearman rank correlation of the distribution's spread with the box's IoU error{label}: "
                "every detection kept after NMS (score > 0.001, duplicates included) whose IoU with some "
                "ground-truth box is >= 0.5; mean over seeds, per size group (score: the same for the "
                "class score; n: detections per seed):",
                "",
                "| arm | " + " | ".join(premise[next(iter(premise))]) + " |",
                "|---|" + "---|" * len(premise[next(iter(premise))]),
            ]
            for arm, groups in premise.items():
                lines.append(
                    f"| {arm} | "
                    + " | ".join(
                        f"{g['rho_spread']:.2f} (score {g['rho_score']:.2f}, n {g['n']:.0f})"
                        for g in groups.values()
                    )
                    + " |"
                )
            lines.append("")
    return "\n".join(lines)


def seed_pairs(runs: list[dict], metrics: list[str], pairs: list[str] | None = None) -> dict:
    """Paired t-intervals over seeds of ``pairs`` ("a-b"; default ``FURTHER_PAIRS``), from test AP."""
    per = {}
    for r in runs:
        per.setdefault(r["arm"], {})[r["seed"]] = r["test"]
    out = {}
    chosen = FURTHER_PAIRS if pairs is None else [tuple(p.split("-")) for p in pairs]
    for a, b in chosen:
        if a in per and b in per:
            seeds = sorted(set(per[a]) & set(per[b]))
            out[f"{a}-{b}"] = {
                m: ev.t_interval([per[a][s][m] - per[b][s][m] for s in seeds]) for m in metrics
            }
    return out


def pilot_table(pilot: list[dict], extra: list[dict]) -> list[str]:
    """Final validation AP per arm (and gain) and peak learning rate, mean over the pilot seeds
    (``extra``: later checks)."""
    cells: dict[str, dict[float, list[float]]] = {}
    for entry in [*pilot, *extra]:
        row = entry["arm"] + (f" (gain {entry['gain']:g})" if entry.get("gain") else "")
        cells.setdefault(row, {}).setdefault(entry["lr"], []).append(entry["val_AP"])
    rows = {row: {lr: ev.nanmean(v) for lr, v in by_lr.items()} for row, by_lr in cells.items()}
    lrs = sorted({lr for row in rows.values() for lr in row})
    later = sorted({e["lr"] for e in extra} - {e["lr"] for e in pilot})
    seeds = sorted({e.get("seed", 1000) for e in pilot})
    out = [
        f"Pilot (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}): final validation AP "
        "per peak learning rate"
        + (
            f"; {', '.join(f'{lr:g}' for lr in later)} run afterwards to check the grid's edge"
            if later
            else ""
        )
        + ":",
        "",
        "| arm | " + " | ".join(f"{lr:g}" for lr in lrs) + " |",
        "|---|" + "---|" * len(lrs),
    ]
    for arm, row in rows.items():
        out.append(f"| {arm} | " + " | ".join(f"{row[lr]:.3f}" if lr in row else "" for lr in lrs) + " |")
    return out


def pilot_markdown(res: dict) -> str:
    """The pilot of one data set as Markdown: mean final validation AP over the pilot seeds at every
    (learning rate, gain) point an arm ran (the grid, then the edge rule's points), the choice,
    and the schedule check's decision (``res``: :func:`collect`'s output plus ``tuning``)."""
    tuning = res.get("tuning") or {}
    edges = tuning.get("edges", {})
    lines = [
        f"Pilot on {res['pilot_condition']}: mean final validation AP over the pilot seeds per "
        "(peak learning rate, auxiliary gain); the chosen point in bold, a point the edge rule added "
        "marked +.",
        "",
        "| arm | " + "point (lr, gain): mean val AP |",
        "|---|---|",
    ]
    for arm, scores in res["pilot_scores"].items():
        added = {f"{e['lr']:g},{e['gain']:g}" for e in edges.get(arm, {}).get("added", [])}
        chosen = f"{res['chosen_lr'][arm]:g},{res['chosen_gain'][arm]:g}"
        cells = []
        for point, value in sorted(scores.items(), key=lambda kv: tuple(map(float, kv[0].split(",")))):
            cell = f"({point.replace(',', ', ')}){'+' if point in added else ''}: {value:.3f}"
            cells.append(f"**{cell}**" if point == chosen else cell)
        lines.append(f"| {arm} | " + "; ".join(cells) + " |")
    schedule = tuning.get("schedule")
    if schedule:
        lines += ["", f"Schedule check ({schedule['condition']}): {describe_decision(schedule)}"]
    return "\n".join(lines) + "\n"


def timing_markdown(timing: dict) -> str:
    """The interleaved step timings of ``timing.py`` as a table: seconds per step and ratio to ciou."""
    keys = [k for k, v in timing.items() if isinstance(v, dict) and "ciou" in v]
    arms = list(timing[keys[0]]) if keys else []
    device = timing["device"]
    lines = [
        "## Seconds per training step (interleaved)",
        "",
        f"`{timing['command']}` on {device['device_count']} x {device['device_kind']} "
        f"({device['platform']}), {timing['date']}: median over {timing['rounds']} rounds of "
        f"{timing['steps_per_round']} steps, arms' order rotated; load average before "
        f"{timing['load_average_before'][0]:.1f}, after {timing['load_average_after'][0]:.1f}. "
        "Milliseconds per step (ratio to ciou):",
        "",
        "| arm | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for arm in arms:
        cells = [
            f"{1e3 * timing[k][arm]['median_s_per_step']:.1f} ({timing[k][arm]['ratio_to_ciou']:.2f})"
            for k in keys
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def _table(rows: dict, metrics: list[str]) -> list[str]:
    out = ["| | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, values in rows.items():
        out.append(f"| {name} | " + " | ".join(_fmt(values.get(m)) for m in metrics) + " |")
    return out


# --- paired tests with the family's multiplicity ------------------------------------------------


def paired_tests(per_arm: dict[str, dict[int, dict]], pairs, metric: str = "AP") -> dict:
    """Paired t-interval, t p-value and exact sign-flip p-value of each ``(arm, reference)`` pair on
    ``metric`` over the seeds both have, with Holm's adjustment (of the sign-flip p-values, and of
    the t p-values) over the pairs given: the family."""
    out = {}
    for a, r in pairs:
        if a not in per_arm or r not in per_arm:
            continue
        seeds = sorted(set(per_arm[a]) & set(per_arm[r]))
        d = [per_arm[a][s][metric] - per_arm[r][s][metric] for s in seeds]
        out[f"{a}-{r}"] = {**stats.t_interval(d), "p_sign_flip": stats.sign_flip_p(d), "metric": metric}
    holm_flip = stats.holm({k: v["p_sign_flip"] for k, v in out.items()})
    holm_t = stats.holm({k: v["p"] for k, v in out.items()})
    for k in out:
        out[k]["p_sign_flip_holm"] = holm_flip[k]["p_holm"]
        out[k]["p_t_holm"] = holm_t[k]["p_holm"]
    return out


# The pre-registered secondary metrics of the primary contrasts: test AP75, test AP on the
# smallest size class, and the area under the validation-AP curve (a run's ``metrics``).
SECONDARY_METRICS = ("AP75", "AP_small", "val_auc")
REAL_SECONDARY_METRICS = ("AP75", "AP_T1", "val_auc")


def _value(run: dict, metric: str) -> float:
    return run["test"][metric] if metric in run["test"] else run["metrics"][metric]


def secondary_tests(runs: list[dict], pairs, metrics=SECONDARY_METRICS) -> dict:
    """Exploratory: per ``(arm, reference)`` pair and metric, the paired 95 % t-interval and the
    unadjusted exact sign-flip p-value over the seeds both arms have (no multiplicity correction,
    as the pre-registration labels secondary metrics)."""
    per: dict[str, dict[int, dict]] = {}
    for r in runs:
        per.setdefault(r["arm"], {})[r["seed"]] = r
    out = {}
    for a, b in pairs:
        if a not in per or b not in per:
            continue
        seeds = sorted(set(per[a]) & set(per[b]))
        out[f"{a}-{b}"] = {}
        for m in metrics:
            d = [_value(per[a][s], m) - _value(per[b][s], m) for s in seeds]
            out[f"{a}-{b}"][m] = {**stats.t_interval(d), "p_sign_flip": stats.sign_flip_p(d)}
    return out


def plateau_summary(runs: list[dict]) -> dict:
    """Per arm over its seeds: the final validation AP and the gain over the schedule's last 20 %
    (``plateau_gain``, the pre-registration's description of whether the curves levelled off):
    mean, smallest and largest."""
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r["metrics"] for r in runs if r["arm"] == arm]
        out[arm] = {"seeds": len(mine)}
        for key in ("final_val_AP", "plateau_gain"):
            values = np.array([m[key] for m in mine], np.float64)
            out[arm][key] = {
                "mean": float(values.mean()),
                "min": float(values.min()),
                "max": float(values.max()),
            }
    return out


def secondary_markdown(secondary: dict, plateau: dict, steps: int) -> list[str]:
    metrics = list(next(iter(secondary.values()))) if secondary else list(SECONDARY_METRICS)
    lines = [
        "Secondary metrics of the same pairs (exploratory: unadjusted exact sign-flip p-values; "
        "`val_auc` = area under the validation-AP curve over the steps): mean difference [95% "
        "t-interval] (p):",
        "",
        "| pair | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for name, row in secondary.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{_fmt(row[m])} ({row[m]['p_sign_flip']:.3g})" for m in metrics)
            + " |"
        )
    lines += [
        "",
        f"Did the curves level off? Per arm over seeds: final validation AP, and its gain over the "
        f"last 20 % of the {steps} steps (last evaluation minus the one at 80 %): mean (min to max):",
        "",
        "| arm | seeds | final val AP | gain over the last 20 % |",
        "|---|---|---|---|",
    ]
    for arm, row in plateau.items():
        cells = [
            f"{row[k]['mean']:.4f} ({row[k]['min']:.4f} to {row[k]['max']:.4f})"
            for k in ("final_val_AP", "plateau_gain")
        ]
        lines.append(f"| {arm} | {row['seeds']} | {cells[0]} | {cells[1]} |")
    return lines + [""]


def family(arms, config_references, comparisons) -> list[tuple[str, str]]:
    pairs = ev.reference_pairs(list(arms), config_references)
    return pairs + [tuple(p) for p in comparisons if tuple(p) not in pairs and p[0] in arms and p[1] in arms]


def _p(p: float) -> str:
    # A t p-value below double precision's reach underflows to 0: print the bound, not "0".
    return "< 1e-15" if p < 1e-15 else f"{p:.3g}"


def tests_markdown(tests: dict) -> list[str]:
    lines = []
    for condition, rows in tests.items():
        metric = next(iter(rows.values()))["metric"] if rows else "AP"
        lines += [
            f"Paired tests on test {metric}, {condition} ({len(rows)} pairs; Holm over them): mean "
            "difference [95% t-interval], t p-value, exact sign-flip p-value, both Holm-adjusted:",
            "",
            "| pair | n | mean [95% CI] | p (t) | Holm | p (sign flip) | Holm |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in rows.items():
            lines.append(
                f"| {name} | {r['n']} | {_fmt(r)} | {_p(r['p'])} | {_p(r['p_t_holm'])} "
                f"| {_p(r['p_sign_flip'])} | {_p(r['p_sign_flip_holm'])} |"
            )
        lines.append("")
    return lines


# --- from the records to the results layout -------------------------------------------------------


def _pilot_entries(config: StudyConfig, arms, store: RunStore) -> list[dict]:
    entries = []
    for arm in arms:
        for lr, gain in grid(config, arm):
            for seed in config.pilot_seeds:
                rec = store.read(Run(arm, seed, lr, gain).key)
                entries.append(
                    {
                        "arm": arm,
                        "lr": lr,
                        "gain": gain,
                        "seed": seed,
                        "val_AP": rec["metrics"]["final_val_AP"],
                        **rec["metrics"],
                        "curve": rec["curve"],
                    }
                )
    return entries


def _reported(config: StudyConfig, arms, chosen, store: RunStore, condition: str) -> list[dict]:
    runs = []
    for arm in arms:
        lr, gain, _ = chosen[arm]
        for seed in reported_seeds(config, condition):
            rec = store.read(Run(arm, seed, lr, gain).key)
            runs.append({**rec, "key": Run(arm, seed, lr, gain).key})
    return runs


def collect(config: StudyConfig, data: str, out: pathlib.Path, info: dict) -> dict:
    """One data set's results from its records (``info``: :func:`study.run_data`'s return value)."""
    condition_data = info.get("described", {})
    arms = list(info["chosen"])
    chosen = info["chosen"]
    pilot_name = info.get("pilot_condition", info["conditions"][0])
    res = {
        "pilot_condition": pilot_name,
        "pilot": _pilot_entries(config, arms, RunStore(out / "records" / pilot_name)),
        "chosen_lr": {a: chosen[a][0] for a in arms},
        "chosen_gain": {a: chosen[a][1] for a in arms},
        "pilot_scores": {a: chosen[a][2] for a in arms},
    }
    if "pilot_condition" not in info:  # pilot only
        return res
    pairs = family(arms, config.references, config.comparisons)
    res["tests"] = {}
    if data == "real":
        name = info["conditions"][0]
        store = RunStore(out / "records" / name)
        runs = _reported(config, arms, chosen, store, name)
        res.update({k: v for k, v in condition_data[name].items() if k != "_views"})
        res["runs"] = runs
        objects = {r["key"]: store.read_object(r["key"]) for r in runs}
        matches = {a: [objects[r["key"]]["matches"] for r in runs if r["arm"] == a] for a in arms}
        res["intervals"] = ev.bootstrap_intervals(
            matches,
            objects[runs[0]["key"]]["strata"],
            references=config.references,
            metrics=REAL_METRICS,
            replicates=config.replicates,
            pairs=pairs,  # the family: the references' pairs and the config's comparisons
        )
        res["premise"] = premise_summary(runs)
        per_arm = {a: {r["seed"]: r["test"] for r in runs if r["arm"] == a} for a in arms}
        res["tests"][name] = paired_tests(per_arm, pairs)
        # On the crowns the smallest objects are the smallest crown-size tercile (AP_T1).
        res["secondary"] = secondary_tests(runs, pairs, REAL_SECONDARY_METRICS)
        res["plateau"] = plateau_summary(runs)
        tag = name
        plots.ap_by_size(
            res["intervals"]["AP"],
            REAL_METRICS,
            out / f"ap_by_size_{tag}.png",
            f"NEON crowns, test blocks: AP per arm ({seed_count(config, name)} seeds; "
            "bootstrap 95% over seeds and blocks)",
        )
        plots.curves(
            runs, out / f"curves_{tag}.png", "NEON crowns: validation AP (mean over seeds, min-max band)"
        )
        shown = [a for a in ("ciou", "ciou_dist", "ciou_dfl") if a in arms] or arms[:3]
        first = {a: next(r for r in runs if r["arm"] == a)["key"] for a in shown}
        dataset_views = condition_data[name].get("_views")
        if dataset_views is not None:
            plots.test_tiles(
                dataset_views,
                {a: objects[k]["detections"] for a, k in first.items()},
                out / f"test_tiles_{tag}.png",
            )
        return res
    res["task"] = condition_data["_task"]
    res["pilot_stride"] = config.synthetic.pilot_stride
    res["conditions"] = {}
    cells = []
    task = syn.SyntheticTask()
    for name in info["conditions"]:
        stride = int(name.removeprefix("synthetic_stride"))
        runs = _reported(config, arms, chosen, RunStore(out / "records" / name), name)
        per_arm_list = {a: [r["test"] for r in runs if r["arm"] == a] for a in arms}
        ap = {a: {m: ev.t_interval([v[m] for v in per_arm_list[a]]) for m in SYN_METRICS} for a in arms}
        diff = {
            f"{a}-{r}": {
                m: ev.t_interval([x[m] - y[m] for x, y in zip(per_arm_list[a], per_arm_list[r], strict=True)])
                for m in SYN_METRICS
            }
            for a, r in ev.reference_pairs(arms, config.references)
        }
        res["conditions"][str(stride)] = {
            **condition_data[name],
            "runs": runs,
            "AP": ap,
            "diff": diff,
            "premise": premise_summary(runs),
        }
        per_arm = {a: {r["seed"]: r["test"] for r in runs if r["arm"] == a} for a in arms}
        res["tests"][name] = paired_tests(per_arm, pairs)
        res["conditions"][str(stride)]["secondary"] = secondary_tests(runs, pairs)
        res["conditions"][str(stride)]["plateau"] = plateau_summary(runs)
        for size, (lo, hi) in zip(syn.SIZE_NAMES, task.size_ranges, strict=True):
            for key, value in diff.items():
                arm, ref = key.split("-")
                if ref != "ciou":
                    continue
                cells.append(
                    {
                        "arm": arm,
                        "stride": stride,
                        "size": size,
                        "pixels": (lo + hi) / 2,
                        "bins": (lo + hi) / 2 / stride,
                        **value[f"AP_{size}"],
                    }
                )
        plots.curves(
            runs,
            out / f"curves_synthetic_stride{stride}.png",
            f"synthetic, stride {stride}: validation AP (mean over seeds, min-max band)",
        )
        plots.ap_by_size(
            ap,
            SYN_METRICS,
            out / f"ap_by_size_synthetic_stride{stride}.png",
            f"synthetic, stride {stride}: AP per arm ({seed_count(config, name)} seeds; 95% t-interval)",
        )
    res["resolution"] = cells
    if cells:
        plots.resolution(
            cells,
            out / "resolution_synthetic.png",
            "Does the gain over ciou follow size in bins or in pixels?",
        )
    return res


def recompute_tests(results: dict, pairs=None) -> dict:
    """The paired tests of a results file written before this module (from its per-run test AP)."""
    out = {}
    for name, res in results.items():
        if not isinstance(res, dict) or "skipped" in res:
            continue
        if "runs" in res:
            conditions = {name: res["runs"]}
        elif "conditions" in res:
            conditions = {f"{name}_stride{k}": c["runs"] for k, c in res["conditions"].items()}
        else:
            continue
        for cname, runs in conditions.items():
            arms = list(dict.fromkeys(r["arm"] for r in runs))
            per_arm = {a: {r["seed"]: r["test"] for r in runs if r["arm"] == a} for a in arms}
            chosen = pairs or family(arms, ("ciou", "ciou_dist"), FURTHER_PAIRS)
            out[cname] = paired_tests(per_arm, chosen)
    return out


def nan_to_none(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def summarise(out: pathlib.Path) -> dict:
    """Rewrite ``out/summary.md`` from the results, pilot and timing files there."""
    results = {}
    for path in sorted(out.glob("results*.json")):
        part = json.loads(path.read_text())
        tag = path.stem.removeprefix("results").removeprefix("_")  # "", "real", "real_cross_image", ...
        for key, value in part.items():
            if key in ("device", "config"):
                results[key] = value
            else:  # the cross-image run keeps its own section next to the main split's
                results[key if "cross_image" not in tag else f"{key} (cross_image)"] = value
    for path in sorted(out.glob("pilot*.json")):
        for key, value in json.loads(path.read_text()).items():
            if key in results and isinstance(value, dict) and "pilot" in value:
                results[key]["pilot_extra"] = value["pilot"]
    timing = out / "timing.json"
    text = summary_markdown(results)
    if timing.exists():
        text += timing_markdown(json.loads(timing.read_text()))
    (out / "summary.md").write_text(text)
    return results
