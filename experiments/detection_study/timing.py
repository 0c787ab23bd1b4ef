"""Seconds per training step of every arm, measured interleaved on a quiet machine.

    python experiments/detection_study/timing.py --out results/detection_study

The study's own wall-clock curves time each run as it trains, one arm after another: on a
shared machine, load that changes between arms becomes a difference between arms. This script
measures the step cost the fair way: every arm's compiled step (the very program the study
runs) on the same batch, in rounds that rotate the arms' order, the median over rounds per arm.
It writes ``timing.json`` and, where the study's ``results_*.json`` are present, plots validation
AP against ``step x seconds per step`` (``curves_*_step_time.png``); ``main.py --summarise`` puts
the table in ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout

from experiments.common.records import device_info  # noqa: E402
from experiments.detection_study import arms as arms_lib  # noqa: E402
from experiments.detection_study import fetch_data  # noqa: E402
from experiments.detection_study import synthetic as syn  # noqa: E402
from experiments.detection_study.data import data_available, load_real, sample_tiles, split_blocks  # noqa: E402
from experiments.detection_study.model import init_params  # noqa: E402
from experiments.detection_study.train import TrainConfig, build_model, compiled_step, make_optimizer  # noqa: E402


def real_config(batch: int = 16) -> TrainConfig:
    """The crowns' training program, as ``main.real_study`` builds it for the full preset."""
    return TrainConfig(steps=400, batch=batch, eval_every=100, strides=(4, 8, 16))


def synthetic_config(stride: int, batch: int = 16) -> TrainConfig:
    task = syn.SyntheticTask()
    return TrainConfig(
        steps=300, batch=batch, eval_every=50, tile=task.image_size, strides=(stride,), max_gt=task.objects
    )


def time_arms(arms, config: TrainConfig, batch, *, rounds: int, steps: int, bar=None) -> dict:
    """Median seconds per step of each arm over ``rounds`` rounds of ``steps`` steps, order rotated."""
    state = {}
    for arm in arms:
        step, _, _ = compiled_step(arm, config)
        _, params = init_params(
            nnx.eval_shape(lambda a=arm: build_model(arms_lib.ARMS[a], config.strides, 0)), 0
        )
        state[arm] = [step, params, make_optimizer(config).init(params)]
    lr = np.float32(1e-3)

    def run(arm, n):
        step, params, opt_state = state[arm]
        for _ in range(n):
            params, opt_state, value, _ = step(params, opt_state, *batch, lr)
        jax.block_until_ready(value)
        state[arm][1:] = [params, opt_state]

    for arm in arms:
        run(arm, 3)  # warm up: first calls, allocator
    per_round = {arm: [] for arm in arms}
    for r in range(rounds):
        order = arms[r % len(arms) :] + arms[: r % len(arms)]
        for arm in order:
            tic = time.perf_counter()
            run(arm, steps)
            per_round[arm].append((time.perf_counter() - tic) / steps)
            if bar is not None:
                bar.update(steps)
    out = {}
    for arm, values in per_round.items():
        out[arm] = {"median_s_per_step": statistics.median(values), "rounds": values}
    ref = out.get("ciou", {}).get("median_s_per_step")
    for arm in out:
        out[arm]["ratio_to_ciou"] = out[arm]["median_s_per_step"] / ref if ref else None
    return out


def plot_step_time(timing: dict, out: pathlib.Path) -> list[str]:
    """Validation AP against step x median seconds per step, for each study condition present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    conditions = []
    for path in sorted(out.glob("results*.json")):
        part = json.loads(path.read_text())
        if "real" in part and "runs" in part["real"] and "cross_image" not in path.stem:
            conditions.append(("real", "NEON crowns", part["real"]["runs"]))
        for stride, cond in part.get("synthetic", {}).get("conditions", {}).items():
            conditions.append((f"synthetic_stride{stride}", f"synthetic, stride {stride}", cond["runs"]))
    for key, title, runs in conditions:
        if key not in timing:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for arm in dict.fromkeys(r["arm"] for r in runs):
            if arm not in timing[key]:
                continue
            mine = [r for r in runs if r["arm"] == arm]
            steps = np.array([c["step"] for c in mine[0]["curve"]])
            ap = np.array([[c["val_AP"] for c in r["curve"]] for r in mine])
            x = steps * timing[key][arm]["median_s_per_step"]
            (line,) = ax.plot(x, ap.mean(0), marker="o", ms=3, label=arm)
            ax.fill_between(x, ap.min(0), ap.max(0), color=line.get_color(), alpha=0.15)
        ax.set_xlabel("step x seconds per step (interleaved timing)")
        ax.set_ylabel("validation AP")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        ax.set_title(f"{title}: validation AP against training time", fontsize="medium")
        fig.tight_layout()
        name = f"curves_{key}_step_time.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)
    return written


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--arms", nargs="+", choices=list(arms_lib.ARMS), default=list(arms_lib.ARMS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="steps per arm per round")
    p.add_argument("--strides", nargs="+", type=int, default=[4, 8], help="synthetic strides")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--cache", type=pathlib.Path, default=fetch_data.default_cache())
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    jobs = []
    if data_available(args.cache):
        config = real_config(args.batch)
        scenes = load_real(args.cache, scale=0.5)
        blocks = [
            b for b in split_blocks([s.image.shape[:2] for s in scenes[:2]], block=160) if b.role == "train"
        ]
        batch = sample_tiles(
            np.random.default_rng([0, 0]),
            scenes,
            blocks,
            batch=config.batch,
            tile=config.tile,
            max_gt=config.max_gt,
        )
        jobs.append(("real", config, batch))
    for stride in args.strides:
        config = synthetic_config(stride, args.batch)
        images, boxes, mask, _ = syn.make_batch(
            np.random.default_rng([0, 0]), syn.SyntheticTask(), config.batch
        )
        jobs.append((f"synthetic_stride{stride}", config, (images, boxes, mask)))

    timing = {
        "device": device_info(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_before": os.getloadavg(),
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "command": "python experiments/detection_study/timing.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    total = len(jobs) * len(args.arms) * args.rounds * args.steps
    with tqdm(total=total, desc="timing", unit="step") as bar:
        for key, config, batch in jobs:
            bar.set_postfix_str(key)
            timing[key] = time_arms(
                list(args.arms), config, batch, rounds=args.rounds, steps=args.steps, bar=bar
            )
    timing["load_average_after"] = os.getloadavg()
    (args.out / "timing.json").write_text(json.dumps(timing, indent=1))
    timing["plots"] = plot_step_time(timing, args.out)
    (args.out / "timing.json").write_text(json.dumps(timing, indent=1))
    print(
        json.dumps(
            {k: {a: round(v["median_s_per_step"], 4) for a, v in timing[k].items()} for k, _, _ in jobs}
        )
    )
    return timing


if __name__ == "__main__":
    main()
