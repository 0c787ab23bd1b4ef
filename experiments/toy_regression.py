"""DFL vs L1 (and Smooth L1, one-hot CE) on a synthetic edge-localisation task.

    python experiments/toy_regression.py --preset quick --out runs/quick

Same trunk, data, optimizer, schedule and steps for every loss; seeds are
trained together with vmap. The `full` and `accelerator` presets pick each
loss's learning rate from a small sweep on the validation set and report MAE on
a separate test set. Writes DIR/results.json, DIR/curves.png, DIR/summary.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from jax_dfl import parallel, toy
from jax_dfl.environment import device_info

PRESETS = {
    # <= 90 s on 2 CPU cores, compilation included.
    "quick": dict(seeds=3, steps=2000, batch=256, hidden=128, lrs=[3e-3], target_mae=0.1),
    "full": dict(seeds=5, steps=6000, batch=256, hidden=128, lrs=[1e-3, 3e-3, 1e-2, 3e-2], target_mae=0.1),
    # Sized for one GPU/TPU in a few minutes: wider trunk, larger batches, more seeds.
    "accelerator": dict(seeds=8, steps=10000, batch=4096, hidden=512, lrs=[1e-3, 3e-3, 1e-2], target_mae=0.1),
}
EVAL_SEED, TEST_SEED = 10_000_001, 10_000_002  # fixed held-out sets, shared by all runs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    p.add_argument("--losses", nargs="+", choices=toy.LOSSES, default=list(toy.LOSSES))
    p.add_argument("--seeds", type=int, help="number of seeds (0 .. N-1)")
    p.add_argument("--steps", type=int, help="training steps")
    p.add_argument("--lr", type=float, nargs="+", help="learning rate(s) to sweep")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-size", type=int, default=2048)
    p.add_argument(
        "--single-device",
        action="store_true",
        help="do not split batches over all local devices (the default when there are several)",
    )
    p.add_argument("--out", type=pathlib.Path, required=True)
    return p.parse_args(argv)


def summarise(runs: list[dict], losses: list[str], target_mae: float) -> list[dict]:
    rows = []
    for loss in losses:
        chosen = [r for r in runs if r["loss"] == loss and r["selected"]]
        final = np.array([r["final_mae"] for r in chosen])
        small = np.array([r["mae_small"] for r in chosen])
        large = np.array([r["mae_large"] for r in chosen])
        reach = [r["steps_to_target"] for r in chosen]
        reached = [s for s in reach if s is not None]
        rows.append(
            {
                "loss": loss,
                "lr": chosen[0]["lr"],
                "final_mae": (final.mean(), final.std()),
                "mae_small": (small.mean(), small.std()),
                "mae_large": (large.mean(), large.std()),
                "steps_to_target": (
                    np.mean(reached) if reached else None,
                    len(reached),
                    len(reach),
                ),
                "ms_per_step": chosen[0]["seconds_per_step"] * 1e3,
            }
        )
    return rows


def markdown_table(rows: list[dict], target_mae: float, n_seeds: int) -> str:
    head = (
        f"| loss | lr | final MAE (bins) | MAE y < mid | MAE y > mid | steps to MAE {target_mae} "
        f"| ms/step ({n_seeds} seeds) |\n|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        mean, hit, total = r["steps_to_target"]
        reach = f"{mean:.0f} ({hit}/{total} seeds)" if mean is not None else f"not reached (0/{total})"
        lines.append(
            f"| {r['loss']} | {r['lr']:g} | {r['final_mae'][0]:.4f} ± {r['final_mae'][1]:.4f} "
            f"| {r['mae_small'][0]:.4f} ± {r['mae_small'][1]:.4f} "
            f"| {r['mae_large'][0]:.4f} ± {r['mae_large'][1]:.4f} | {reach} | {r['ms_per_step']:.2f} |"
        )
    return head + "\n".join(lines) + "\n"


def plot_curves(runs: list[dict], losses: list[str], path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for loss in losses:
        chosen = [r for r in runs if r["loss"] == loss and r["selected"]]
        steps = np.array([s for s, _ in chosen[0]["curve"]])
        curves = np.array([[m for _, m in r["curve"]] for r in chosen])
        mean, std = curves.mean(0), curves.std(0)
        (line,) = ax.plot(steps[1:], mean[1:], label=f"{loss} (lr {chosen[0]['lr']:g})")
        ax.fill_between(steps[1:], (mean - std)[1:], (mean + std)[1:], color=line.get_color(), alpha=0.25)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation MAE (bins)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    preset = dict(PRESETS[args.preset])
    seeds = list(range(args.seeds or preset["seeds"]))
    lrs = args.lr or preset["lrs"]
    task = toy.TaskConfig()
    train_config = toy.TrainConfig(
        hidden=preset["hidden"],
        batch_size=preset["batch"],
        steps=args.steps or preset["steps"],
        eval_every=args.eval_every,
        eval_size=args.eval_size,
    )
    target_mae = preset["target_mae"]
    device = device_info()
    # Data parallel over every local device (after jax.distributed.initialize(), every device).
    mesh = None if args.single_device or jax.device_count() == 1 else parallel.data_mesh()
    device["data_parallel_devices"] = 1 if mesh is None else mesh.size
    print(
        f"device: {device['device_count']} x {device['device_kind']} ({device['platform']}), "
        f"data parallel over {device['data_parallel_devices']}"
    )

    x_val, y_val = toy.make_batch(jax.random.key(EVAL_SEED), args.eval_size, task)
    x_test, y_test = toy.make_batch(jax.random.key(TEST_SEED), args.eval_size, task)
    y_test_np = np.asarray(y_test)
    small = y_test_np < (task.num_bins - 1) / 2

    runs: list[dict] = []
    chunks = max(1, train_config.steps // train_config.eval_every)
    started = time.perf_counter()
    with tqdm(
        total=len(args.losses) * len(lrs) * chunks, desc="training", unit="eval", mininterval=1.0
    ) as bar:
        for loss in args.losses:
            candidates = []
            for lr in lrs:
                bar.set_postfix(loss=loss, lr=lr)
                result = toy.train(
                    loss,
                    seeds,
                    task=task,
                    train_config=train_config,
                    learning_rate=lr,
                    eval_data=(x_val, y_val),
                    test_inputs=x_test,
                    mesh=mesh,
                    progress=bar.update,
                )
                candidates.append(result)
            # Pick the learning rate on validation MAE; report test MAE.
            best = min(candidates, key=lambda r: float(r.curves[:, -1].mean()))
            for result in candidates:
                errors = np.abs(result.test_predictions - y_test_np)
                for i, seed in enumerate(result.seeds):
                    runs.append(
                        {
                            "loss": loss,
                            "seed": seed,
                            "lr": result.learning_rate,
                            "selected": result is best,
                            "final_mae": float(errors[i].mean()),
                            "mae_small": float(errors[i][small].mean()),
                            "mae_large": float(errors[i][~small].mean()),
                            "final_val_mae": float(result.curves[i, -1]),
                            "steps_to_target": toy.steps_to_reach(result.steps, result.curves[i], target_mae),
                            "curve": [
                                [s, float(m)] for s, m in zip(result.steps, result.curves[i], strict=True)
                            ],
                            "seconds": result.seconds,
                            "seconds_per_step": result.seconds_per_step,
                        }
                    )
    wall = time.perf_counter() - started

    config = {
        "preset": args.preset,
        "losses": args.losses,
        "seeds": seeds,
        "learning_rates": lrs,
        "target_mae": target_mae,
        "task": dataclasses.asdict(task),
        "train": dataclasses.asdict(train_config),
        "optimizer": "adam, warmup + cosine decay",
        "small_large_split": f"test targets below / above {(task.num_bins - 1) / 2} bins",
        "seconds_total": wall,
        "notes": "'seconds' is the wall clock of the vmapped run shared by its seeds, compile included",
    }
    results = {"device": device, "config": config, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))

    rows = summarise(runs, args.losses, target_mae)
    table = markdown_table(rows, target_mae, len(seeds))
    title = f"toy edge localisation, {args.preset} preset, {len(seeds)} seeds (mean ± std)"
    plot_curves(runs, args.losses, args.out / "curves.png", title)
    summary = (
        f"# Toy regression: {', '.join(args.losses)}\n\n"
        f"`python experiments/toy_regression.py --preset {args.preset}` on "
        f"{device['device_count']} x {device['device_kind']} ({device['platform']}), jax {device['jax']}, "
        f"{time.strftime('%Y-%m-%d')}; {train_config.steps} steps, batch {train_config.batch_size}, "
        f"seeds {seeds[0]}..{seeds[-1]}, {wall:.0f} s in all.\n\n"
        f"Test MAE in bins (mean ± std over seeds) on {args.eval_size} held-out signals; "
        f"learning rate chosen on validation MAE from {lrs}.\n\n" + table
    )
    (args.out / "summary.md").write_text(summary)
    print("\n" + table)
    print(f"wrote {args.out}/results.json, curves.png, summary.md ({wall:.0f} s)")
    return results


if __name__ == "__main__":
    main()
