"""The study's work: held-out sets and the noise floor, each arm's learning-rate search, records.

Every (arm, learning rate) is one vmapped program over the seeds (:func:`train.train`); its record
(validation and test curves of every seed, final test errors) is written to ``out/records/`` as
soon as it finishes (:class:`experiments.common.store.RunStore`). The search is a function of the
records alone: per arm, the grid ``config.lrs`` is trained, then, while the learning rate chosen
by either criterion (area under the validation-MAE curve; final validation MAE) sits on an edge
of the tried rates, the next 1-3-10 value beyond that edge is added. A restarted study reads the
finished records instead of training them, so it takes the same decisions and gives the same
results as an uninterrupted one (tests/test_toy_machinery.py). The noise floor and the timing
pass are records too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np

from experiments.common.store import RunStore
from jax_dfl.histogram_losses import hl_gauss

from . import metrics
from .configs.default import ToyConfig
from .model import hl_gauss_sigma
from .task import BayesEstimates, TaskConfig, bayes_estimates, make_batch
from .train import TrainConfig, chunk_for, log_eval_steps, time_steps, train

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


def lr_to_add(
    scores_by_criterion: list[dict[float, float]], tried: list[float], lr_range: tuple[float, float]
) -> float | None:
    """A learning rate beyond the grid's edge if any criterion's choice sits on that edge."""
    tried = sorted(tried)
    for scores in scores_by_criterion:
        best = select_lr(scores)
        for edge, direction in ((tried[0], -1), (tried[-1], +1)):
            candidate = neighbour_lr(edge, direction)
            if best == edge and lr_range[0] <= candidate <= lr_range[1] and candidate not in tried:
                return candidate
    return None


def criteria(records: dict[float, dict]) -> dict[str, dict[float, float]]:
    """Per learning rate, the mean over seeds of each validation criterion."""
    auc = {
        lr: float(np.mean([metrics.area_under_curve(r["steps"], c) for c in r["val_curves"]]))
        for lr, r in records.items()
    }
    final = {lr: float(np.mean([c[-1] for c in r["val_curves"]])) for lr, r in records.items()}
    return {"auc": auc, "final": final}


# --- held-out sets and the noise floor ----------------------------------------------------------


@dataclasses.dataclass
class HeldOut:
    x_val: jax.Array
    y_val: jax.Array
    x_test: jax.Array
    y_test: jax.Array


def held_out(config: ToyConfig) -> HeldOut:
    """The validation and test sets, fixed by their seeds and shared by every run."""
    x_val, y_val = make_batch(jax.random.key(config.eval_seed), config.eval_size, config.task)
    x_test, y_test = make_batch(jax.random.key(config.test_seed), config.eval_size, config.task)
    return HeldOut(x_val, y_val, x_test, y_test)


def loss_optima(est: BayesEstimates, y: np.ndarray, losses, task: TaskConfig) -> dict:
    """Test MAE of each loss's own population optimum (an infinitely flexible model, trained to the end).

    L1 is minimised by the posterior median of y (in bins or in standard units alike), L2 by its
    mean, Smooth L1 by something between (reported as the median's); a cross-entropy against a
    label q(y) by p = E[q(y) | x], decoded to E[mean of q(y) | x]: the posterior mean for DFL (its
    two-hot label's mean is y), E[round(y) | x] for one-hot, and for HL-Gauss the posterior mean
    of its label's (biased near the ends) mean.
    """
    bins = np.arange(task.num_bins, dtype=np.float64)
    out = {}
    for loss in losses:
        sigma = hl_gauss_sigma(loss)
        if loss in ("l1", "l1_std", "smooth_l1", "dist_l1"):
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


def noise_floor(config: ToyConfig, data: HeldOut) -> dict:
    """The Bayes-optimal estimator's MAE on the validation and test sets, and each loss's optimum."""
    floor: dict = {}
    for name, x, y in (("validation", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
        y = np.asarray(y)
        est = bayes_estimates(x, config.task)
        floor[name] = {
            "median": float(np.abs(est.median - y).mean()),
            "mean": float(np.abs(est.mean - y).mean()),
            "mode": float(np.abs(est.mode - y).mean()),
            "max_mass_outside_window": float(est.mass_outside.max()),
        }
        if name == "test":
            floor["loss_optimum"] = loss_optima(est, y, config.losses, config.task)
    return floor


def thresholds(config: ToyConfig, floor: dict) -> dict[str, float]:
    """The test-MAE thresholds by name, the floor's margin last."""
    out = {f"{t:g}": t for t in config.thresholds}
    out["floor+10%"] = config.floor_margin * floor["test"]["median"]
    return out


def eval_steps(config: ToyConfig) -> list[int]:
    return log_eval_steps(config.train.steps, every=config.eval_every, ratio=config.eval_ratio)


def seeds(config: ToyConfig) -> list[int]:
    return list(range(config.first_seed, config.first_seed + config.seeds))


# --- records ------------------------------------------------------------------------------------


def run_key(loss: str, lr: float) -> str:
    return f"{loss}_lr{lr:g}"


def record_fields(config: ToyConfig) -> dict:
    """The settings a run's record depends on: a restart with other values is refused."""
    keep = ("seeds", "first_seed", "task", "train", "eval_every", "eval_ratio", "eval_size")
    keep += ("eval_seed", "test_seed")
    return {k: v for k, v in dataclasses.asdict(config).items() if k in keep}


def train_and_record(
    config: ToyConfig, loss: str, lr: float, data: HeldOut, store: RunStore, *, mesh=None, progress=None
) -> dict:
    """Train one (arm, learning rate) over every seed in one program and write its record."""
    result = train(
        loss,
        seeds(config),
        task=config.task,
        train_config=config.train,
        learning_rate=lr,
        eval_steps=eval_steps(config),
        eval_data=(data.x_val, data.y_val),
        test_inputs=data.x_test,
        test_targets=data.y_test,
        mesh=mesh,
        progress=progress,
    )
    y_test = np.asarray(data.y_test)
    errors = np.abs(result.test_predictions - y_test)
    small = y_test < np.median(y_test)
    record = {
        "loss": loss,
        "lr": lr,
        "seeds": result.seeds,
        "steps": result.steps,
        "val_curves": result.curves.tolist(),
        "test_curves": result.test_curves.tolist(),
        "final_mae": errors.mean(axis=1).tolist(),
        "mae_small": errors[:, small].mean(axis=1).tolist(),
        "mae_large": errors[:, ~small].mean(axis=1).tolist(),
        "seconds": result.seconds,
        "seconds_per_step": result.seconds_per_step,
    }
    store.write(run_key(loss, lr), record)
    return record


def run_arm(
    config: ToyConfig,
    loss: str,
    data: HeldOut,
    store: RunStore,
    *,
    mesh=None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[float, dict], dict]:
    """Every learning rate the search tries for ``loss`` (trained or read back), and its choice."""
    records: dict[float, dict] = {}
    pending = list(config.lrs)
    while pending:
        lr = pending.pop(0)
        if store.has(run_key(loss, lr)):
            records[lr] = store.read(run_key(loss, lr))
            if progress is not None:
                progress(config.train.steps)
        else:
            tic = time.perf_counter()
            records[lr] = train_and_record(config, loss, lr, data, store, mesh=mesh, progress=progress)
            log(f"{loss} lr {lr:g}: {len(records[lr]['seeds'])} seeds in {time.perf_counter() - tic:.0f} s")
        if not pending and config.extend_lr_grid:
            scores = criteria(records)
            extra = lr_to_add([scores["auc"], scores["final"]], list(records), config.lr_range)
            if extra is not None:
                pending.append(extra)
    scores = criteria(records)
    choice = {"auc": select_lr(scores["auc"]), "final": select_lr(scores["final"])}
    selected = {
        **choice,
        "val_auc": scores["auc"],
        "val_final_mae": scores["final"],
        "tried": sorted(records),
    }
    return records, selected


def per_seed_runs(record: dict, choice: dict, limits: dict[str, float]) -> list[dict]:
    """One entry per seed of an (arm, learning rate) record, with both crossing definitions."""
    out = []
    for i, seed in enumerate(record["seeds"]):
        val, test = record["val_curves"][i], record["test_curves"][i]
        out.append(
            {
                "loss": record["loss"],
                "seed": seed,
                "lr": record["lr"],
                "final_mae": record["final_mae"][i],
                "mae_small": record["mae_small"][i],
                "mae_large": record["mae_large"][i],
                "final_val_mae": val[-1],
                "val_auc": metrics.area_under_curve(record["steps"], val),
                "steps_to_target": metrics.crossings(record["steps"], test, limits),
                "curve": [[s, m] for s, m in zip(record["steps"], val, strict=True)],
                "test_curve": [[s, m] for s, m in zip(record["steps"], test, strict=True)],
                "seconds": record["seconds"],
                "seconds_per_step": record["seconds_per_step"],
                "selected_auc": record["lr"] == choice["auc"],
                "selected_final": record["lr"] == choice["final"],
            }
        )
    return out


def run_study(
    config: ToyConfig,
    out: pathlib.Path,
    *,
    mesh=None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Floor, every arm's search, the timing pass; resuming from ``out/records``. Returns the
    results' ``noise_floor``, ``thresholds``, ``selected_lrs``, ``runs``, ``timing`` and phase times."""
    store = RunStore(out / "records")
    fields = json.loads(json.dumps(record_fields(config)))  # as read back
    if store.has("settings") and store.read("settings") != fields:
        raise ValueError(
            f"{store.directory} holds records of other settings ({store.read('settings')}); "
            "use another --out or remove it"
        )
    store.write("settings", fields)
    phases: dict[str, float] = {}
    tic = time.perf_counter()
    data = held_out(config)
    if not store.has("noise_floor"):
        store.write("noise_floor", noise_floor(config, data))
    floor = store.read("noise_floor")
    missing = set(config.losses) - set(floor["loss_optimum"])
    if missing:  # arms added to a restarted study
        floor = noise_floor(config, data)
        store.write("noise_floor", floor)
    phases["noise_floor"] = time.perf_counter() - tic
    limits = thresholds(config, floor)

    tic = time.perf_counter()
    runs, selected = [], {}
    for loss in config.losses:
        records, selected[loss] = run_arm(config, loss, data, store, mesh=mesh, progress=progress, log=log)
        for lr in sorted(records):
            runs += per_seed_runs(records[lr], selected[loss], limits)
    phases["training"] = time.perf_counter() - tic

    # Milliseconds per step: a separate round-robin pass, so every arm is timed under the same load.
    tic = time.perf_counter()
    chosen = {loss: selected[loss]["auc"] for loss in config.losses}
    timing = store.read("timing") if store.has("timing") else None
    if timing is None or timing["learning_rates"] != chosen:
        per_arm = time_steps(
            config.losses,
            seeds(config),
            task=config.task,
            train_config=config.train,
            learning_rates=chosen,
            chunk=chunk_for(eval_steps(config)),  # as in training, so the compiled steps are reused
            rounds=config.timing_rounds,
            mesh=mesh,
        )
        timing = {"learning_rates": chosen, "arms": per_arm}
        store.write("timing", timing)
    phases["timing_pass"] = time.perf_counter() - tic
    return {
        "noise_floor": floor,
        "thresholds": limits,
        "timing": timing["arms"],
        "selected_lrs": selected,
        "runs": runs,
        "seconds_by_phase": phases,
    }


def total_steps(config: ToyConfig) -> int:
    """Run-steps of the planned grid (the progress bar's start; an extension adds to it)."""
    return len(config.losses) * len(config.lrs) * config.train.steps


# --- the early-resolution rerun -------------------------------------------------------------------


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


def run_early(config: ToyConfig, source: dict, *, losses=None) -> dict:
    """Retrain the arms of a finished run for its first steps only, evaluated finely.

    Same seeds, task, trunk, batch, optimiser and schedule as the source run (the schedule's
    length stays the source run's steps; training just stops at ``config.early.stop``), so up to
    that step each arm repeats the source run's training at its AUC-chosen learning rate. Only
    the evaluation grid differs; the test curves at the steps both runs evaluated are compared as
    a check. Steps to the thresholds are first crossings (a sustained crossing needs the curve to
    the end of training).
    """
    cfg = source["config"]
    task = TaskConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["task"].items()})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    train_config = TrainConfig(**{k: v for k, v in cfg["train"].items() if k in known})
    early = config.early
    if early.stop > train_config.steps:
        raise ValueError(f"early.stop {early.stop} exceeds the source run's {train_config.steps} steps")
    losses = list(losses or cfg["losses"])
    run_seeds = cfg["seeds"]
    lrs = {loss: source["selected_lrs"][loss]["auc"] for loss in losses}
    steps = early_eval_steps(early.stop, early.fine, early.fine_every, early.every)
    eval_size = cfg.get("eval_size", cfg["train"].get("eval_size"))
    test_seed = cfg.get("test_seed", config.test_seed)
    x_test, y_test = make_batch(jax.random.key(test_seed), eval_size, task)
    limits = {f"{t:g}": t for t in early.thresholds}
    tic = time.perf_counter()
    arms: dict[str, dict] = {}
    for loss in losses:
        result = train(
            loss,
            run_seeds,
            task=task,
            train_config=train_config,
            learning_rate=lrs[loss],
            eval_steps=steps,
            eval_data=(x_test, y_test),  # the curves are test MAE; nothing is chosen here
            test_inputs=x_test,
        )
        source_runs = sorted(
            (r for r in source["runs"] if r["loss"] == loss and r["selected_auc"]), key=lambda r: r["seed"]
        )
        index = {s: i for i, s in enumerate(result.steps)}
        diffs = [
            abs(m - float(result.curves[k, index[s]]))
            for k, r in enumerate(source_runs)
            for s, m in r["test_curve"]
            if s in index
        ]
        arms[loss] = {
            "lr": lrs[loss],
            "steps_to_target": {
                name: [metrics.first_crossing(result.steps, c, t) for c in result.curves]
                for name, t in limits.items()
            },
            "source_steps_to_target": {
                name: [
                    metrics.first_crossing(
                        [s for s, _ in r["test_curve"]], [m for _, m in r["test_curve"]], t
                    )
                    for r in source_runs
                ]
                for name, t in limits.items()
            },
            "max_abs_diff_from_source_test_curve": max(diffs),
            "test_curve": result.curves.tolist(),
            "seconds": result.seconds,
        }
    return {
        "config": {
            "source_command": cfg.get("command"),
            "losses": losses,
            "seeds": run_seeds,
            "learning_rates": lrs,
            "eval_steps": steps,
            "train": dataclasses.asdict(train_config),
            "task": dataclasses.asdict(task),
            "thresholds": limits,
            "early": dataclasses.asdict(early),
            "reference": cfg.get("reference", config.reference),  # results files before issue 19 had none
            "steps_to_target": "first evaluation step at which the test MAE is at or below the threshold",
            "note": "the source run's schedule (warm-up + cosine over train.steps) and data stream; "
            "training stops early. Curves are test MAE on the source run's test set.",
            "seconds_total": time.perf_counter() - tic,
        },
        "arms": arms,
    }
