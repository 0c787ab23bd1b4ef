"""Extra comparisons computed from saved results files only (``--extra``; trains nothing).

Scalar losses against each other, per-seed steps to 0.1, ``dist_l1`` at every learning rate,
each arm's end point against its own optimum, the learning rate under other criteria, each arm's
median steps to 0.1 and to 0.06 at every learning rate tried, HL-Gauss's
label bias near the ends, and one Holm family over every paired test of the full (and long) runs'
summaries plus the scalar pairs. Steps are read from the saved test curves under the crossing
``definitions`` asked for (:mod:`.metrics`); statistics from :mod:`experiments.common.stats`.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.common import stats
from jax_dfl.histogram_losses import hl_gauss

from . import metrics, report
from .study import select_lr

SCALAR_PAIRS = (("l2", "l1"), ("l2", "smooth_l1"), ("smooth_l1", "l1"), ("l1_std", "l1"))


# The columns of the per-learning-rate table: the grid of every config, with its edge extensions.
LR_COLUMNS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
# A threshold reached only late in training, tabulated at every lr as 0.1 is.
LATE_THRESHOLD = "0.06"


def _per_lr(results: dict, loss: str, lr: float) -> list[dict]:
    return sorted(
        (r for r in results["runs"] if r["loss"] == loss and r["lr"] == lr), key=lambda r: r["seed"]
    )


def _steps(results: dict, loss: str, name: str, definition: str, lr: float | None = None) -> list:
    limit = results["config"]["thresholds"][name]
    runs = report.chosen(results["runs"], loss) if lr is None else _per_lr(results, loss, lr)
    return [report.seed_steps(r, definition, limit) for r in runs]


def _medians_by_lr(results: dict, loss: str, name: str, definition: str) -> dict:
    """Median steps to threshold ``name`` at each lr tried (None where a seed never got there)."""
    medians = {}
    for lr in results["selected_lrs"][loss]["tried"]:
        reach = _steps(results, loss, name, definition, lr)
        medians[f"{lr:g}"] = float(np.median(reach)) if all(s is not None for s in reach) else None
    return medians


def _p(entry: dict) -> float:
    """The t-test's p-value, or NaN (out of the family) when the paired differences do not vary."""
    return entry["p"] if entry["sd"] > 0 else math.nan


def extra_comparisons(full: dict, long: dict | None, definitions=metrics.DEFINITIONS) -> dict:
    losses = full["config"]["losses"]
    names = list(full["config"]["thresholds"])
    final = lambda res, loss, crit="auc": [r["final_mae"] for r in report.chosen(res["runs"], loss, crit)]
    out: dict = {"definitions": list(definitions)}

    scalar: dict = {}
    for a, b in SCALAR_PAIRS:
        if a not in losses or b not in losses:
            continue
        entry = {"final_mae": report.pair(final(full, a), final(full, b))}
        for d in definitions:
            for name in names:
                sa, sb = _steps(full, a, name, d), _steps(full, b, name, d)
                ok = all(s is not None for s in sa + sb)
                entry[f"{d}_steps_to_{name}"] = report.pair(sa, sb) if ok else None
        scalar[f"{a} - {b}"] = entry
    out["scalar_pairs"] = scalar

    out["steps_to_0.1_per_seed"] = {
        d: {loss: _steps(full, loss, "0.1", d) for loss in losses} for d in definitions
    }

    if "dist_l1" in losses:
        out["dist_l1_by_lr"] = {
            f"{lr:g}": {
                "final_mae_per_seed": [round(r["final_mae"], 4) for r in _per_lr(full, "dist_l1", lr)],
                "stalled_seeds (final MAE > 0.09)": [
                    r["seed"] for r in _per_lr(full, "dist_l1", lr) if r["final_mae"] > 0.09
                ],
            }
            for lr in full["selected_lrs"]["dist_l1"]["tried"]
        }

    optimum = full["noise_floor"]["loss_optimum"]
    out["final_minus_own_optimum"] = {
        loss: float(np.mean(final(full, loss))) - optimum[loss] for loss in losses if loss in optimum
    }

    choice, best = {}, {}
    for loss in losses:
        tried = full["selected_lrs"][loss]["tried"]
        log_auc = {
            lr: float(
                np.mean([metrics.log_area(*zip(*r["curve"], strict=True)) for r in _per_lr(full, loss, lr)])
            )
            for lr in tried
        }
        choice[loss] = {
            "auc": full["selected_lrs"][loss]["auc"],
            "final": full["selected_lrs"][loss]["final"],
            "log_step_auc": select_lr(log_auc),
            "tried": tried,
        }
        best[loss] = {}
        for d in definitions:
            medians = _medians_by_lr(full, loss, "0.1", d)
            done = {lr: m for lr, m in medians.items() if m is not None}
            best[loss][d] = {
                "median_by_lr": medians,
                "best": min(done.values()) if done else None,
                "at_lr": min(done, key=done.get) if done else None,
            }
    out["lr_choice"] = choice
    out["auc_weight_of_first_200_steps"] = 200 / full["config"]["eval_steps"][-1]
    out["best_median_steps_to_0.1_over_the_grid"] = best
    # The same at 0.06, reached in the cosine tail: how much a late threshold depends on the lr.
    if LATE_THRESHOLD in names:
        out[f"median_steps_to_{LATE_THRESHOLD}_by_lr"] = {
            loss: {d: _medians_by_lr(full, loss, LATE_THRESHOLD, d) for d in definitions} for loss in losses
        }

    bins = np.arange(full["config"]["task"]["num_bins"], dtype=np.float64)
    out["hl_gauss_label_mean_bias"] = {
        f"sigma={s:g}": {
            f"y={y:g}": float(np.asarray(hl_gauss(np.float32(y), bins.size, sigma=s)) @ bins - y)
            for y in (0.0, 0.5, 1.0, 2.0, float(bins[-1]) / 2)
        }
        for s in (0.25, 0.5, 0.75)
    }

    # Every paired test of the runs' summaries (arm - dfl: final MAE under both criteria, steps to
    # each threshold where every seed of both got there), plus the scalar pairs; Holm over them all.
    tests, pvalues = {}, {}
    for tag, res in (("full", full), ("long", long)):
        if res is None:
            continue
        res_losses, res_names = res["config"]["losses"], list(res["config"]["thresholds"])
        for loss in res_losses:
            if loss == "dfl" or "dfl" not in res_losses:
                continue
            for crit in ("auc", "final"):
                key = f"{tag}: {loss} - dfl, final MAE (lr by {crit})"
                tests[key] = report.pair(final(res, loss, crit), final(res, "dfl", crit))
            for d in definitions:
                for name in res_names:
                    a, b = _steps(res, loss, name, d), _steps(res, "dfl", name, d)
                    if all(s is not None for s in a + b):
                        tests[f"{tag}: {loss} - dfl, {d} steps to {name}"] = report.pair(a, b)
    for key, entry in scalar.items():
        for what, p in entry.items():
            if p is not None:
                tests[f"full: {key}, {what.replace('_', ' ')}"] = p
    pvalues = {k: _p(v) for k, v in tests.items()}
    holm = stats.holm(pvalues)
    family = sorted((k for k in tests if not math.isnan(pvalues[k])), key=pvalues.get)
    out["multiple_comparisons"] = {
        "family": "every paired t-test in the full and long runs' summaries (arm - dfl, final MAE "
        "under both lr criteria, steps to each threshold where all seeds got there and the "
        f"differences vary; crossing: {', '.join(definitions)}) plus the scalar pairs above",
        "tests": len(family),
        "results": {k: {**tests[k], **holm[k]} for k in family},
    }
    if long is not None:
        out["long_run_final_mae"] = {
            loss: {
                str(full["config"]["train"]["steps"]): float(np.mean(final(full, loss))),
                str(long["config"]["train"]["steps"]): float(np.mean(final(long, loss))),
            }
            for loss in long["config"]["losses"]
            if loss in losses
        }
    return out


def extra_markdown(extra: dict) -> str:
    lines = ["# Extra comparisons from the saved results (no training)\n"]
    pairs = extra["scalar_pairs"]
    if pairs:
        keys = list(next(iter(pairs.values())))
        lines += [
            "## Scalar losses against each other (lr by area under the curve; paired)\n",
            "| pair | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
            "|---" * (1 + len(keys)) + "|",
        ]
        for name, entry in pairs.items():
            digits = lambda k: 4 if k == "final_mae" else 0
            lines.append(
                f"| {name} | " + " | ".join(report.fmt_interval(entry[k], digits(k)) for k in keys) + " |"
            )
    for d, per_loss in extra["steps_to_0.1_per_seed"].items():
        lines += [f"\n## Steps to 0.1 per seed, {d} crossing (`None` = never)\n"]
        lines += [f"- {loss}: {s}" for loss, s in per_loss.items()]
    if "dist_l1_by_lr" in extra:
        lines += ["\n## dist_l1 at every learning rate (final test MAE per seed)\n"]
        lines += [f"- lr {lr}: {v}" for lr, v in extra["dist_l1_by_lr"].items()]
    lines += ["\n## Final test MAE minus the arm's own optimum\n"]
    lines += [f"- {loss}: {v:+.4f}" for loss, v in extra["final_minus_own_optimum"].items()]
    definitions = extra["definitions"]
    lines += [
        "\n## Learning-rate choice by criterion; best median steps to 0.1 anywhere on the grid\n",
        f"Linear-step AUC: the first 200 steps carry {extra['auc_weight_of_first_200_steps']:.1%} of the "
        "weight. Log-step AUC: validation MAE averaged over log(step) from step 10.\n",
        "| arm | lrs tried | auc | final | log-step auc | "
        + " | ".join(f"best median steps to 0.1, {d} (at lr)" for d in definitions)
        + " |",
        "|---" * (5 + len(definitions)) + "|",
    ]
    for loss, c in extra["lr_choice"].items():
        cells = []
        for d in definitions:
            b = extra["best_median_steps_to_0.1_over_the_grid"][loss][d]
            cells.append("-" if b["best"] is None else f"{b['best']:.0f} ({b['at_lr']})")
        tried = ", ".join(f"{x:g}" for x in c["tried"])
        lines.append(
            f"| {loss} | {tried} | {c['auc']:g} | {c['final']:g} | {c['log_step_auc']:g} | "
            + " | ".join(cells)
            + " |"
        )
    # Every arm at every learning rate tried: a comparison of two arms at the same lr separates the
    # loss from the learning-rate choice (which the tables above mix).
    best = extra["best_median_steps_to_0.1_over_the_grid"]
    tables = {"0.1": {loss: {d: best[loss][d]["median_by_lr"] for d in definitions} for loss in best}}
    late = extra.get(f"median_steps_to_{LATE_THRESHOLD}_by_lr")
    if late is not None:
        tables[LATE_THRESHOLD] = late
    for name, by_loss in tables.items():
        lines += [
            f"\n## Median steps to {name} at each learning rate tried (over seeds; - when a seed never "
            "got there)\n",
            "| arm | definition | " + " | ".join(f"lr {lr:g}" for lr in LR_COLUMNS) + " |",
            "|---" * (2 + len(LR_COLUMNS)) + "|",
        ]
        for loss, per_definition in by_loss.items():
            for d, by_lr in per_definition.items():
                cells = [by_lr.get(f"{lr:g}", "n/a") for lr in LR_COLUMNS]
                text = ["n/a" if c == "n/a" else "-" if c is None else f"{c:.0f}" for c in cells]
                lines.append(f"| {loss} | {d} | " + " | ".join(text) + " |")
    lines += ["\n## HL-Gauss label mean minus y (bins), support edges at -0.5 and 16.5\n"]
    for s, v in extra["hl_gauss_label_mean_bias"].items():
        lines.append(f"- {s}: " + ", ".join(f"{y}: {b:+.4f}" for y, b in v.items()))
    mc = extra["multiple_comparisons"]
    lines += [
        f"\n## Multiple comparisons: {mc['tests']} paired t-tests, Holm-corrected at 0.05\n",
        mc["family"] + ". Seed-only intervals: the test set is held fixed.\n",
        "| test | mean [95 % CI] | p | p (Holm) | uncorrected | Holm |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in mc["results"].items():
        digits = 4 if "MAE" in k or "mae" in k else 0
        shown = {key: v for key, v in r.items() if key != "holm"}
        lines.append(
            f"| {k} | {report.fmt_interval({**shown, 'significant': False}, digits)} | {r['p']:.2g} "
            f"| {r['p_holm']:.2g} | {'yes' if r['p'] < 0.05 else 'no'} | {'yes' if r['reject'] else 'no'} |"
        )
    if "long_run_final_mae" in extra:
        lines += ["\n## Final test MAE of the full and the long run\n"]
        for k, v in extra["long_run_final_mae"].items():
            (s1, a), (s2, b) = v.items()
            lines.append(f"- {k}: {a:.4f} ({s1} steps) -> {b:.4f} ({s2} steps)")
    return "\n".join(lines) + "\n"
