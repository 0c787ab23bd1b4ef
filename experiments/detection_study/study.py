"""The study's work: data sets from the settings, the planned runs, vmapped batches, per-run records.

Each data set is a list of *conditions* (the crowns; the synthetic controls at each head stride).
The pilot trains every arm at every ``(lr, gain)`` of the grid on the pilot seeds (on the crowns,
and on the synthetic controls at ``pilot_stride``); the point of best mean ``select_by`` over the
pilot seeds is chosen per arm and data set (:func:`choose`). Two optional tuning rules follow
(off by default; the detection test's amendment turns them on): ``extend_edges`` trains one more
point beyond each grid edge an arm's choice lies on and chooses again over every point
(:func:`edge_points`), once; ``schedule_check_steps`` trains each choice on the pilot seeds at a
longer schedule and keeps the configured steps only if neither the arms' validation AP nor the
pre-registered contrasts move (:func:`schedule_decision`). Then every arm trains at its choice on
the reported seeds in every condition, seed by seed. Runs of one arm are trained ``max_batch`` at a
time in one vmapped program (:func:`train.train_batch`); every run's record (its validation curve,
test AP, summary metrics) is written as soon as its batch finishes, into
``out/records/<condition>/``, and a restarted study trains only the batches that have a run without
a record.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from experiments.common.records import provenance
from experiments.common.store import RunStore

from . import arms as arms_lib
from . import evaluate as ev
from . import fetch_data
from . import synthetic as syn
from .configs.default import StudyConfig
from .datasets import RealData, SyntheticData, size_edges_for
from .train import Run, TrainConfig, train_batch


@dataclasses.dataclass
class Condition:
    name: str  # "real", "synthetic_stride8", "synthetic_stride8_steps1600", ...
    data: str  # "real" or "synthetic"
    dataset: object  # RealData or SyntheticData


def with_steps(condition: Condition, steps: int, name: str | None = None) -> Condition:
    """``condition`` trained for ``steps`` steps: the same data (images, splits, batches per seed
    and step), only the schedule's length differs. ``name``: its own record directory's name."""
    if steps == condition.dataset.config.steps and name in (None, condition.name):
        return condition
    dataset = copy.copy(condition.dataset)  # shares the loaded images: only ``config`` is replaced
    dataset.config = dataclasses.replace(dataset.config, steps=steps)
    return Condition(name or condition.name, condition.data, dataset)


def conditions(config: StudyConfig, cache: pathlib.Path, data: str) -> tuple[Condition, list[Condition]]:
    """``(pilot condition, reported conditions)`` of one data set, at the settings' steps (the
    schedule check may lengthen the reported ones: :func:`with_steps`)."""
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


def check_condition(pilot: Condition, steps: int) -> Condition:
    """The schedule check's condition: the pilot's data at ``steps`` steps, in its own record
    directory (the pilot seeds' records at the settings' steps have the same keys)."""
    return with_steps(pilot, steps, f"{pilot.name}_steps{steps}")


def grid(config: StudyConfig, arm: str) -> list[tuple[float, float]]:
    """The pilot's ``(lr, gain)`` points of ``arm``: gain 0 for arms without an auxiliary term."""
    gains = config.gains if arms_lib.ARMS[arm].auxiliary else (0.0,)
    return list(itertools.product(config.lrs, gains))


def pilot_runs(config: StudyConfig, arm: str) -> list[Run]:
    return [Run(arm, seed, lr, gain) for (lr, gain) in grid(config, arm) for seed in config.pilot_seeds]


def seed_count(config: StudyConfig, condition: str | None = None) -> int:
    """The number of reported seeds of ``condition`` (``config.seeds`` unless ``condition_seeds``
    names it with fewer)."""
    counts = dict(config.condition_seeds)
    if condition in counts and not 0 < counts[condition] <= config.seeds:
        raise ValueError(f"condition_seeds[{condition!r}] = {counts[condition]}: not in 1 .. {config.seeds}")
    return counts.get(condition, config.seeds)


def reported_seeds(config: StudyConfig, condition: str | None = None) -> list[int]:
    """The reported seeds (of ``condition``: :func:`seed_count`), from ``first_seed``."""
    return list(range(config.first_seed, config.first_seed + seed_count(config, condition)))


def batches(runs: Sequence[Run], size: int) -> list[list[Run]]:
    """Fixed consecutive chunks of ``runs`` (the same chunks on every start: resumption is exact)."""
    return [list(runs[i : i + size]) for i in range(0, len(runs), size)]


def arm_major(runs_by_arm: Mapping[str, Sequence[Run]], size: int) -> list[list[Run]]:
    """Every batch of the first arm, then the next arm's, ...: the pilot's order."""
    return [b for runs in runs_by_arm.values() for b in batches(runs, size)]


def reported_batches(
    arms: Sequence[str], settings: Mapping[str, tuple[float, float]], seeds: Sequence[int], size: int
) -> list[list[Run]]:
    """The reported runs seed by seed: chunks of ``size`` seeds, within a chunk one batch per arm
    (each arm at its ``settings[arm] = (lr, gain)``). A study stopped early then has every arm on
    the same seeds, so the paired contrasts of the finished seeds are usable; the chunks depend on
    the arguments only, so a restart resumes exactly."""
    return [
        [Run(arm, seed, *settings[arm]) for seed in chunk]
        for chunk in (seeds[i : i + size] for i in range(0, len(seeds), size))
        for arm in arms
    ]


def worker_share(planned: Sequence[Sequence[Run]], arms: int, index: int, count: int) -> list[list[Run]]:
    """The batches of ``planned`` (``arms`` batches per chunk of seeds, as :func:`reported_batches`
    orders them) whose chunk number is ``index`` modulo ``count``."""
    if not 0 <= index < count:
        raise ValueError(f"worker index {index} is not in 0 .. {count - 1}")
    return [list(b) for j, b in enumerate(planned) if (j // arms) % count == index]


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
    stamp = provenance()
    if condition.data == "real":  # the crowns files this run read (main refuses unpinned ones)
        stamp["data_sha256"] = fetch_data.data_checksums(dataset.directory)["files"]
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
            "provenance": stamp,
        }
        obj = None
        if phase == "reported":
            tested = dataset.test(spec, result.model())
            record["test"] = ev.ap_from_matches(tested.matches)
            record["extra"] = tested.extra
            record["premise"] = ev.premise_check(tested.records, size_edges_for(dataset))
            obj = {"matches": tested.matches, "strata": tested.strata, "detections": tested.detections}
        store.write(run.key, record, obj)


def _check_schedule(store: RunStore, run: Run, steps: int) -> None:
    # A reported condition keeps its directory whatever the schedule check decided: a record from
    # another schedule (an earlier decision, another --steps) must not pass for this one.
    last = store.read(run.key)["curve"][-1]["step"]
    if last != steps:
        raise ValueError(
            f"{store.path(run.key)} was trained for {last} steps, this condition trains {steps}: "
            "use another --out, or move the old records away"
        )


def run_phase(
    planned: Sequence[Sequence[Run]],
    condition: Condition,
    store: RunStore,
    *,
    phase: str,
    mode: str = "vmap",
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Train the ``planned`` batches (in order) that have an unrecorded run;
    ``{"trained": runs, "skipped": runs}``."""
    counts = {"trained": 0, "skipped": 0}
    steps = condition.dataset.config.steps
    for batch in planned:
        batch = list(batch)
        if all(store.has(r.key) for r in batch):
            for r in batch:
                _check_schedule(store, r, steps)
            counts["skipped"] += len(batch)
            if progress is not None:
                progress(len(batch) * steps)
            continue
        tic = time.perf_counter()
        train_and_record(batch, condition, store, phase=phase, mode=mode, progress=progress)
        counts["trained"] += len(batch)
        log(
            f"{condition.name} {phase} {batch[0].arm}: {len(batch)} runs in {time.perf_counter() - tic:.0f} s"
        )
    return counts


def _zero_nan(values) -> np.ndarray:
    # A diverged run (NaN metric) detects nothing: it counts as 0, it is not left out of the mean.
    v = np.asarray(values, np.float64)
    return np.where(np.isnan(v), 0.0, v)


def scores(config: StudyConfig, arm: str, store: RunStore, points) -> dict[tuple[float, float], float]:
    """Mean over the pilot seeds of ``select_by`` at each ``(lr, gain)`` point, NaN counted as 0."""
    return {
        (lr, gain): float(
            _zero_nan(
                [
                    store.read(Run(arm, seed, lr, gain).key)["metrics"][config.select_by]
                    for seed in config.pilot_seeds
                ]
            ).mean()
        )
        for lr, gain in points
    }


def best_point(scored: Mapping[tuple[float, float], float]) -> tuple[float, float]:
    """The point of highest score; ties go to the smaller lr, then the smaller gain (the points are
    sorted first: the order they were evaluated in does not matter)."""
    ordered = sorted(scored)
    return max(ordered, key=lambda p: scored[p])  # max keeps the first of equal maxima


def edge_points(
    lrs: Sequence[float], gains: Sequence[float], choice: tuple[float, float], auxiliary: bool
) -> list[dict]:
    """The points beyond the grid's edge that ``choice = (lr, gain)`` lies on, each with why.

    lr at the grid's largest: ``(2 lr, gain)``; at its smallest (grid of more than one lr):
    ``(lr / 2, gain)``. For an arm with an auxiliary gain and more than one gain in the grid: gain
    at the largest: ``(lr, 4 gain)``; at the smallest: ``(lr, gain / 4)``."""
    lr, gain = choice
    out = []
    if lr == max(lrs):
        out.append({"lr": 2 * lr, "gain": gain, "why": f"lr {lr:g} is the grid's largest"})
    elif len(lrs) > 1 and lr == min(lrs):
        out.append({"lr": lr / 2, "gain": gain, "why": f"lr {lr:g} is the grid's smallest"})
    if auxiliary and len(gains) > 1:
        if gain == max(gains):
            out.append({"lr": lr, "gain": 4 * gain, "why": f"gain {gain:g} is the grid's largest"})
        elif gain == min(gains):
            out.append({"lr": lr, "gain": gain / 4, "why": f"gain {gain:g} is the grid's smallest"})
    return out


def added_points(config: StudyConfig, arm: str, store: RunStore) -> list[dict]:
    """The edge rule's extra points of ``arm`` (none unless ``config.extend_edges``), from the grid
    records in ``store``."""
    if not config.extend_edges:
        return []
    first = best_point(scores(config, arm, store, grid(config, arm)))
    return edge_points(config.lrs, config.gains, first, arms_lib.ARMS[arm].auxiliary)


def evaluated_points(config: StudyConfig, arm: str, store: RunStore) -> list[tuple[float, float]]:
    """Every point the pilot evaluates for ``arm``: the grid, then the edge rule's extra points."""
    extra = [(p["lr"], p["gain"]) for p in added_points(config, arm, store)]
    return grid(config, arm) + [p for p in extra if p not in grid(config, arm)]


def choose(config: StudyConfig, arm: str, store: RunStore, points=None) -> tuple[float, float, dict]:
    """The pilot's choice for ``arm`` among ``points`` (default: the grid and, with
    ``extend_edges``, its extra points, whose records must then exist): the point of best mean
    ``select_by`` over the pilot seeds (NaN as 0; ties: smaller lr, then smaller gain). Returns
    ``(lr, gain, {"lr,gain": score})``."""
    points = evaluated_points(config, arm, store) if points is None else list(points)
    scored = scores(config, arm, store, points)
    lr, gain = best_point(scored)
    return lr, gain, {f"{lr:g},{gain:g}": v for (lr, gain), v in scored.items()}


def schedule_decision(
    short: Mapping[str, Mapping[int, float]],
    long: Mapping[str, Mapping[int, float]],
    comparisons: Sequence[tuple[str, str]],
    *,
    steps: int,
    check_steps: int,
    schedule_tolerance: float,
    contrast_tolerance: float,
) -> dict:
    """Whether the reported runs keep ``steps`` or train ``check_steps``, from each arm's final
    validation AP per pilot seed at the two schedules (``short``, ``long``: arm -> seed -> AP; NaN
    as 0). Keep when (a) every arm's mean gain (long - short) is at most ``schedule_tolerance`` and
    (b) every contrast (arm - reference, mean over seeds) moves by at most ``contrast_tolerance``
    between the schedules; otherwise train ``check_steps``. ``failed`` names each failed criterion
    with the arms or contrasts that failed it."""
    gains = {}
    for arm in short:
        seeds = sorted(short[arm])
        gains[arm] = float(
            np.mean(_zero_nan([long[arm][s] for s in seeds]) - _zero_nan([short[arm][s] for s in seeds]))
        )

    def contrast(values, arm, ref):
        seeds = sorted(set(values[arm]) & set(values[ref]))
        return float(
            np.mean(_zero_nan([values[arm][s] for s in seeds]) - _zero_nan([values[ref][s] for s in seeds]))
        )

    changes = {}
    for arm, ref in comparisons:
        if arm in short and ref in short:
            before, after = contrast(short, arm, ref), contrast(long, arm, ref)
            changes[f"{arm}-{ref}"] = {"short": before, "long": after, "change": after - before}
    failed = {}
    over = [a for a, g in gains.items() if g > schedule_tolerance]
    if over:
        failed["gain"] = over
    moved = [k for k, c in changes.items() if abs(c["change"]) > contrast_tolerance]
    if moved:
        failed["contrast"] = moved
    return {
        "steps": check_steps if failed else steps,
        "kept": not failed,
        "short_steps": steps,
        "long_steps": check_steps,
        "schedule_tolerance": schedule_tolerance,
        "contrast_tolerance": contrast_tolerance,
        "gain": gains,
        "contrast_change": changes,
        "failed": failed,
    }


def describe_decision(d: dict) -> str:
    head = f"schedule check ({d['short_steps']} vs {d['long_steps']} steps): "
    head += f"keep {d['steps']}" if d["kept"] else f"train {d['steps']}"
    gains = ", ".join(f"{a} {g:+.4f}" for a, g in d["gain"].items())
    changes = ", ".join(f"{k} {c['change']:+.4f}" for k, c in d["contrast_change"].items())
    failed = "; ".join(f"{k} failed: {', '.join(v)}" for k, v in d["failed"].items()) or "both criteria met"
    return (
        f"{head}; mean val AP gain per arm (tolerance {d['schedule_tolerance']:g}): {gains}; "
        f"contrast change (tolerance {d['contrast_tolerance']:g}): {changes or 'none'}; {failed}"
    )


def _final_val_ap(config: StudyConfig, store: RunStore, arm: str, lr: float, gain: float) -> dict[int, float]:
    return {s: store.read(Run(arm, s, lr, gain).key)["metrics"]["final_val_AP"] for s in config.pilot_seeds}


def tune(
    config: StudyConfig,
    arms: Sequence[str],
    pilot: Condition,
    out: pathlib.Path,
    *,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict, dict]:
    """The pilot: the grid, the edge rule's extra points, the schedule check (each as the config
    enables). Returns ``(chosen, tuning)``: ``chosen[arm] = (lr, gain, scores)``, and what the edge
    rule added and the schedule check decided (``tuning["steps"]``: the reported runs' steps)."""
    store = RunStore(out / "records" / pilot.name)
    common = {"mode": config.batch_mode, "progress": progress, "log": log}
    run_phase(
        arm_major({a: pilot_runs(config, a) for a in arms}, config.max_batch),
        pilot,
        store,
        phase="pilot",
        **common,
    )
    tuning: dict = {"steps": pilot.dataset.config.steps}
    if config.extend_edges:
        added = {a: added_points(config, a, store) for a in arms}
        extra = {
            a: [Run(a, seed, p["lr"], p["gain"]) for p in added[a] for seed in config.pilot_seeds]
            for a in arms
        }
        run_phase(arm_major(extra, config.max_batch), pilot, store, phase="pilot_edge", **common)
        tuning["edges"] = {}
        for a in arms:
            first = choose(config, a, store, grid(config, a))
            tuning["edges"][a] = {
                "grid_choice": {"lr": first[0], "gain": first[1]},
                "added": [
                    {**p, "val_AP": _final_val_ap(config, store, a, p["lr"], p["gain"])} for p in added[a]
                ],
            }
    chosen = {a: choose(config, a, store) for a in arms}
    if config.extend_edges:
        for a in arms:
            tuning["edges"][a]["choice"] = {"lr": chosen[a][0], "gain": chosen[a][1]}
            edge = tuning["edges"][a]
            added = ", ".join(f"({p['lr']:g}, {p['gain']:g}) as {p['why']}" for p in edge["added"])
            log(
                f"{pilot.name} pilot {a}: grid choice (lr, gain) = ({edge['grid_choice']['lr']:g}, "
                f"{edge['grid_choice']['gain']:g}); added {added or 'nothing'}; "
                f"choice ({chosen[a][0]:g}, {chosen[a][1]:g})"
            )
    if config.schedule_check_steps is not None:
        check = check_condition(pilot, config.schedule_check_steps)
        check_store = RunStore(out / "records" / check.name)
        runs = {a: [Run(a, s, chosen[a][0], chosen[a][1]) for s in config.pilot_seeds] for a in arms}
        run_phase(arm_major(runs, config.max_batch), check, check_store, phase="schedule_check", **common)
        decision = schedule_decision(
            {a: _final_val_ap(config, store, a, *chosen[a][:2]) for a in arms},
            {a: _final_val_ap(config, check_store, a, *chosen[a][:2]) for a in arms},
            config.comparisons,
            steps=pilot.dataset.config.steps,
            check_steps=config.schedule_check_steps,
            schedule_tolerance=config.schedule_tolerance,
            contrast_tolerance=config.contrast_tolerance,
        )
        tuning["schedule"] = {"condition": check.name, **decision}
        tuning["steps"] = decision["steps"]
        log(f"{pilot.name}: {describe_decision(decision)}")
    return chosen, tuning


def run_data(
    config: StudyConfig,
    data: str,
    cache: pathlib.Path,
    out: pathlib.Path,
    *,
    pilot_only: bool = False,
    worker: tuple[int, int] | None = None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Pilot (with the tuning rules the config enables) then reported runs of one data set,
    resuming from ``out/records``; returns the choices and the tuning's record.

    ``worker=(i, n)`` trains only the reported runs of every n-th chunk of seeds, from the i-th:
    n processes started with ``i = 0 .. n-1`` share the reported runs without overlap, each still
    seed by seed. (On a 2-core CPU two single-threaded processes train more runs per hour than
    one process on both cores.) The pilot must be finished before workers start."""
    pilot, reported = conditions(config, cache, data)
    arms, skipped = arms_lib.available(config.arms)
    for message in skipped:
        log(message)
    chosen, tuning = tune(config, arms, pilot, out, progress=progress, log=log)
    if pilot_only:
        return {"chosen": chosen, "conditions": [pilot.name], "tuning": tuning}
    # The schedule check's steps; a lengthened condition keeps its name (and record directory), so
    # the results' layout is the same whichever schedule was decided.
    reported = [with_steps(c, tuning["steps"]) for c in reported]
    settings = {a: chosen[a][:2] for a in arms}
    for condition in reported:
        planned = reported_batches(arms, settings, reported_seeds(config, condition.name), config.max_batch)
        if worker is not None:
            planned = worker_share(planned, len(arms), *worker)
        run_phase(
            planned,
            condition,
            RunStore(out / "records" / condition.name),
            phase="reported",
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
        "tuning": tuning,
    }


def total_steps(config: StudyConfig, data: Sequence[str], *, pilot_only: bool = False) -> int:
    """Run-steps of the whole study (for the progress bar). Approximate when the tuning rules are on:
    it counts the most extra points the edge rule can add and the reported runs at the settings'
    steps (the schedule check may double them)."""
    arms, _ = arms_lib.available(config.arms)
    total = 0
    for d in data:
        settings = config.real if d == "real" else config.synthetic
        names = ["real"] if d == "real" else [f"synthetic_stride{s}" for s in settings.strides]
        seeds = sum(seed_count(config, n) for n in names)
        pilot = sum(len(pilot_runs(config, a)) for a in arms)
        if config.extend_edges:
            for a in arms:
                most = 1 + (arms_lib.ARMS[a].auxiliary and len(config.gains) > 1)
                pilot += most * len(config.pilot_seeds)
        check = 0
        if config.schedule_check_steps is not None:
            check = len(arms) * len(config.pilot_seeds) * config.schedule_check_steps
        reported = 0 if pilot_only else len(arms) * seeds
        total += (pilot + reported) * settings.steps + check
    return total
