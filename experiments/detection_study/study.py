"""The study's work: data sets from the settings, the planned runs, vmapped batches, per-run records.

Each data set is a list of *conditions* (the crowns; the synthetic controls at each head stride).
The pilot trains every arm at every ``(lr, gain)`` of the grid on the pilot seeds (on the crowns,
and on the synthetic controls at ``pilot_stride``); the grid point of best mean ``select_by``
over the pilot seeds is chosen per arm and data set; then every arm trains at its choice on the
reported seeds in every condition. Runs of one arm are trained ``max_batch`` at a time in one
vmapped program (:func:`train.train_batch`); every run's record (its validation curve, test AP,
summary metrics) is written as soon as its batch finishes, into ``out/records/<condition>/``, and
a restarted study trains only the batches that have a run without a record.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from experiments.common.store import RunStore

from . import arms as arms_lib
from . import evaluate as ev
from . import synthetic as syn
from .configs.default import StudyConfig
from .datasets import RealData, SyntheticData, size_edges_for
from .train import Run, TrainConfig, train_batch


@dataclasses.dataclass
class Condition:
    name: str  # "real", "synthetic_stride8", ...
    data: str  # "real" or "synthetic"
    dataset: object  # RealData or SyntheticData


def conditions(config: StudyConfig, cache: pathlib.Path, data: str) -> tuple[Condition, list[Condition]]:
    """``(pilot condition, reported conditions)`` of one data set."""
    if data == "real":
        s = config.real
        train = TrainConfig(
            steps=s.steps,
            batch=s.batch,
            eval_every=s.eval_every,
            tile=s.tile,
            strides=s.strides,
            max_gt=s.max_gt,
        )
        eval_config = ev.EvalConfig(core=s.eval_core, margin=s.eval_margin)
        name = "real" if s.split == "blocks" else f"real_{s.split}"
        condition = Condition(
            name, "real", RealData(cache, train, split=s.split, block=s.block, eval_config=eval_config)
        )
        return condition, [condition]
    s, task = config.synthetic, syn.SyntheticTask()
    made: dict[int, Condition] = {}

    def at(stride: int) -> Condition:
        if stride not in made:
            train = TrainConfig(
                steps=s.steps,
                batch=s.batch,
                eval_every=s.eval_every,
                tile=task.image_size,
                strides=(stride,),
                max_gt=s.max_gt or task.objects,
            )
            dataset = SyntheticData(
                task, train, val_images=s.val_images, test_images=s.test_images, chunk=s.chunk
            )
            made[stride] = Condition(f"synthetic_stride{stride}", "synthetic", dataset)
        return made[stride]

    return at(s.pilot_stride), [at(stride) for stride in s.strides]


def grid(config: StudyConfig, arm: str) -> list[tuple[float, float]]:
    """The pilot's ``(lr, gain)`` points of ``arm``: gain 0 for arms without an auxiliary term."""
    gains = config.gains if arms_lib.ARMS[arm].auxiliary else (0.0,)
    return list(itertools.product(config.lrs, gains))


def pilot_runs(config: StudyConfig, arm: str) -> list[Run]:
    return [Run(arm, seed, lr, gain) for (lr, gain) in grid(config, arm) for seed in config.pilot_seeds]


def reported_seeds(config: StudyConfig) -> list[int]:
    return list(range(config.first_seed, config.first_seed + config.seeds))


def batches(runs: Sequence[Run], size: int) -> list[list[Run]]:
    """Fixed consecutive chunks of ``runs`` (the same chunks on every start: resumption is exact)."""
    return [list(runs[i : i + size]) for i in range(0, len(runs), size)]


def curve_metrics(curve: list[dict], steps: int) -> dict[str, float]:
    """Area under validation AP against step (its mean over the evaluated span, trapezoids) and the
    plateau check: the gain in validation AP over the last 20% of the steps (the last evaluation
    minus the last one at or before 80% of the steps; NaN when there is none)."""
    x = np.array([c["step"] for c in curve], np.float64)
    y = np.array([c["val_AP"] for c in curve], np.float64)
    if len(x) > 1:
        auc = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))
    else:
        auc = float(y[0])
    before = np.flatnonzero(x <= 0.8 * steps)
    plateau = float(y[-1] - y[before[-1]]) if before.size and x[before[-1]] < x[-1] else math.nan
    return {"final_val_AP": float(y[-1]), "val_auc": auc, "plateau_gain": plateau}


def train_and_record(
    batch: list[Run],
    condition: Condition,
    store: RunStore,
    *,
    phase: str,
    mode: str = "vmap",
    progress: Callable[[int], None] | None = None,
) -> None:
    """Train one vmapped batch and write every run's record (test metrics for the reported phase)."""
    dataset = condition.dataset
    spec = arms_lib.ARMS[batch[0].arm]
    results = train_batch(
        batch,
        config=dataset.config,
        batch_fn=dataset.batch,
        validate=lambda m: dataset.validate(spec, m),
        progress=progress,
        mode=mode,
    )
    for run, result in zip(batch, results, strict=True):
        record = {
            **dataclasses.asdict(run),
            "phase": phase,
            "condition": condition.name,
            "batch_runs": len(batch),
            "curve": result.curve,
            "metrics": curve_metrics(result.curve, dataset.config.steps),
            "compile_seconds": result.compile_seconds,
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
        }
        obj = None
        if phase == "reported":
            tested = dataset.test(spec, result.model())
            record["test"] = ev.ap_from_matches(tested.matches)
            record["extra"] = tested.extra
            record["premise"] = ev.premise_check(tested.records, size_edges_for(dataset))
            obj = {"matches": tested.matches, "strata": tested.strata, "detections": tested.detections}
        store.write(run.key, record, obj)


def run_phase(
    runs_by_arm: dict[str, list[Run]],
    condition: Condition,
    store: RunStore,
    *,
    phase: str,
    max_batch: int,
    mode: str = "vmap",
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Train the batches with an unrecorded run; ``{"trained": runs, "skipped": runs}``."""
    counts = {"trained": 0, "skipped": 0}
    for arm, runs in runs_by_arm.items():
        for batch in batches(runs, max_batch):
            if all(store.has(r.key) for r in batch):
                counts["skipped"] += len(batch)
                if progress is not None:
                    progress(len(batch) * condition.dataset.config.steps)
                continue
            tic = time.perf_counter()
            train_and_record(batch, condition, store, phase=phase, mode=mode, progress=progress)
            counts["trained"] += len(batch)
            log(f"{condition.name} {phase} {arm}: {len(batch)} runs in {time.perf_counter() - tic:.0f} s")
    return counts


def choose(config: StudyConfig, arm: str, store: RunStore) -> tuple[float, float, dict]:
    """The pilot's choice for ``arm``: the grid point of best mean ``select_by`` over the pilot seeds."""
    scores = {}
    for lr, gain in grid(config, arm):
        values = [
            store.read(Run(arm, seed, lr, gain).key)["metrics"][config.select_by]
            for seed in config.pilot_seeds
        ]
        scores[(lr, gain)] = ev.nanmean(values)
    finite = {k: v for k, v in scores.items() if not math.isnan(v)}
    best = max(finite, key=finite.get) if finite else next(iter(scores))
    return best[0], best[1], {f"{lr:g},{gain:g}": v for (lr, gain), v in scores.items()}


def run_data(
    config: StudyConfig,
    data: str,
    cache: pathlib.Path,
    out: pathlib.Path,
    *,
    pilot_only: bool = False,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Pilot then reported runs of one data set, resuming from ``out/records``; returns the choices."""
    pilot, reported = conditions(config, cache, data)
    arms, skipped = arms_lib.available(config.arms)
    for message in skipped:
        log(message)
    pilot_store = RunStore(out / "records" / pilot.name)
    run_phase(
        {a: pilot_runs(config, a) for a in arms},
        pilot,
        pilot_store,
        phase="pilot",
        max_batch=config.max_batch,
        mode=config.batch_mode,
        progress=progress,
        log=log,
    )
    chosen = {a: choose(config, a, pilot_store) for a in arms}
    if pilot_only:
        return {"chosen": chosen, "conditions": [pilot.name]}
    for condition in reported:
        runs = {
            a: [Run(a, seed, chosen[a][0], chosen[a][1]) for seed in reported_seeds(config)] for a in arms
        }
        run_phase(
            runs,
            condition,
            RunStore(out / "records" / condition.name),
            phase="reported",
            max_batch=config.max_batch,
            mode=config.batch_mode,
            progress=progress,
            log=log,
        )
    described = {}
    for c in reported:
        ds = c.dataset
        described[c.name] = {"data": ds.describe(), "train_config": dataclasses.asdict(ds.config)}
        if data == "real":
            described[c.name]["eval_config"] = dataclasses.asdict(ds.eval_config)
            described[c.name]["_views"] = ds.test_views(3)
    if data == "synthetic":
        described["_task"] = dataclasses.asdict(syn.SyntheticTask())
    return {
        "chosen": chosen,
        "conditions": [c.name for c in reported],
        "pilot_condition": pilot.name,
        "described": described,
    }


def total_steps(config: StudyConfig, data: Sequence[str], *, pilot_only: bool = False) -> int:
    """Run-steps of the whole study (for the progress bar)."""
    arms, _ = arms_lib.available(config.arms)
    total = 0
    for d in data:
        settings = config.real if d == "real" else config.synthetic
        conditions_count = 1 if d == "real" else len(settings.strides)
        pilot = sum(len(pilot_runs(config, a)) for a in arms)
        reported = 0 if pilot_only else len(arms) * config.seeds * conditions_count
        total += (pilot + reported) * settings.steps
    return total
