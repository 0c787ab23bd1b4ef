"""Why does DFL converge faster? An ablation on a synthetic edge-localisation task.

    python experiments/toy_regression/main.py --preset quick --out runs/quick

Arms on the same trunk, data stream, optimizer and schedule (see toy.py beside this script):
scalar heads trained with l1, smooth_l1 and l2; a 17-bin distribution head
trained with L1 on its decoded expectation (dist_l1), one-hot cross-entropy,
HL-Gauss cross-entropy and DFL. Seeds are trained together with vmap; seed s
fixes the initialisation and the data stream for every arm, so differences
between arms are paired per seed.

For each arm the learning rate is chosen on the validation set by the area
under the validation-MAE curve (the convergence criterion; the final
validation MAE's choice is reported too) from a grid that is extended while
the choice sits on its edge. Everything reported is measured on a separate
test set: MAE during training at log-spaced steps, steps and wall-clock to
several MAE thresholds, and final MAE against the noise floor, which is the
MAE of the Bayes-optimal estimator (the posterior median of y under the known
generative model). Paired per-seed differences against dfl come with 95 %
t-intervals. Milliseconds per step come from a separate round-robin timing
pass. Writes DIR/results.json, DIR/curves.png, DIR/steps_to_target.png and
DIR/summary.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
import time

import jax
import numpy as np
from scipy import stats
from tqdm import tqdm

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # run from a checkout

from experiments.common.records import device_info
from experiments.toy_regression import toy
from jax_dfl import parallel
from jax_dfl.histogram_losses import hl_gauss

PRESETS = {
    # <= 90 s on 2 CPU cores, compilation, floor and timing pass included.
    "quick": dict(
        seeds=3,
        steps=2000,
        batch=256,
        hidden=128,
        lrs=[1e-2],
        losses=["l1", "l2", "dist_l1", "hl_gauss_0.75", "dfl"],
        extend_lr_grid=False,
    ),
    # About 20 minutes on 2 CPU cores.
    "full": dict(
        seeds=5,
        steps=6000,
        batch=256,
        hidden=128,
        lrs=[1e-3, 3e-3, 1e-2, 3e-2],
        losses=list(toy.LOSSES),
        extend_lr_grid=True,
    ),
    # Sized for one GPU/TPU in a few minutes (an estimate; not yet run): wider trunk, larger
    # batches, more seeds, every arm, about 30 runs of 6000 steps.
    "accelerator": dict(
        seeds=8,
        steps=6000,
        batch=4096,
        hidden=512,
        lrs=[1e-3, 3e-3, 1e-2],
        losses=list(toy.LOSSES),
        extend_lr_grid=True,
    ),
}
THRESHOLDS = [0.2, 0.1, 0.07, 0.06]  # bins; the floor + 10 % is added per run
FLOOR_MARGIN = 1.1
EVAL_SEED, TEST_SEED = 10_000_001, 10_000_002  # fixed held-out sets, shared by all runs
REFERENCE = "dfl"
LR_RANGE = (1e-4, 1.0)  # the grid is never extended beyond this


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    p.add_argument(
        "--losses", nargs="+", type=toy.check_loss, help=f"arms (default: the preset's); {toy.LOSSES}"
    )
    p.add_argument("--seeds", type=int, help="number of seeds (0 .. N-1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--steps", type=int, help="training steps")
    p.add_argument("--lr", type=float, nargs="+", help="learning rate(s) to sweep")
    p.add_argument("--no-extend", action="store_true", help="do not extend the lr grid at its edges")
    p.add_argument("--eval-every", type=int, default=10, help="finest evaluation spacing (steps)")
    p.add_argument("--eval-ratio", type=float, default=1.1, help="growth of the evaluation spacing")
    p.add_argument("--eval-size", type=int, default=2048)
    p.add_argument("--timing-rounds", type=int, default=7)
    p.add_argument(
        "--single-device",
        action="store_true",
        help="do not split batches over all local devices (the default when there are several)",
    )
    p.add_argument(
        "--early",
        type=pathlib.Path,
        metavar="RESULTS_JSON",
        help="instead of an ablation: retrain every arm of that run at its AUC-chosen lr (same seeds, "
        "config and schedule) for only --early-stop steps, evaluating every --early-fine-every steps up "
        "to --early-fine, then every --eval-every; reports steps to 0.2 and 0.1 at that resolution",
    )
    p.add_argument("--early-stop", type=int, default=1400, help="with --early: steps to train")
    p.add_argument("--early-fine", type=int, default=300, help="with --early: end of the fine evaluations")
    p.add_argument("--early-fine-every", type=int, default=2, help="with --early: their spacing (steps)")
    p.add_argument(
        "--extra",
        type=pathlib.Path,
        nargs="+",
        metavar="RESULTS_JSON",
        help="instead of an ablation: extra comparisons from a full run's results.json (and optionally a "
        "long run's), written to OUT/extra_comparisons.json and .md; trains nothing",
    )
    p.add_argument("--out", type=pathlib.Path, required=True)
    return p.parse_args(argv)


# --- learning-rate grid and selection -------------------------------------------------------


def neighbour_lr(lr: float, direction: int) -> float:
    """The next value of the 1-3-10 grid above (``+1``) or below (``-1``) ``lr``.

    Examples:
      >>> neighbour_lr(3e-2, +1), neighbour_lr(1e-2, +1), neighbour_lr(1e-3, -1)
      (0.1, 0.03, 0.0003)
    """
    exponent = math.floor(math.log10(lr) + 1e-9)
    mantissa = lr / 10**exponent
    grid = [1.0, 3.0, 10.0] if direction > 0 else [0.3, 1.0, 3.0]
    if direction > 0:
        nxt = next(g for g in grid if g > mantissa * (1 + 1e-6))
    else:
        nxt = next(g for g in reversed(grid) if g < mantissa * (1 - 1e-6))
    return float(f"{nxt * 10**exponent:.3g}")


def select_lr(scores: dict[float, float]) -> float:
    """The learning rate with the lowest score (ties: the smaller rate)."""
    return min(sorted(scores), key=lambda lr: scores[lr])


def lr_to_add(scores_by_criterion: list[dict[float, float]], tried: list[float]) -> float | None:
    """A learning rate beyond the grid's edge if any criterion's choice sits on that edge."""
    tried = sorted(tried)
    for scores in scores_by_criterion:
        best = select_lr(scores)
        for edge, direction in ((tried[0], -1), (tried[-1], +1)):
            candidate = neighbour_lr(edge, direction)
            if best == edge and LR_RANGE[0] <= candidate <= LR_RANGE[1] and candidate not in tried:
                return candidate
    return None


# --- statistics ------------------------------------------------------------------------------


def paired_interval(a, b, *, confidence: float = 0.95) -> dict:
    """Mean of the paired differences ``a - b`` with its two-sided Student-t interval.

    Examples:
      >>> r = paired_interval([3.0, 5.0, 4.0], [1.0, 2.0, 3.0])
      >>> r["mean"], r["n"], round(r["low"], 3), round(r["high"], 3), r["significant"]
      (2.0, 3, -0.484, 4.484, False)
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = d.size
    mean = float(d.mean())
    if n < 2:
        return {"mean": mean, "n": n, "low": float("nan"), "high": float("nan"), "significant": False}
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    low, high = mean - half, mean + half
    return {"mean": mean, "n": n, "low": low, "high": high, "significant": bool(low > 0 or high < 0)}


def loss_optima(est: toy.BayesEstimates, y: np.ndarray, losses: list[str], task: toy.TaskConfig) -> dict:
    """Test MAE of each loss's own population optimum (an infinitely flexible model, trained to the end).

    L1 is minimised by the posterior median of y, L2 by its mean, Smooth L1 by something between
    (reported as the median's); a cross-entropy against a label q(y) by p = E[q(y) | x], decoded to
    E[mean of q(y) | x]: the posterior mean for DFL (its two-hot label's mean is y), E[round(y) | x]
    for one-hot, and for HL-Gauss the posterior mean of its label's (biased near the ends) mean.
    """
    bins = np.arange(task.num_bins, dtype=np.float64)
    out = {}
    for loss in losses:
        sigma = toy.hl_gauss_sigma(loss)
        if loss in ("l1", "smooth_l1", "dist_l1"):
            pred = est.median
        elif loss in ("l2", "dfl"):
            pred = est.mean
        elif loss == "onehot":
            pred = est.expectation(np.round)
        elif sigma is not None:
            label_mean = lambda ys, s=sigma: np.asarray(hl_gauss(ys, task.num_bins, sigma=s)) @ bins
            pred = est.expectation(label_mean)
        else:
            continue
        out[loss] = float(np.abs(pred - y).mean())
    return out


# --- one arm ---------------------------------------------------------------------------------


def run_records(result: toy.RunResult, y_test: np.ndarray, thresholds: dict[str, float]) -> list[dict]:
    """Per-seed records of one (arm, learning rate) run."""
    errors = np.abs(result.test_predictions - y_test)
    small = y_test < np.median(y_test)
    records = []
    for i, seed in enumerate(result.seeds):
        test_curve = result.test_curves[i]
        records.append(
            {
                "loss": result.loss,
                "seed": seed,
                "lr": result.learning_rate,
                "final_mae": float(errors[i].mean()),
                "mae_small": float(errors[i][small].mean()),
                "mae_large": float(errors[i][~small].mean()),
                "final_val_mae": float(result.curves[i, -1]),
                "val_auc": toy.area_under_curve(result.steps, result.curves[i]),
                "steps_to_target": {
                    name: toy.steps_to_reach(result.steps, test_curve, t) for name, t in thresholds.items()
                },
                "curve": [[s, float(m)] for s, m in zip(result.steps, result.curves[i], strict=True)],
                "test_curve": [[s, float(m)] for s, m in zip(result.steps, test_curve, strict=True)],
                "seconds": result.seconds,
                "seconds_per_step": result.seconds_per_step,
            }
        )
    return records


def summarise(runs: list[dict], losses: list[str], thresholds: dict[str, float], timing: dict) -> dict:
    """Per-arm results at the chosen learning rates, and paired differences against the reference."""
    rows: dict[str, dict] = {}
    for loss in losses:
        for criterion in ("auc", "final"):
            chosen = sorted(
                (r for r in runs if r["loss"] == loss and r[f"selected_{criterion}"]), key=lambda r: r["seed"]
            )
            final = np.array([r["final_mae"] for r in chosen])
            row = {
                "lr": chosen[0]["lr"],
                "final_mae": final.tolist(),
                "final_mae_mean": float(final.mean()),
                "final_mae_std": float(final.std(ddof=1)) if final.size > 1 else 0.0,
            }
            if criterion == "auc":
                ms = timing[loss]["median_s_per_step"] * 1e3
                row["ms_per_step"] = ms
                row["steps_to_target"] = {}
                for name in thresholds:
                    reach = [r["steps_to_target"][name] for r in chosen]
                    hit = [s for s in reach if s is not None]
                    row["steps_to_target"][name] = {
                        "per_seed": reach,
                        "reached": len(hit),
                        "median": float(np.median(hit)) if len(hit) == len(reach) else None,
                        "mean": float(np.mean(hit)) if len(hit) == len(reach) else None,
                        "seconds_median": float(np.median(hit)) * ms / 1e3
                        if len(hit) == len(reach)
                        else None,
                    }
            rows.setdefault(loss, {})[criterion] = row

    paired: dict[str, dict] = {}
    if REFERENCE in losses:
        for loss in losses:
            if loss == REFERENCE:
                continue
            entry: dict = {}
            for criterion in ("auc", "final"):
                a, b = rows[loss][criterion], rows[REFERENCE][criterion]
                entry[f"final_mae_{criterion}_lr"] = paired_interval(a["final_mae"], b["final_mae"])
            entry["steps_to_target"] = {}
            for name in thresholds:
                a = rows[loss]["auc"]["steps_to_target"][name]["per_seed"]
                b = rows[REFERENCE]["auc"]["steps_to_target"][name]["per_seed"]
                if all(s is not None for s in a + b):
                    entry["steps_to_target"][name] = paired_interval(a, b)
                else:
                    entry["steps_to_target"][name] = None  # some seed never reached it
            paired[loss] = entry
    return {"rows": rows, "paired_vs_" + REFERENCE: paired}


# --- output ----------------------------------------------------------------------------------


def _fmt_interval(p: dict | None, digits: int) -> str:
    if p is None:
        return "n/a"
    star = " *" if p["significant"] else ""
    return f"{p['mean']:+.{digits}f} [{p['low']:+.{digits}f}, {p['high']:+.{digits}f}]{star}"


def markdown_tables(summary: dict, losses: list[str], thresholds: dict[str, float], floor: dict) -> str:
    rows, paired = summary["rows"], summary.get("paired_vs_" + REFERENCE, {})
    names = list(thresholds)
    n = len(rows[losses[0]]["auc"]["final_mae"])
    out = [
        f"Noise floor (test set): MAE of the posterior median {floor['test']['median']:.4f} bins "
        f"(posterior mean {floor['test']['mean']:.4f}, mode {floor['test']['mode']:.4f}).\n",
        "**Learning rate chosen by the area under the validation-MAE curve** (test MAE, mean ± sd; "
        "its loss's optimum = the test MAE of what that loss is minimised by, given the signal; steps to "
        f"reach each test-MAE threshold, median over seeds, `-` when not every seed reached it; n = {n}):\n",
        "| loss | lr | final test MAE | / floor | its loss's optimum | "
        + " | ".join(f"steps to {k}" for k in names)
        + " | ms/step | seconds to "
        + names[1]
        + " |",
        "|---" * (7 + len(names)) + "|",
    ]
    for loss in losses:
        r = rows[loss]["auc"]
        steps = []
        for k in names:
            s = r["steps_to_target"][k]
            steps.append(f"{s['median']:.0f}" if s["median"] is not None else f"- ({s['reached']}/{n})")
        sec = r["steps_to_target"][names[1]]["seconds_median"]
        out.append(
            f"| {loss} | {r['lr']:g} | {r['final_mae_mean']:.4f} ± {r['final_mae_std']:.4f} "
            f"| {r['final_mae_mean'] / floor['test']['median']:.3f} "
            f"| {floor.get('loss_optimum', {}).get(loss, float('nan')):.4f} | "
            + " | ".join(steps)
            + f" | {r['ms_per_step']:.2f} | {'-' if sec is None else f'{sec:.2f}'} |"
        )
    out += [
        "",
        "**Learning rate chosen by the final validation MAE** (test MAE):\n",
        "| loss | lr | final test MAE | / floor | paired diff vs dfl (95 % CI) |",
        "|---|---|---|---|---|",
    ]
    for loss in losses:
        r = rows[loss]["final"]
        p = paired.get(loss, {}).get("final_mae_final_lr")
        out.append(
            f"| {loss} | {r['lr']:g} | {r['final_mae_mean']:.4f} ± {r['final_mae_std']:.4f} "
            f"| {r['final_mae_mean'] / floor['test']['median']:.3f} | {_fmt_interval(p, 4) if p else ''} |"
        )
    if paired:
        out += [
            "",
            f"**Paired differences against dfl** (arm minus dfl, mean over seeds with its 95 % t-interval, "
            f"n = {n}; `*` = the interval excludes 0; steps only where every seed of both reached the "
            "threshold; lr chosen by area under the curve):\n",
            "| loss | final test MAE | " + " | ".join(f"steps to {k}" for k in names) + " |",
            "|---" * (2 + len(names)) + "|",
        ]
        for loss in losses:
            if loss == REFERENCE:
                continue
            p = paired[loss]
            out.append(
                f"| {loss} | {_fmt_interval(p['final_mae_auc_lr'], 4)} | "
                + " | ".join(_fmt_interval(p["steps_to_target"][k], 0) for k in names)
                + " |"
            )
    return "\n".join(out) + "\n"


def _chosen(runs: list[dict], loss: str) -> list[dict]:
    return sorted((r for r in runs if r["loss"] == loss and r["selected_auc"]), key=lambda r: r["seed"])


def plot_curves(runs: list[dict], losses: list[str], path: pathlib.Path, title: str, floor: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, loss in enumerate(losses):
        chosen = _chosen(runs, loss)
        steps = np.array([s for s, _ in chosen[0]["test_curve"]])
        curves = np.array([[m for _, m in r["test_curve"]] for r in chosen])
        mean, lo, hi = curves.mean(0), curves.min(0), curves.max(0)
        style = "-" if toy.is_distribution(loss) else "--"
        (line,) = ax.plot(steps[1:], mean[1:], style, color=f"C{i}", label=f"{loss} (lr {chosen[0]['lr']:g})")
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


def plot_steps(summary: dict, losses: list[str], thresholds: dict[str, float], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(thresholds)
    width = 0.8 / len(losses)
    for i, loss in enumerate(losses):
        for j, name in enumerate(names):
            per_seed = summary["rows"][loss]["auc"]["steps_to_target"][name]["per_seed"]
            x = j + (i - (len(losses) - 1) / 2) * width
            hit = [s for s in per_seed if s is not None]
            if hit:
                ax.scatter([x] * len(hit), hit, color=f"C{i}", s=12, label=loss if j == 0 else None)
            if len(hit) < len(per_seed):
                ax.scatter([x], [1.2e4], marker="x", color=f"C{i}", label=None)
    ax.set_xticks(range(len(names)), [f"{k}\n({thresholds[k]:.3f})" for k in names])
    ax.set_yscale("log")
    ax.set_xlabel("test-MAE threshold (bins)")
    ax.set_ylabel("steps to reach it (each seed; x = some seed never did)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- early-resolution rerun ----------------------------------------------------------------------

EARLY_THRESHOLDS = [0.2, 0.1]


def early_eval_steps(stop: int, fine: int, fine_every: int, every: int) -> list[int]:
    """Every ``fine_every`` steps up to ``fine``, then every ``every`` steps up to ``stop``.

    Examples:
      >>> early_eval_steps(40, 10, 2, 10)
      [0, 2, 4, 6, 8, 10, 20, 30, 40]
    """
    fine = min(fine, stop)
    steps = list(range(0, fine + 1, fine_every))
    steps += list(range(steps[-1] + every, stop + 1, every))
    if steps[-1] != stop:
        steps.append(stop)
    return steps


def run_early(args: argparse.Namespace) -> dict:
    """Retrain the arms of a finished run for its first steps only, evaluated finely (``--early``).

    Same seeds, task, trunk, batch, optimiser and schedule as the source run (the schedule's
    length stays the source run's steps; training just stops at ``--early_stop``), so up to that
    step each arm repeats the source run's training at its AUC-chosen learning rate. Only the
    evaluation grid differs; the test curves at the steps both runs evaluated are compared as a check.
    """
    source = json.loads(args.early.read_text())
    cfg = source["config"]
    task = toy.TaskConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["task"].items()})
    train_config = toy.TrainConfig(**cfg["train"])
    if args.early_stop > train_config.steps:
        raise ValueError(
            f"--early-stop {args.early_stop} exceeds the source run's {train_config.steps} steps"
        )
    losses = args.losses or cfg["losses"]
    seeds = cfg["seeds"]
    lrs = {loss: source["selected_lrs"][loss]["auc"] for loss in losses}
    eval_steps = early_eval_steps(args.early_stop, args.early_fine, args.early_fine_every, args.eval_every)
    device = device_info()
    started = time.perf_counter()
    x_test, y_test = toy.make_batch(jax.random.key(TEST_SEED), train_config.eval_size, task)
    thresholds = {f"{t:g}": t for t in EARLY_THRESHOLDS}
    per_arm: dict[str, dict] = {}
    for loss in tqdm(losses, desc="early", unit="arm"):
        result = toy.train(
            loss,
            seeds,
            task=task,
            train_config=train_config,
            learning_rate=lrs[loss],
            eval_data=(x_test, y_test),  # the curves are test MAE; nothing is chosen here
            test_inputs=x_test,
            eval_steps=eval_steps,
        )
        source_runs = sorted(
            (r for r in source["runs"] if r["loss"] == loss and r["selected_auc"]), key=lambda r: r["seed"]
        )
        # Check: the source run's test curve at the steps both evaluated.
        index = {s: i for i, s in enumerate(result.steps)}
        diffs = [
            abs(m - float(result.curves[k, index[s]]))
            for k, r in enumerate(source_runs)
            for s, m in r["test_curve"]
            if s in index
        ]
        per_arm[loss] = {
            "lr": lrs[loss],
            "steps_to_target": {
                name: [toy.steps_to_reach(result.steps, c, t) for c in result.curves]
                for name, t in thresholds.items()
            },
            "source_steps_to_target": {
                name: [r["steps_to_target"][name] for r in source_runs] for name in thresholds
            },
            "max_abs_diff_from_source_test_curve": max(diffs),
            "test_curve": result.curves.tolist(),
            "seconds": result.seconds,
        }
    wall = time.perf_counter() - started
    summary: dict[str, dict] = {}
    for loss in losses:
        entry = {}
        for name in thresholds:
            reach = per_arm[loss]["steps_to_target"][name]
            ref = per_arm[REFERENCE]["steps_to_target"][name] if REFERENCE in per_arm else None
            complete = all(s is not None for s in reach)
            entry[name] = {
                "per_seed": reach,
                "reached": sum(s is not None for s in reach),
                "median": float(np.median(reach)) if complete else None,
                "mean": float(np.mean(reach)) if complete else None,
                "paired_vs_" + REFERENCE: paired_interval(reach, ref)
                if ref is not None and loss != REFERENCE and complete and all(s is not None for s in ref)
                else None,
            }
        summary[loss] = entry
    config = {
        "command": "python experiments/toy_regression/main.py " + " ".join(args.argv),
        "source": str(args.early),
        "source_command": cfg["command"],
        "losses": losses,
        "seeds": seeds,
        "learning_rates": lrs,
        "eval_steps": eval_steps,
        "train": dataclasses.asdict(train_config),
        "task": dataclasses.asdict(task),
        "thresholds": thresholds,
        "steps_to_target": "first evaluation step at which the test MAE is at or below the threshold",
        "note": "the source run's schedule (warm-up + cosine over train.steps) and data stream; training "
        "stops early. Curves are test MAE on the source run's test set.",
        "seconds_total": wall,
    }
    out = {"device": device, "config": config, "summary": summary, "arms": per_arm}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(out, indent=1))
    names = list(thresholds)
    lines = [
        f"# Steps to the early thresholds at fine resolution: {', '.join(losses)}\n",
        f"`{config['command']}` on {device['device_count']} x {device['device_kind']} "
        f"({device['platform']}), "
        f"jax {device['jax']}, {device['date']}; {wall:.0f} s in all.\n",
        f"Each arm retrained at the lr chosen by area under the curve in `{args.early}` (seeds "
        f"{seeds[0]}..{seeds[-1]}, the same schedule over {train_config.steps} steps, the same data "
        f"stream), stopped at step {args.early_stop}. Test MAE every {args.early_fine_every} steps up to "
        f"{args.early_fine}, then every {args.eval_every}. Steps: median over seeds (per seed in "
        "brackets); paired difference arm minus dfl, mean [95 % t-interval], n = "
        f"{len(seeds)}, `*` = excludes 0, uncorrected.\n",
        "| arm | lr | " + " | ".join(f"to {k}: median (per seed) | vs dfl" for k in names) + " |",
        "|---|---|" + "---|---|" * len(names),
    ]
    for loss in losses:
        cells = []
        for k in names:
            e = summary[loss][k]
            per = ", ".join("-" if s is None else str(s) for s in e["per_seed"])
            med = f"{e['median']:.0f}" if e["median"] is not None else f"- ({e['reached']}/{len(seeds)})"
            cells += [
                f"{med} ({per})",
                _fmt_interval(e["paired_vs_" + REFERENCE], 0) if loss != REFERENCE else "",
            ]
        lines.append(f"| {loss} | {lrs[loss]:g} | " + " | ".join(cells) + " |")
    worst = max(a["max_abs_diff_from_source_test_curve"] for a in per_arm.values())
    lines.append(
        "\nCheck against the source run: at the steps both evaluated, the test MAE "
        + ("is identical" if worst == 0 else f"differs by at most {worst:.2g} bins")
        + ".\n"
    )
    (args.out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return out


# --- extra comparisons from saved results (no training) ---------------------------------------


def holm(pvalues: dict[str, float], alpha: float = 0.05) -> dict[str, bool]:
    """Holm's step-down correction: which tests stay significant at family-wise level ``alpha``.

    Examples:
      >>> sorted(holm({"a": 0.01, "b": 0.04, "c": 0.03}).items())  # 0.01 <= 0.05 / 3; 0.03 > 0.05 / 2
      [('a', True), ('b', False), ('c', False)]
    """
    keep, ordered = {}, sorted(pvalues, key=pvalues.get)
    for rank, name in enumerate(ordered):
        keep[name] = pvalues[name] <= alpha / (len(ordered) - rank)
        if not keep[name]:
            keep.update({later: False for later in ordered[rank:]})
            break
    return keep


def _paired_p(a, b) -> float:
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.std(ddof=1) == 0:
        return 1.0 if d.mean() == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def _per_seed(results: dict, loss: str, lr: float | None = None) -> list[dict]:
    if lr is None:
        return _chosen(results["runs"], loss)
    return sorted(
        (r for r in results["runs"] if r["loss"] == loss and r["lr"] == lr), key=lambda r: r["seed"]
    )


def _log_auc(curve) -> float:
    """Validation MAE averaged over log(step) from step 10 (each decade weighs the same)."""
    steps = np.array([s for s, _ in curve], dtype=np.float64)
    mae = np.array([m for _, m in curve])
    keep = steps >= 10
    x = np.log(steps[keep])
    return float(np.sum(np.diff(x) * 0.5 * (mae[keep][1:] + mae[keep][:-1])) / (x[-1] - x[0]))


def extra_comparisons(full: dict, long: dict | None) -> dict:
    """Comparisons the review asked for, computed from saved results.json files only."""
    losses = full["config"]["losses"]
    rows = full["summary"]["rows"]
    steps_of = lambda loss, name: rows[loss]["auc"]["steps_to_target"][name]["per_seed"]
    names = list(full["config"]["thresholds"])
    out: dict = {}

    # Scalar losses against each other (lr by area under the curve).
    scalar: dict = {}
    for a, b in (("l2", "l1"), ("l2", "smooth_l1"), ("smooth_l1", "l1")):
        entry = {"final_mae": paired_interval(rows[a]["auc"]["final_mae"], rows[b]["auc"]["final_mae"])}
        for name in names:
            sa, sb = steps_of(a, name), steps_of(b, name)
            ok = all(s is not None for s in sa + sb)
            entry[f"steps_to_{name}"] = paired_interval(sa, sb) if ok else None
        scalar[f"{a} - {b}"] = entry
    out["scalar_pairs"] = scalar

    # Per-seed steps to 0.1: scalar heads, dist_l1, dfl.
    out["steps_to_0.1_per_seed"] = {loss: steps_of(loss, "0.1") for loss in losses}

    # dist_l1 at every learning rate: which seeds stall.
    dist = {}
    for lr in full["selected_lrs"]["dist_l1"]["tried"]:
        recs = _per_seed(full, "dist_l1", lr)
        dist[f"{lr:g}"] = {
            "final_mae_per_seed": [round(r["final_mae"], 4) for r in recs],
            "stalled_seeds (final MAE > 0.09)": [r["seed"] for r in recs if r["final_mae"] > 0.09],
        }
    out["dist_l1_by_lr"] = dist

    # End point against each arm's own optimum.
    optimum = full["noise_floor"]["loss_optimum"]
    out["final_minus_own_optimum"] = {
        loss: rows[loss]["auc"]["final_mae_mean"] - optimum[loss] for loss in losses if loss in optimum
    }

    # Learning-rate choice under other criteria, and the best steps to 0.1 anywhere on the grid.
    choice, best01 = {}, {}
    for loss in losses:
        tried = full["selected_lrs"][loss]["tried"]
        log_auc = {
            lr: float(np.mean([_log_auc(r["curve"]) for r in _per_seed(full, loss, lr)])) for lr in tried
        }
        choice[loss] = {
            "auc": full["selected_lrs"][loss]["auc"],
            "final": full["selected_lrs"][loss]["final"],
            "log_step_auc": select_lr(log_auc),
            "tried": tried,
        }
        medians = {}
        for lr in tried:
            reach = [r["steps_to_target"]["0.1"] for r in _per_seed(full, loss, lr)]
            medians[f"{lr:g}"] = float(np.median(reach)) if all(s is not None for s in reach) else None
        done = {lr: m for lr, m in medians.items() if m is not None}
        best01[loss] = {
            "median_by_lr": medians,
            "best": min(done.values()) if done else None,
            "at_lr": min(done, key=done.get) if done else None,
        }
    out["lr_choice"] = choice
    steps = np.array(full["config"]["eval_steps"], dtype=np.float64)
    out["auc_weight_of_first_200_steps"] = 200 / steps[-1]
    out["best_median_steps_to_0.1_over_the_grid"] = best01

    # HL-Gauss label mean at the range ends.
    bins = np.arange(full["config"]["task"]["num_bins"], dtype=np.float64)
    top = float(bins[-1])
    out["hl_gauss_label_mean_bias"] = {
        f"sigma={s:g}": {
            f"y={y:g}": float(np.asarray(hl_gauss(np.float32(y), bins.size, sigma=s)) @ bins - y)
            for y in (0.0, 0.5, 1.0, 2.0, top / 2)
        }
        for s in (0.25, 0.5, 0.75)
    }

    # Every paired test reported in the runs' summaries, with Holm's correction over them all.
    pvalues, tests = {}, {}
    for tag, res in (("full", full), ("long", long)):
        if res is None:
            continue
        r = res["summary"]["rows"]
        for loss in res["config"]["losses"]:
            if loss == REFERENCE:
                continue
            for crit in ("auc", "final"):
                key = f"{tag}: {loss} - dfl, final MAE (lr by {crit})"
                a, b = r[loss][crit]["final_mae"], r[REFERENCE][crit]["final_mae"]
                tests[key], pvalues[key] = paired_interval(a, b), _paired_p(a, b)
            for name in res["config"]["thresholds"]:
                a = r[loss]["auc"]["steps_to_target"][name]["per_seed"]
                b = r[REFERENCE]["auc"]["steps_to_target"][name]["per_seed"]
                if all(s is not None for s in a + b) and np.std(np.subtract(a, b)) > 0:
                    key = f"{tag}: {loss} - dfl, steps to {name}"
                    tests[key], pvalues[key] = paired_interval(a, b), _paired_p(a, b)
    for key, entry in scalar.items():
        for what, p in entry.items():
            if p is not None:
                a_b = key.split(" - ")
                if what == "final_mae":
                    a, b = rows[a_b[0]]["auc"]["final_mae"], rows[a_b[1]]["auc"]["final_mae"]
                else:
                    a, b = steps_of(a_b[0], what[9:]), steps_of(a_b[1], what[9:])
                name = f"full: {key}, {what.replace('_', ' ')}"
                tests[name], pvalues[name] = p, _paired_p(a, b)
    keep = holm(pvalues)
    out["multiple_comparisons"] = {
        "family": "every paired t-test in the full and long runs' summaries (arm - dfl, final MAE "
        "under both lr criteria, steps to each threshold where all seeds got there and the "
        "differences vary) plus the scalar pairs above",
        "tests": len(pvalues),
        "results": {
            k: {**tests[k], "p": pvalues[k], "significant_uncorrected": pvalues[k] < 0.05, "holm": keep[k]}
            for k in sorted(pvalues, key=pvalues.get)
        },
    }
    if long is not None:
        lrows = long["summary"]["rows"]
        out["long_run_final_mae"] = {
            loss: {"6000": rows[loss]["auc"]["final_mae_mean"], "18000": lrows[loss]["auc"]["final_mae_mean"]}
            for loss in long["config"]["losses"]
        }
    return out


def extra_markdown(extra: dict) -> str:
    lines = ["# Extra comparisons from the saved results (no training)\n"]
    lines += ["## Scalar losses against each other (lr by area under the curve; paired, n = 5)\n"]
    pairs = extra["scalar_pairs"]
    keys = list(next(iter(pairs.values())))
    lines += [
        "| pair | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
        "|---" * (1 + len(keys)) + "|",
    ]
    for pair, entry in pairs.items():
        digits = lambda k: 4 if k == "final_mae" else 0
        lines.append(f"| {pair} | " + " | ".join(_fmt_interval(entry[k], digits(k)) for k in keys) + " |")
    lines += ["\n## Steps to 0.1 per seed (seeds 0..4; `None` = never)\n"]
    lines += [f"- {loss}: {s}" for loss, s in extra["steps_to_0.1_per_seed"].items()]
    lines += ["\n## dist_l1 at every learning rate (final test MAE per seed)\n"]
    lines += [f"- lr {lr}: {v}" for lr, v in extra["dist_l1_by_lr"].items()]
    lines += ["\n## Final test MAE minus the arm's own optimum\n"]
    lines += [f"- {loss}: {v:+.4f}" for loss, v in extra["final_minus_own_optimum"].items()]
    lines += [
        "\n## Learning-rate choice by criterion; best median steps to 0.1 anywhere on the grid\n",
        f"Linear-step AUC: the first 200 steps carry {extra['auc_weight_of_first_200_steps']:.1%} of the "
        "weight. Log-step AUC: validation MAE averaged over log(step) from step 10.\n",
        "| arm | lrs tried | auc | final | log-step auc | best median steps to 0.1 (at lr) |",
        "|---|---|---|---|---|---|",
    ]
    for loss, c in extra["lr_choice"].items():
        b = extra["best_median_steps_to_0.1_over_the_grid"][loss]
        best = "-" if b["best"] is None else f"{b['best']:.0f} ({b['at_lr']})"
        tried = ", ".join(f"{x:g}" for x in c["tried"])
        lines.append(f"| {loss} | {tried} | {c['auc']:g} | {c['final']:g} | {c['log_step_auc']:g} | {best} |")
    lines += ["\n## HL-Gauss label mean minus y (bins), support edges at -0.5 and 16.5\n"]
    for s, v in extra["hl_gauss_label_mean_bias"].items():
        lines.append(f"- {s}: " + ", ".join(f"{y}: {b:+.4f}" for y, b in v.items()))
    mc = extra["multiple_comparisons"]
    lines += [
        f"\n## Multiple comparisons: {mc['tests']} paired t-tests, Holm-corrected at 0.05\n",
        mc["family"] + ". Seed-only intervals: the test set is held fixed.\n",
        "| test | mean [95 % CI] | p | uncorrected | Holm |",
        "|---|---|---|---|---|",
    ]
    for k, r in mc["results"].items():
        digits = 4 if "MAE" in k or "mae" in k else 0
        lines.append(
            f"| {k} | {_fmt_interval(r, digits)} | {r['p']:.2g} "
            f"| {'yes' if r['significant_uncorrected'] else 'no'} | {'yes' if r['holm'] else 'no'} |"
        )
    if "long_run_final_mae" in extra:
        lines += ["\n## Final test MAE at 6000 and 18000 steps (lr 0.01)\n"]
        lines += [
            f"- {k}: {v['6000']:.4f} -> {v['18000']:.4f}" for k, v in extra["long_run_final_mae"].items()
        ]
    return "\n".join(lines) + "\n"


def run_extra(args: argparse.Namespace) -> dict:
    full = json.loads(args.extra[0].read_text())
    long = json.loads(args.extra[1].read_text()) if len(args.extra) > 1 else None
    extra = extra_comparisons(full, long)
    extra["command"] = "python experiments/toy_regression/main.py " + " ".join(args.argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "extra_comparisons.json").write_text(json.dumps(extra, indent=1))
    text = extra_markdown(extra)
    (args.out / "extra_comparisons.md").write_text(f"`{extra['command']}`\n\n" + text)
    print(text)
    return extra


# --- main ------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.early is not None:
        return run_early(args)
    if args.extra:
        return run_extra(args)
    preset = dict(PRESETS[args.preset])
    n_seeds = args.seeds or preset["seeds"]
    seeds = list(range(args.seed, args.seed + n_seeds))
    losses = args.losses or preset["losses"]
    lrs = sorted(args.lr or preset["lrs"])
    extend = preset["extend_lr_grid"] and not args.no_extend
    task = toy.TaskConfig()
    train_config = toy.TrainConfig(
        hidden=preset["hidden"],
        batch_size=preset["batch"],
        steps=args.steps or preset["steps"],
        eval_every=args.eval_every,
        eval_size=args.eval_size,
    )
    eval_steps = toy.log_eval_steps(train_config.steps, every=args.eval_every, ratio=args.eval_ratio)
    device = device_info()
    # Data parallel over every local device (after jax.distributed.initialize(), every device).
    mesh = None if args.single_device or jax.device_count() == 1 else parallel.data_mesh()
    device["data_parallel_devices"] = 1 if mesh is None else mesh.size
    print(
        f"device: {device['device_count']} x {device['device_kind']} ({device['platform']}), "
        f"data parallel over {device['data_parallel_devices']}"
    )
    started = time.perf_counter()
    phase_seconds: dict[str, float] = {}

    x_val, y_val = toy.make_batch(jax.random.key(EVAL_SEED), args.eval_size, task)
    x_test, y_test = toy.make_batch(jax.random.key(TEST_SEED), args.eval_size, task)
    y_val_np, y_test_np = np.asarray(y_val), np.asarray(y_test)

    # The noise floor: the Bayes-optimal estimator's MAE on the same sets.
    floor: dict = {}
    for name, x, y in (("validation", x_val, y_val_np), ("test", x_test, y_test_np)):
        est = toy.bayes_estimates(x, task)
        floor[name] = {
            "median": float(np.abs(est.median - y).mean()),
            "mean": float(np.abs(est.mean - y).mean()),
            "mode": float(np.abs(est.mode - y).mean()),
            "max_mass_outside_window": float(est.mass_outside.max()),
        }
        if name == "test":
            floor["loss_optimum"] = loss_optima(est, y, losses, task)
    phase_seconds["noise_floor"] = time.perf_counter() - started
    thresholds = {f"{t:g}": t for t in THRESHOLDS}
    thresholds["floor+10%"] = FLOOR_MARGIN * floor["test"]["median"]
    print(f"noise floor (posterior-median MAE): test {floor['test']['median']:.4f} bins")

    runs: list[dict] = []
    selected_lrs: dict[str, dict] = {}
    with tqdm(
        total=len(losses) * len(lrs) * eval_steps[-1], desc="training", unit="step", mininterval=2.0
    ) as bar:
        for loss in losses:
            results: dict[float, toy.RunResult] = {}
            pending = list(lrs)
            while pending:
                lr = pending.pop(0)
                bar.set_postfix(loss=loss, lr=lr)
                results[lr] = toy.train(
                    loss,
                    seeds,
                    task=task,
                    train_config=train_config,
                    learning_rate=lr,
                    eval_data=(x_val, y_val),
                    test_inputs=x_test,
                    test_targets=y_test,
                    mesh=mesh,
                    progress=bar.update,
                    eval_steps=eval_steps,
                )
                if not pending and extend:
                    # Criteria on validation data only; a choice on the grid's edge extends it.
                    auc = {
                        lr: float(np.mean([toy.area_under_curve(r.steps, c) for c in r.curves]))
                        for lr, r in results.items()
                    }
                    final = {lr: float(r.curves[:, -1].mean()) for lr, r in results.items()}
                    extra = lr_to_add([auc, final], list(results))
                    if extra is not None:
                        pending.append(extra)
                        bar.total += eval_steps[-1]
            auc = {
                lr: float(np.mean([toy.area_under_curve(r.steps, c) for c in r.curves]))
                for lr, r in results.items()
            }
            final = {lr: float(r.curves[:, -1].mean()) for lr, r in results.items()}
            choice = {"auc": select_lr(auc), "final": select_lr(final)}
            selected_lrs[loss] = {**choice, "val_auc": auc, "val_final_mae": final, "tried": sorted(results)}
            for lr in sorted(results):
                for record in run_records(results[lr], y_test_np, thresholds):
                    record["selected_auc"] = lr == choice["auc"]
                    record["selected_final"] = lr == choice["final"]
                    record["selected"] = record["selected_auc"]
                    runs.append(record)

    phase_seconds["training"] = time.perf_counter() - started - phase_seconds["noise_floor"]
    # Milliseconds per step: a separate round-robin pass, so every arm is timed under the same load.
    t_timing = time.perf_counter()
    timing = toy.time_steps(
        losses,
        seeds,
        task=task,
        train_config=train_config,
        learning_rates={loss: s["auc"] for loss, s in selected_lrs.items()},
        chunk=math.gcd(*eval_steps[1:]),  # as in training, so the compiled steps are reused
        rounds=args.timing_rounds,
        mesh=mesh,
    )
    phase_seconds["timing_pass"] = time.perf_counter() - t_timing
    wall = time.perf_counter() - started
    summary = summarise(runs, losses, thresholds, timing)

    config = {
        "preset": args.preset,
        "command": "python experiments/toy_regression/main.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "losses": losses,
        "seeds": seeds,
        "learning_rates": lrs,
        "lr_grid_extended_at_edges": extend,
        "lr_selection": "area under the validation-MAE curve: (1/T) * trapezoid integral over steps "
        "0..T of the validation MAE at the evaluation steps ('auc'); also the final validation MAE "
        "('final'). Test data choose nothing.",
        "eval_steps": eval_steps,
        "thresholds": thresholds,
        "steps_to_target": "first evaluation step at which the test MAE is at or below the threshold",
        "wall_clock_to_target": "median steps to target x the median ms/step of the timing pass",
        "task": dataclasses.asdict(task),
        "train": dataclasses.asdict(train_config),
        "optimizer": "adam, warmup + cosine decay",
        "noise_floor": "MAE of the posterior median of y (Bayes-optimal for absolute error) under the "
        "task's generative model, marginalised over blur and polarity; toy.bayes_estimates",
        "statistics": "paired per-seed differences (arm minus dfl), mean and two-sided 95 % Student-t "
        "interval with n - 1 degrees of freedom; significant when the interval excludes 0",
        "seconds_total": wall,
        "seconds_by_phase": phase_seconds,
        "notes": "'seconds' is the wall clock of the vmapped run shared by its seeds, compile included; "
        "ms/step is for all seeds together, from the timing pass",
    }
    results = {
        "device": device,
        "config": config,
        "noise_floor": floor,
        "timing": timing,
        "selected_lrs": selected_lrs,
        "summary": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))

    tables = markdown_tables(summary, losses, thresholds, floor)
    title = (
        f"toy edge localisation, {args.preset} preset, {len(seeds)} seeds (mean, band = min..max), "
        "lr by area under the curve"
    )
    plot_curves(runs, losses, args.out / "curves.png", title, floor["test"]["median"])
    plot_steps(summary, losses, thresholds, args.out / "steps_to_target.png")
    text = (
        f"# Toy regression ablation: {', '.join(losses)}\n\n"
        f"`{config['command']}` on {device['device_count']} x {device['device_kind']} "
        f"({device['platform']}, {device['host']}), jax {device['jax']}, {device['date']}; "
        f"{train_config.steps} steps, batch {train_config.batch_size}, seeds {seeds[0]}..{seeds[-1]}, "
        f"{wall:.0f} s in all.\n\n"
        f"Test MAE in bins on {args.eval_size} held-out signals; learning rates from {lrs}"
        f"{' (extended at the edges)' if extend else ''}, chosen on {args.eval_size} validation signals. "
        f"Evaluations at {len(eval_steps)} log-spaced steps. ms/step for all {len(seeds)} seeds together, "
        f"median of {args.timing_rounds} round-robin rounds.\n\n" + tables
    )
    (args.out / "summary.md").write_text(text)
    print("\n" + tables)
    print(f"wrote {args.out}/results.json, curves.png, steps_to_target.png, summary.md ({wall:.0f} s)")
    return results


if __name__ == "__main__":
    main()
