"""Do the detection test's bins cover its boxes? The box-range coverage of its training data.

    python -m experiments.detection_study.coverage --out results/detection_test

For each condition of the detection test (the synthetic controls with the head at stride 8 and
at stride 4, on 96 px images; and, if the NEON crowns are in the cache, the crowns at strides
4/8/16 on 128 px tiles) this draws the training batches the study trains on
(``dataset.batch(seed, step)`` of the study's own data sets, for the first ``--seeds`` reported
seeds and ``--steps`` steps), counts the side distances of the assigner's candidates (every point
strictly inside a gt box, at every level) with :func:`jax_dfl.box_range_counts`, and writes
``coverage.json`` and ``coverage.md`` (read by ``docs/box_range.md``).

Bins: the 16 uniform bins 0..15 of the distribution arms (``arms.NUM_BINS``: ``ciou_dist_l1``,
``ciou_dfl``) and the log-spaced ``arms.log_bin_values()`` of the earlier study's
``ciou_dfl_log`` (also 0..15).

Why the candidates: which points the assigner makes foreground changes as the model trains, but
they are always among the candidates (at most ``top_k`` per gt), *provided the counts use the
assigner's candidate rule*. The study's assigner (``train.py``) calls
:func:`jax_dfl.task_aligned_assign` without ``candidate_min_size`` (no widening of small boxes,
as ultralytics up to 8.3), and so do the counts here (``CANDIDATE_MIN_SIZE``). Under that
condition, if no candidate distance is outside the bins, no training target is ever clipped, and
the number clipped in a step is at most the number of clipped candidate distances of its batch.
An assigner that widens small boxes (ultralytics 8.4: 16 px) would need the same value here, or
the counts would bound nothing. A few seconds of CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import pathlib

import jax
import numpy as np

from experiments.common.store import json_default
from experiments.detection_study import configs, datasets, study
from experiments.detection_study import synthetic as syn
from experiments.detection_study.arms import NUM_BINS, log_bin_values
from experiments.detection_study.data import data_available
from experiments.detection_study.fetch_data import default_cache
from experiments.detection_study.model import feature_shapes
from jax_dfl import BoxRangeReport, anchor_points, box_range_counts, box_range_report

COVERAGE = 0.999  # the recommendation's target: at most 0.1 % of candidate side distances beyond the last bin
# The study's assigner (train.py) does not widen small boxes: the counts use the same candidate rule.
CANDIDATE_MIN_SIZE = None
BINS = {
    "uniform": {"num_bins": NUM_BINS},
    "log": {"bin_values": log_bin_values()},
}


def conditions(cache: pathlib.Path) -> tuple[list[study.Condition], str | None]:
    """The detection test's conditions (synthetic strides 8 and 4; the crowns if cached), and a
    message if the crowns are skipped. Validation and test sets are cut to one image: only the
    training batches are read, and they do not depend on them."""
    config = configs.get("detection_test")
    small = dataclasses.replace(config.synthetic, val_images=1, test_images=1)
    _, out = study.conditions(dataclasses.replace(config, synthetic=small), cache, "synthetic")
    if not data_available(cache):
        return out, f"crowns skipped: the NEON images are not in {cache} (fetch_data.py fetches them)"
    _, real = study.conditions(configs.get("detection_test_crowns"), cache, "real")
    return out + real, None


def size_edges(dataset) -> list[float]:
    """The study's size groups in the pixels the training boxes are in: the synthetic size classes;
    the crowns' sqrt-area terciles (the study states them in original pixels) at working scale."""
    edges = list(datasets.size_edges_for(dataset))
    if isinstance(dataset, datasets.RealData):
        edges = [e * dataset.scenes[0].scale for e in edges]
    return edges


def scan(
    condition: study.Condition, seeds: list[int], steps: int, batches: dict
) -> dict[str, BoxRangeReport]:
    """One report per bin setting from the condition's training batches (``batches`` caches them:
    the synthetic data are the same at every stride for a seed and step)."""
    dataset = condition.dataset
    config = dataset.config
    strides = tuple(config.strides)
    points, point_strides = anchor_points(feature_shapes(config.tile, config.tile, strides), strides)
    edges = size_edges(dataset)
    counters = {
        name: jax.jit(
            functools.partial(
                box_range_counts,
                point_strides=point_strides,
                strides=strides,
                size_edges=edges,
                candidate_min_size=CANDIDATE_MIN_SIZE,
                **bins,
            )
        )
        for name, bins in BINS.items()
    }
    chunks: dict[str, list] = {name: [] for name in BINS}
    for seed in seeds:
        for step in range(steps):
            key = (condition.data, seed, step)
            if key not in batches:
                batches[key] = dataset.batch(seed, step)[1:3]  # (boxes, mask); the images are not used
            boxes, mask = batches[key]
            for name, count in counters.items():
                chunks[name].append(count(points, boxes, mask))
    return {
        name: box_range_report(
            chunks[name], strides=strides, size_edges=edges, coverage=COVERAGE, **BINS[name]
        )
        for name in BINS
    }


def largest_side(condition: study.Condition) -> tuple[float, str]:
    """The largest box side in pixels the condition can train on, and why: a candidate's side
    distance is below it (the point is strictly inside), so it bounds every batch, counted or not."""
    dataset = condition.dataset
    if condition.data == "synthetic":
        task = dataset.task
        top = max(hi for _, hi in task.size_ranges)
        side = top * math.sqrt(task.aspect)
        return (
            side,
            f"the generator's largest: {top:g} px x sqrt({task.aspect:g}) at the largest aspect ratio",
        )
    boxes = np.concatenate([scene.boxes for scene in dataset.scenes[:2]])  # the images blocks come from
    side = float(np.max(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
    why = "the largest crown of the two training images at working scale; tiles crop boxes, turns keep sides"
    return side, why


def markdown(result: dict, reports: dict[str, dict[str, BoxRangeReport]]) -> str:
    settings = result["settings"]
    lines = [
        f"Written by `python -m experiments.detection_study.coverage` from the training batches of "
        f"the reported seeds {settings['seeds'][0]}-{settings['seeds'][-1]}, steps 0-{settings['steps'] - 1} "
        f"(the batches the study trains on: `dataset.batch(seed, step)`). Counted: the side distances "
        "of the assigner's candidates, every point strictly inside a gt box at every level, four per "
        "(box, point) pair. The study's assigner does not widen small boxes (no `candidate_min_size`), "
        "nor do these counts, so its foreground is a subset of them whatever the model predicts, and "
        "a clipped fraction of 0 here means no DFL target of these batches is clipped. "
        f"Bins: {NUM_BINS} uniform bins 0..{NUM_BINS - 1} (`ciou_dist_l1`, `ciou_dfl`); "
        f'"num_bins for {100 * COVERAGE:g} %" is the smallest number of uniform bins that leaves at most '
        f"{100 * (1 - COVERAGE):.3g} % of the level's candidate distances beyond the last bin "
        + (
            "(none is below the first: every candidate is strictly inside its box and the first bin is 0)."
            if not any(r["uniform"].num_below_first.any() for r in reports.values())
            else '(those below the first bin, clipped at any number of bins: "below first bin").'
        ),
        "",
    ]
    for name, entry in result["conditions"].items():
        report = reports[name]["uniform"]
        lines += [f"**{name}** ({entry['description']}; {entry['images']:,} training images):", ""]
        lines += [report.to_markdown().split("\n", 2)[2], ""]
        same = "the same counts" if entry["log_bins_identical"] else "different counts (see coverage.json)"
        lines += [
            f"Size buckets: {entry['size_buckets']}. The log-spaced bins (`ciou_dfl_log`, "
            f"{report.num_bins} values 0..{log_bin_values()[-1]:g}) give {same}.",
            "",
            f"Every batch, counted or not: the largest box side is {entry['largest_side_px']:.2f} px "
            f"({entry['largest_side_why']}), so every candidate side distance is below "
            f"{entry['largest_side_px'] / min(entry['strides']):.2f} bins at stride {min(entry['strides'])}: "
            f"{'below' if entry['largest_side_px'] / min(entry['strides']) <= NUM_BINS - 1 else 'beyond'} "
            f"the last bin ({NUM_BINS - 1}).",
            "",
        ]
    if result["skipped"]:
        lines += ["", result["skipped"] + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--cache", type=pathlib.Path, default=default_cache())
    p.add_argument("--seeds", type=int, default=2, help="reported seeds scanned, from the first")
    p.add_argument("--steps", type=int, default=100, help="training steps scanned per seed, from 0")
    args = p.parse_args(argv)
    first = configs.get("detection_test").first_seed
    seeds = list(range(first, first + args.seeds))
    found, skipped = conditions(args.cache)
    if skipped:
        print(skipped)
    batches: dict = {}
    reports, out = {}, {}
    for condition in found:
        reports[condition.name] = scan(condition, seeds, args.steps, batches)
        uniform, log = reports[condition.name]["uniform"], reports[condition.name]["log"]
        config = condition.dataset.config
        labels = uniform.size_labels()
        if condition.data == "synthetic":
            names = [
                f"{n} ({lo:g}-{hi:g} px)"
                for n, (lo, hi) in zip(syn.SIZE_NAMES, condition.dataset.task.size_ranges, strict=True)
            ]
            buckets = ", ".join(f"{label}: {n}" for label, n in zip(labels, names, strict=True))
            description = f"synthetic, {config.tile} px images, head at stride {config.strides[0]}"
        else:
            buckets = ", ".join(labels) + " (terciles of the crowns' sqrt area, working scale)"
            description = f"NEON crowns, {config.tile} px tiles, strides {'/'.join(map(str, config.strides))}"
        largest, why = largest_side(condition)
        out[condition.name] = {
            "description": description,
            "largest_side_px": largest,
            "largest_side_why": why,
            "strides": list(config.strides),
            "tile_px": config.tile,
            "images": len(seeds) * args.steps * config.batch,
            "size_buckets": buckets,
            "uniform": uniform.to_dict(),
            "log": log.to_dict(),
            "log_bins_identical": all(
                np.array_equal(getattr(uniform, f), getattr(log, f)) for f in ("num_sides", "num_clipped")
            ),
        }
        fraction, sides = uniform.overall_fraction_clipped, int(uniform.num_sides.sum())
        print(f"{condition.name}: {fraction:.4%} of {sides:,} candidate side distances clipped")
    result = {
        "settings": {"seeds": seeds, "steps": args.steps, "coverage": COVERAGE, "num_bins": NUM_BINS},
        "conditions": out,
        "skipped": skipped,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coverage.json").write_text(json.dumps(result, indent=2, default=json_default) + "\n")
    (args.out / "coverage.md").write_text(markdown(result, reports))
    print(f"wrote {args.out / 'coverage.json'} and {args.out / 'coverage.md'}")
    return result


if __name__ == "__main__":
    main()
