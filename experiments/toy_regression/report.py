"""Tables, paired statistics and figures from a run's results (all statistics from
:mod:`experiments.common.stats`).

:func:`summarise` reads only ``results["runs"]`` (each seed's test curve), the thresholds, the
timing pass and the config, so it recomputes the tables of any saved ``results.json``, older ones
included. For each arm at its learning rate chosen by area under the validation curve: final test
MAE, and steps to every threshold under both crossing definitions (:mod:`.metrics`); against the
reference arm (and the configured further pairs), per seed: the paired t-interval of the
difference in final MAE and in steps, and the ratio of steps (ratio of the medians; geometric mean
of the per-seed ratios with the t-interval of their logs). Holm's correction runs over one family:
the final-MAE differences under both learning-rate criteria and the log step ratios at every
threshold under both definitions (where every seed of both arms got there and the ratios vary).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from experiments.common import stats

from . import configs, metrics
from .model import is_distribution

DEFAULT = configs.get("default")

DEFINITION_TEXT = {
    "first": "first crossing (the first evaluation at or below the threshold)",
    "sustained": "sustained crossing (the first evaluation from which the test MAE stays at or below "
    "the threshold to the end of training)",
}


def chosen(runs: list[dict], loss: str, criterion: str = "auc") -> list[dict]:
    """The per-seed runs of ``loss`` at its learning rate chosen by ``criterion``, by seed."""
    return sorted(
        (r for r in runs if r["loss"] == loss and r[f"selected_{criterion}"]), key=lambda r: r["seed"]
    )


def seed_steps(run: dict, definition: str, limit: float) -> int | None:
    """Steps to ``limit`` under ``definition``, from the run's test curve."""
    steps = [s for s, _ in run["test_curve"]]
    curve = [m for _, m in run["test_curve"]]
    fn = metrics.first_crossing if definition == "first" else metrics.sustained_crossing
    return fn(steps, curve, limit)


def pair(a, b) -> dict:
    """Paired t-interval of ``a - b`` with the exact sign-flip p-value; ``significant``: excludes 0."""
    out = stats.paired_t(a, b)
    out["significant"] = bool(out["lo"] > 0 or out["hi"] < 0)
    out["p_sign_flip"] = stats.sign_flip_p(np.subtract(a, b, dtype=np.float64))
    return out


def ratio(a, b) -> dict:
    """:func:`stats.paired_ratio` of ``a / b``; ``significant``: its interval excludes 1."""
    out = stats.paired_ratio(a, b)
    out["significant"] = bool(out["lo"] > 1 or out["hi"] < 1)
    return out


def _complete(values) -> bool:
    return all(v is not None for v in values)


def summarise(results: dict) -> dict:
    cfg = results["config"]
    losses, limits, runs = cfg["losses"], cfg["thresholds"], results["runs"]
    reference = cfg.get("reference", DEFAULT.reference)  # results files before issue 19 had none
    definitions = metrics.DEFINITIONS
    steps = {
        loss: {
            d: {name: [seed_steps(r, d, t) for r in chosen(runs, loss)] for name, t in limits.items()}
            for d in definitions
        }
        for loss in losses
    }
    rows: dict[str, dict] = {}
    for loss in losses:
        for criterion in ("auc", "final"):
            picked = chosen(runs, loss, criterion)
            final = np.array([r["final_mae"] for r in picked])
            row = {
                "lr": picked[0]["lr"],
                "final_mae": final.tolist(),
                "final_mae_mean": float(final.mean()),
                "final_mae_std": float(final.std(ddof=1)) if final.size > 1 else 0.0,
            }
            if criterion == "auc":
                ms = results["timing"][loss]["median_s_per_step"] * 1e3
                row["ms_per_step"] = ms
                row["steps"] = {}
                for d in definitions:
                    row["steps"][d] = {}
                    for name in limits:
                        reach = steps[loss][d][name]
                        done = _complete(reach)
                        row["steps"][d][name] = {
                            "per_seed": reach,
                            "reached": sum(s is not None for s in reach),
                            "median": float(np.median(reach)) if done else None,
                            "mean": float(np.mean(reach)) if done else None,
                            "seconds_median": float(np.median(reach)) * ms / 1e3 if done else None,
                        }
            rows.setdefault(loss, {})[criterion] = row

    pairs_wanted = [(loss, reference) for loss in losses if loss != reference and reference in losses]
    pairs_wanted += [tuple(p) for p in cfg.get("comparisons", []) if p[0] in losses and p[1] in losses]
    pairs: dict[str, dict] = {}
    pvalues: dict[str, float] = {}
    for a, b in pairs_wanted:
        key = f"{a} - {b}"
        entry: dict = {"arm": a, "against": b, "final_mae": {}, "steps": {}, "ratio": {}}
        for criterion in ("auc", "final"):
            p = pair(rows[a][criterion]["final_mae"], rows[b][criterion]["final_mae"])
            entry["final_mae"][criterion] = p
            pvalues[f"{key}: final MAE (lr by {criterion})"] = p["p"] if p["sd"] > 0 else math.nan
        for d in definitions:
            entry["steps"][d], entry["ratio"][d] = {}, {}
            for name in limits:
                sa, sb = steps[a][d][name], steps[b][d][name]
                ok = _complete(sa) and _complete(sb)
                entry["steps"][d][name] = pair(sa, sb) if ok else None
                r = ratio(sa, sb) if ok else None
                entry["ratio"][d][name] = r
                if r is not None:
                    varies = not math.isnan(r["lo"]) and r["lo"] < r["hi"]
                    pvalues[f"{key}: {d} steps to {name}, ratio"] = r["p"] if varies else math.nan
        pairs[key] = entry
    holm = stats.holm(pvalues)
    for key, entry in pairs.items():
        for criterion, p in entry["final_mae"].items():
            p["holm"] = holm[f"{key}: final MAE (lr by {criterion})"]
        for d, by_name in entry["ratio"].items():
            for name, r in by_name.items():
                if r is not None:
                    r["holm"] = holm[f"{key}: {d} steps to {name}, ratio"]
    family = [k for k, v in holm.items() if not math.isnan(v["p_holm"])]
    return {
        "reference": reference,
        "rows": rows,
        "pairs": pairs,
        "holm": {
            "family": "final test MAE of every pair under both learning-rate criteria, and the log ratio "
            "of steps at every threshold under both crossing definitions, for every pair (each arm "
            "against the reference, then the further comparisons) where every seed of both reached "
            "the threshold; tests whose paired values do not vary are left out",
            "tests": len(family),
            "alpha": 0.05,
            "results": {k: holm[k] for k in sorted(family, key=lambda k: holm[k]["p"])},
        },
    }


# --- markdown ------------------------------------------------------------------------------------


def _marks(p: dict) -> str:
    out = " *" if p.get("significant") else ""
    if p.get("holm", {}).get("reject"):
        out += " †"
    return out


def fmt_interval(p: dict | None, digits: int) -> str:
    if p is None or math.isnan(p["mean"]):
        return "n/a"
    if math.isnan(p["lo"]):
        return f"{p['mean']:+.{digits}f}"
    return f"{p['mean']:+.{digits}f} [{p['lo']:+.{digits}f}, {p['hi']:+.{digits}f}]{_marks(p)}"


def fmt_ratio(r: dict | None, reached: str = "") -> str:
    if r is None:
        return f"n/a{reached}"
    if math.isnan(r["geometric_mean"]):
        return "n/a"
    interval = "" if math.isnan(r["lo"]) else f" [{r['lo']:.2f}, {r['hi']:.2f}]"
    return f"{r['median_ratio']:.2f}x; {r['geometric_mean']:.2f}x{interval}{_marks(r)}"


def _steps_cell(s: dict, n: int) -> str:
    return f"{s['median']:.0f}" if s["median"] is not None else f"- ({s['reached']}/{n})"


def tables(results: dict, summary: dict) -> str:
    cfg, floor = results["config"], results["noise_floor"]
    losses, names = cfg["losses"], list(cfg["thresholds"])
    rows, pairs, ref = summary["rows"], summary["pairs"], summary["reference"]
    n = len(rows[losses[0]]["auc"]["final_mae"])
    floor_test = floor["test"]["median"]
    optimum = floor.get("loss_optimum", {})
    second = names[1] if len(names) > 1 else names[0]
    out = [
        f"Noise floor (test set): MAE of the posterior median {floor_test:.4f} bins "
        f"(posterior mean {floor['test']['mean']:.4f}, mode {floor['test']['mode']:.4f}). "
        "Thresholds: " + ", ".join(f"{k} = {v:.4f}" for k, v in cfg["thresholds"].items()) + ".\n",
        "Marks: `*` = the 95 % interval excludes 0 (a ratio's: 1), uncorrected; `†` = also significant "
        f"after Holm's correction over {summary['holm']['tests']} tests ({summary['holm']['family']}).\n",
        "**Learning rate chosen by the area under the validation-MAE curve** (test MAE, mean ± sd over "
        f"n = {n} seeds; its loss's optimum = the test MAE of what that loss is minimised by, given the "
        "signal; ms/step for all seeds together, from the timing pass):\n",
        "| loss | lr | final test MAE | / floor | its loss's optimum | ms/step |",
        "|---|---|---|---|---|---|",
    ]
    for loss in losses:
        r = rows[loss]["auc"]
        out.append(
            f"| {loss} | {r['lr']:g} | {r['final_mae_mean']:.4f} ± {r['final_mae_std']:.4f} "
            f"| {r['final_mae_mean'] / floor_test:.3f} | {optimum.get(loss, math.nan):.4f} "
            f"| {r['ms_per_step']:.2f} |"
        )
    for d in metrics.DEFINITIONS:
        out += [
            "",
            f"**Steps to each test-MAE threshold, {DEFINITION_TEXT[d]}**: median over seeds, `- (k/n)` "
            f"when only k of n seeds got there; seconds = median steps x ms/step:\n",
            "| loss | " + " | ".join(f"to {k}" for k in names) + f" | seconds to {second} |",
            "|---" * (2 + len(names)) + "|",
        ]
        for loss in losses:
            s = rows[loss]["auc"]["steps"][d]
            sec = s[second]["seconds_median"]
            out.append(
                f"| {loss} | "
                + " | ".join(_steps_cell(s[k], n) for k in names)
                + f" | {'-' if sec is None else f'{sec:.2f}'} |"
            )
    for d in metrics.DEFINITIONS:
        out += [
            "",
            f"**Ratio of steps, arm / {ref} and further pairs, {d} crossing**: the ratio of the median "
            "steps; then the geometric mean of the per-seed ratios with its 95 % interval (t on the "
            "logs). Above 1: the arm needs more steps than the other:\n",
            "| pair | " + " | ".join(f"to {k}" for k in names) + " |",
            "|---" * (1 + len(names)) + "|",
        ]
        for key, entry in pairs.items():
            cells = []
            for k in names:
                got = (
                    rows[entry["arm"]]["auc"]["steps"][d][k]["reached"],
                    rows[entry["against"]]["auc"]["steps"][d][k]["reached"],
                )
                cells.append(fmt_ratio(entry["ratio"][d][k], f" ({got[0]}/{n}, {got[1]}/{n})"))
            out.append(f"| {key} | " + " | ".join(cells) + " |")
    out += [
        "",
        "**Paired differences** (mean over seeds with its 95 % t-interval): final test MAE at the lr "
        "chosen by each criterion, and steps to each threshold (lr by area under the curve), "
        "first / sustained crossing:\n",
        "| pair | final MAE (lr by auc) | final MAE (lr by final) | "
        + " | ".join(f"steps to {k}, first | sustained" for k in names)
        + " |",
        "|---" * (3 + 2 * len(names)) + "|",
    ]
    for key, entry in pairs.items():
        cells = [fmt_interval(entry["final_mae"][c], 4) for c in ("auc", "final")]
        for k in names:
            cells += [fmt_interval(entry["steps"][d][k], 0) for d in metrics.DEFINITIONS]
        out.append(f"| {key} | " + " | ".join(cells) + " |")
    out += [
        "",
        "**Learning rate chosen by the final validation MAE** (test MAE):\n",
        "| loss | lr | final test MAE | / floor |",
        "|---|---|---|---|",
    ]
    for loss in losses:
        r = rows[loss]["final"]
        out.append(
            f"| {loss} | {r['lr']:g} | {r['final_mae_mean']:.4f} ± {r['final_mae_std']:.4f} "
            f"| {r['final_mae_mean'] / floor_test:.3f} |"
        )
    return "\n".join(out) + "\n"


def summary_markdown(results: dict) -> str:
    cfg, device = results["config"], results["device"]
    seeds = cfg["seeds"]
    # The results files before issue 19 named some settings differently.
    eval_size = cfg.get("eval_size", cfg["train"].get("eval_size"))
    lrs = list(cfg.get("lrs", cfg.get("learning_rates", [])))
    extended = cfg.get("extend_lr_grid", cfg.get("lr_grid_extended_at_edges"))
    rounds = cfg.get("timing_rounds", next(iter(results["timing"].values()))["rounds"])
    return (
        f"# Toy regression ablation: {', '.join(cfg['losses'])}\n\n"
        f"`{cfg['command']}` on {device['device_count']} x {device['device_kind']} "
        f"({device['platform']}, {device['host']}), jax {device['jax']}, {device['date']}; "
        f"{cfg['train']['steps']} steps, batch {cfg['train']['batch_size']}, seeds {seeds[0]}..{seeds[-1]} "
        f"trained together (vmapped), {cfg['seconds_total']:.0f} s in all.\n\n"
        f"Test MAE in bins on {eval_size} held-out signals; learning rates from "
        f"{lrs}{' (extended at the edges)' if extended else ''}, chosen on "
        f"{eval_size} validation signals. Evaluations at {len(cfg['eval_steps'])} log-spaced "
        f"steps. ms/step for all {len(seeds)} seeds together, median of {rounds} "
        "round-robin rounds.\n\n" + tables(results, results["summary"])
    )


# --- figures -------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(results: dict, path: pathlib.Path, title: str) -> None:
    plt = _pyplot()
    floor = results["noise_floor"]["test"]["median"]
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, loss in enumerate(results["config"]["losses"]):
        picked = chosen(results["runs"], loss)
        steps = np.array([s for s, _ in picked[0]["test_curve"]])
        curves = np.array([[m for _, m in r["test_curve"]] for r in picked])
        mean, lo, hi = curves.mean(0), curves.min(0), curves.max(0)
        style = "-" if is_distribution(loss) else "--"
        (line,) = ax.plot(steps[1:], mean[1:], style, color=f"C{i}", label=f"{loss} (lr {picked[0]['lr']:g})")
        ax.fill_between(steps[1:], lo[1:], hi[1:], color=line.get_color(), alpha=0.2)
    ax.axhline(floor, color="k", lw=1, ls=":", label=f"noise floor {floor:.4f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("test MAE (bins)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_steps(results: dict, path: pathlib.Path) -> None:
    plt = _pyplot()
    cfg, rows = results["config"], results["summary"]["rows"]
    losses, limits = cfg["losses"], cfg["thresholds"]
    names = list(limits)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    width = 0.8 / len(losses)
    top = cfg["train"]["steps"] * 2
    for ax, d in zip(axes, metrics.DEFINITIONS, strict=True):
        for i, loss in enumerate(losses):
            for j, name in enumerate(names):
                per_seed = rows[loss]["auc"]["steps"][d][name]["per_seed"]
                x = j + (i - (len(losses) - 1) / 2) * width
                hit = [s for s in per_seed if s is not None]
                if hit:
                    ax.scatter([x] * len(hit), hit, color=f"C{i}", s=12)
                if len(hit) < len(per_seed):
                    ax.scatter([x], [top], marker="x", color=f"C{i}")
        ax.set_xticks(range(len(names)), [f"{k}\n({limits[k]:.3f})" for k in names])
        ax.set_yscale("log")
        ax.set_xlabel("test-MAE threshold (bins)")
        ax.set_title(f"{d} crossing", fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("steps to reach it (each seed; x = some seed never did)")
    for i, loss in enumerate(losses):
        axes[1].scatter([], [], color=f"C{i}", s=12, label=loss)
    axes[1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(results: dict, out: pathlib.Path) -> str:
    """summary.md, curves.png and steps_to_target.png into ``out``; returns the tables."""
    cfg = results["config"]
    title = (
        f"toy edge localisation, {cfg.get('name', cfg.get('preset', ''))} config, {len(cfg['seeds'])} seeds "
        "(mean, band = min..max), lr by area under the curve"
    )
    plot_curves(results, out / "curves.png", title)
    plot_steps(results, out / "steps_to_target.png")
    (out / "summary.md").write_text(summary_markdown(results))
    return tables(results, results["summary"])


# --- the early-resolution rerun -------------------------------------------------------------------


def early_summary(early: dict) -> dict:
    cfg, arms = early["config"], early["arms"]
    ref = cfg["reference"]
    out: dict[str, dict] = {}
    for loss in cfg["losses"]:
        entry = {}
        for name in cfg["thresholds"]:
            reach = arms[loss]["steps_to_target"][name]
            other = arms[ref]["steps_to_target"][name] if ref in arms else None
            done = _complete(reach)
            both = done and other is not None and loss != ref and _complete(other)
            entry[name] = {
                "per_seed": reach,
                "reached": sum(s is not None for s in reach),
                "median": float(np.median(reach)) if done else None,
                "mean": float(np.mean(reach)) if done else None,
                f"paired_vs_{ref}": pair(reach, other) if both else None,
            }
        out[loss] = entry
    return out


def early_markdown(early: dict, device: dict, source: str) -> str:
    cfg, summary = early["config"], early["summary"]
    names, seeds, e, ref = list(cfg["thresholds"]), cfg["seeds"], cfg["early"], cfg["reference"]
    lines = [
        f"# Steps to the early thresholds at fine resolution: {', '.join(cfg['losses'])}\n",
        f"`{cfg['command']}` on {device['device_count']} x {device['device_kind']} ({device['platform']}), "
        f"jax {device['jax']}, {device['date']}; {cfg['seconds_total']:.0f} s in all.\n",
        f"Each arm retrained at the lr chosen by area under the curve in `{source}` (seeds "
        f"{seeds[0]}..{seeds[-1]}, the same schedule over {cfg['train']['steps']} steps, the same data "
        f"stream), stopped at step {e['stop']}. Test MAE every {e['fine_every']} steps up to {e['fine']}, "
        f"then every {e['every']}. Steps (first crossing): median over seeds (per seed in brackets); "
        f"paired difference arm minus {ref}, mean [95 % t-interval], n = {len(seeds)}, `*` = excludes 0, "
        "uncorrected.\n",
        "| arm | lr | " + " | ".join(f"to {k}: median (per seed) | vs {ref}" for k in names) + " |",
        "|---|---|" + "---|---|" * len(names),
    ]
    for loss in cfg["losses"]:
        cells = []
        for k in names:
            s = summary[loss][k]
            per = ", ".join("-" if v is None else str(v) for v in s["per_seed"])
            med = f"{s['median']:.0f}" if s["median"] is not None else f"- ({s['reached']}/{len(seeds)})"
            cells += [f"{med} ({per})", fmt_interval(s[f"paired_vs_{ref}"], 0) if loss != ref else ""]
        lines.append(f"| {loss} | {cfg['learning_rates'][loss]:g} | " + " | ".join(cells) + " |")
    worst = max(a["max_abs_diff_from_source_test_curve"] for a in early["arms"].values())
    lines.append(
        "\nCheck against the source run: at the steps both evaluated, the test MAE "
        + ("is identical" if worst == 0 else f"differs by at most {worst:.2g} bins")
        + ".\n"
    )
    return "\n".join(lines)
