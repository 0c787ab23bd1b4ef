"""Does DFL help small objects? Box regression losses on synthetic detection images.

    python -m experiments.synthetic_detection.main --preset quick --out runs/detection

Images of one small, one medium and one large rectangle on noise; a small
anchor-free conv detector predicts the four side distances at every stride-4
point. Compared: L1 on distances, GIoU, GIoU on a distribution head without DFL,
GIoU + DFL, GIoU + DFL with log-spaced bins; same detector trunk, data,
optimizer and steps. Scored per object by the IoU of
the box predicted at its assigned point nearest its centre, by object size
(sqrt(area) < 10 px small, 10-24 medium, > 24 large), with the rate of IoU >=
0.5 and >= 0.75 (a localisation recall; no classification or AP here).
Writes DIR/results.json, DIR/iou_by_size.png and DIR/summary.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax
import numpy as np
from tqdm import tqdm

from experiments.common.records import device_info
from experiments.synthetic_detection import toy_detection as td

PRESETS = {
    # <= 3 minutes on 2 CPU cores.
    "quick": dict(seeds=2, steps=700, batch=16, width=32, test_images=256, lr=3e-3),
    "full": dict(seeds=3, steps=2500, batch=32, width=32, test_images=512, lr=3e-3),
    # Sized for one GPU/TPU in a few minutes.
    "accelerator": dict(seeds=3, steps=5000, batch=64, width=64, test_images=2048, lr=3e-3),
}
TEST_SEED = 20_000_001


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    p.add_argument("--losses", nargs="+", choices=td.LOSSES, default=list(td.LOSSES))
    p.add_argument("--seeds", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--test-images", type=int)
    p.add_argument("--out", type=pathlib.Path, required=True)
    return p.parse_args(argv)


def size_metrics(ious: np.ndarray, sizes: np.ndarray) -> dict:
    out = {}
    for index, name in enumerate(td.SIZE_NAMES):
        values = ious[(sizes == index) & ~np.isnan(ious)]
        out[name] = {
            "mean_iou": float(values.mean()),
            "iou_ge_0.5": float((values >= 0.5).mean()),
            "iou_ge_0.75": float((values >= 0.75).mean()),
            "objects": int(values.size),
        }
    return out


def plot(runs: list[dict], losses: list[str], path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(losses)
    for i, loss in enumerate(losses):
        mine = [r for r in runs if r["loss"] == loss]
        for ax, key in zip(axes, ("mean_iou", "iou_ge_0.75"), strict=True):
            values = np.array([[r["by_size"][s][key] for s in td.SIZE_NAMES] for r in mine])
            ax.bar(
                np.arange(3) + (i - (len(losses) - 1) / 2) * width,
                values.mean(0),
                width,
                yerr=values.std(0),
                capsize=3,
                label=loss,
            )
    for ax, label in zip(axes, ("mean IoU", "fraction of objects with IoU >= 0.75"), strict=True):
        ax.set_xticks(np.arange(3), td.SIZE_NAMES)
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper left", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    preset = dict(PRESETS[args.preset])
    seeds = list(range(args.seeds or preset["seeds"]))
    steps = args.steps or preset["steps"]
    n_test = args.test_images or preset["test_images"]
    log_every = max(1, min(50, steps))
    task = td.DetectionTask()
    device = device_info()
    print(f"device: {device['device_count']} x {device['device_kind']} ({device['platform']})")

    test_images, test_boxes = td.make_images(jax.random.key(TEST_SEED), n_test, task)
    test_boxes = np.asarray(test_boxes)
    sizes = td.size_class(test_boxes)

    runs = []
    started = time.perf_counter()
    total = len(args.losses) * len(seeds) * (steps // log_every) * log_every
    with tqdm(total=total, desc="training", unit="step", mininterval=1.0) as bar:
        for loss in args.losses:
            bar.set_postfix(loss=loss)
            result = td.train_detector(
                loss,
                seeds,
                task=task,
                steps=steps,
                batch_size=preset["batch"],
                learning_rate=preset["lr"],
                test_images=test_images,
                width=preset["width"],
                log_every=log_every,
                progress=bar.update,
            )
            for i, seed in enumerate(result.seeds):
                ious = td.object_ious(result.test_distances[i], test_boxes, task)
                runs.append(
                    {
                        "loss": loss,
                        "seed": seed,
                        "by_size": size_metrics(ious, sizes),
                        "mean_iou": float(np.nanmean(ious)),
                        "objects_without_points": int(np.isnan(ious).sum()),
                        "train_curve": [
                            [s, float(v)] for s, v in zip(result.steps, result.train_loss[i], strict=True)
                        ],
                        "seconds": result.seconds / len(seeds),
                    }
                )
    wall = time.perf_counter() - started

    config = {
        "preset": args.preset,
        "losses": args.losses,
        "seeds": seeds,
        "steps": steps,
        "batch": preset["batch"],
        "width": preset["width"],
        "learning_rate": preset["lr"],
        "optimizer": "adam, warmup + cosine decay",
        "test_images": n_test,
        "task": dataclasses.asdict(task),
        "log_bin_values": task.log_bin_values().tolist(),
        "dfl_weight": 0.25,
        "seconds_total": wall,
    }
    results = {"device": device, "config": config, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))

    header = (
        "| loss | small IoU | medium IoU | large IoU | small IoU>=0.75 | medium IoU>=0.75 "
        "| large IoU>=0.75 |\n|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for loss in args.losses:
        mine = [r for r in runs if r["loss"] == loss]
        cells = []
        for key in ("mean_iou", "iou_ge_0.75"):
            for s in td.SIZE_NAMES:
                v = np.array([r["by_size"][s][key] for r in mine])
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    table = header + "\n".join(lines) + "\n"
    counts = runs[0]["by_size"]
    title = f"synthetic detection, {args.preset} preset, {len(seeds)} seeds (mean ± std)"
    plot(runs, args.losses, args.out / "iou_by_size.png", title)
    summary = (
        f"# Detection: box regression losses by object size\n\n"
        f"`python -m experiments.synthetic_detection.main --preset {args.preset}` on "
        f"{device['device_count']} x "
        f"{device['device_kind']} ({device['platform']}), jax {device['jax']}, {time.strftime('%Y-%m-%d')}; "
        f"{steps} steps, batch {preset['batch']}, seeds {seeds[0]}..{seeds[-1]}, {wall:.0f} s in all.\n\n"
        f"Per-object IoU on {n_test} held-out images (objects scored: "
        + ", ".join(f"{s} {counts[s]['objects']}" for s in td.SIZE_NAMES)
        + "), mean ± std over seeds.\n\n"
        + table
    )
    (args.out / "summary.md").write_text(summary)
    print("\n" + table)
    print(f"wrote {args.out}/results.json, iou_by_size.png, summary.md ({wall:.0f} s)")
    return results


if __name__ == "__main__":
    main()
