"""How much more than a softmax does DFL cost? Timings and XLA scratch memory.

    python -m experiments.benchmark                      # YOLO-sized: 64 x 8400 x 4 rows, 17 bins
    python -m experiments.benchmark --rows 100000 --json runs/bench.json
    python -m experiments.benchmark --part detection    # box loss, assigner, NMS at YOLOv8 size
    python -m experiments.benchmark --part vmap --runs 4 --repeats 10 --vmap-steps 3   # detection runs
    python -m experiments.benchmark --part toy --runs 5 --repeats 10     # toy seeds, one program

Every function is jitted, compiled once, then all are timed in an interleaved
round-robin (A, B, C, A, B, C, ...) so that machine noise hits them alike; the
table shows medians, and each target ratio is the median over rounds of the
ratio of the two functions' times in that round, all measured in this one run. The floor is
``logsumexp``: every softmax loss computes one and its gradient writes a
softmax-sized array. Also timed: the alternatives a JAX user has today, a naive
DFL (dense two-hot times ``log_softmax``) and ``optax.softmax_cross_entropy``
with a dense two-hot target. Scratch memory is XLA's own figure,
``compiled.memory_analysis().temp_size_in_bytes``. On a GPU the achieved
bandwidth of the fused gradient (logits read + gradient written) is reported as
a fraction of an elementwise device copy (read + write) measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jax_dfl
from experiments.common.records import device_info

TARGETS = {
    # name: (numerator, denominator, kind, target, stretch)
    "dfl value_and_grad / logsumexp value_and_grad": ("dfl v&g", "logsumexp v&g", "time", 1.15, 1.05),
    "dfl forward / logsumexp forward": ("dfl fwd", "logsumexp fwd", "time", 1.75, 1.25),
    "decode / logsumexp forward": ("decode", "logsumexp fwd", "time", 1.5, None),
    "dfl value_and_grad scratch / logits bytes": ("dfl v&g", None, "memory", 0.3, None),
}


def make_functions():
    def lse_rows(x, y):
        return jax.nn.logsumexp(x.astype(jnp.float32), axis=-1)

    def dfl_rows(x, y):
        return jax_dfl.distribution_focal_loss(x, y)

    def naive_rows(x, y):
        logp = jax.nn.log_softmax(x.astype(jnp.float32), axis=-1)
        return -jnp.sum(jax_dfl.two_hot(y, x.shape[-1]) * logp, axis=-1)

    def optax_rows(x, y):
        return optax.softmax_cross_entropy(x.astype(jnp.float32), jax_dfl.two_hot(y, x.shape[-1]))

    def vg(rows_fn):
        return jax.value_and_grad(lambda x, y: rows_fn(x, y).mean())

    return {
        "logsumexp fwd": lse_rows,
        "logsumexp v&g": vg(lse_rows),
        "dfl fwd": dfl_rows,
        "dfl v&g": vg(dfl_rows),
        "decode": lambda x, y: jax_dfl.decode(x),
        "naive JAX DFL fwd": naive_rows,
        "naive JAX DFL v&g": vg(naive_rows),
        "optax CE(two_hot) fwd": optax_rows,
        "optax CE(two_hot) v&g": vg(optax_rows),
        "device copy (x*2)": lambda x, y: x * 2,
    }


def bench_dtype(rows: int, bins: int, dtype, repeats: int) -> dict:
    kx, ky = jax.random.split(jax.random.key(0))
    x = (3 * jax.random.normal(kx, (rows, bins))).astype(dtype)
    y = jax.random.uniform(ky, (rows,), maxval=bins - 1)
    logits_bytes = x.size * x.dtype.itemsize
    compiled, scratch = {}, {}
    for name, fn in make_functions().items():
        c = jax.jit(fn).lower(x, y).compile()
        compiled[name] = c
        mem = c.memory_analysis()
        scratch[name] = None if mem is None else int(mem.temp_size_in_bytes)
        jax.block_until_ready(c(x, y))  # warm up

    # Sanity: the fused loss agrees with the naive one on this data.
    np.testing.assert_allclose(
        compiled["dfl fwd"](x, y), compiled["naive JAX DFL fwd"](x, y), rtol=2e-4, atol=2e-4
    )

    times = {name: [] for name in compiled}
    for _ in range(repeats):
        for name, c in compiled.items():
            t = time.perf_counter()
            jax.block_until_ready(c(x, y))
            times[name].append(time.perf_counter() - t)
    median = {name: float(np.median(ts)) for name, ts in times.items()}

    # Bandwidth: the fused gradient reads the logits and writes the gradient.
    moved_vg = 2 * logits_bytes
    copy_bw = 2 * logits_bytes / median["device copy (x*2)"]
    bandwidth = {
        "dfl v&g GB/s": moved_vg / median["dfl v&g"] / 1e9,
        "copy GB/s": copy_bw / 1e9,
        "dfl v&g fraction of copy": moved_vg / median["dfl v&g"] / copy_bw,
    }
    ratios = {}
    for label, (num, den, kind, target, stretch) in TARGETS.items():
        if kind == "time":
            # Paired: the two were timed back to back in each round, so slow
            # drifts of a shared machine cancel; the median over rounds.
            value = float(np.median(np.array(times[num]) / np.array(times[den])))
        else:
            value = None if scratch[num] is None else scratch[num] / logits_bytes
        ratios[label] = {"value": value, "target": target, "stretch": stretch}
    ratios["dfl value_and_grad scratch / logsumexp value_and_grad scratch"] = {
        "value": None
        if scratch["logsumexp v&g"] in (None, 0)
        else scratch["dfl v&g"] / scratch["logsumexp v&g"],
        "target": None,
        "stretch": 1.0,
    }
    return {
        "dtype": jnp.dtype(dtype).name,
        "rows": rows,
        "bins": bins,
        "logits_bytes": logits_bytes,
        "median_seconds": median,
        "min_seconds": {name: float(np.min(ts)) for name, ts in times.items()},
        "scratch_bytes": scratch,
        "ratios": ratios,
        "bandwidth": bandwidth,
    }


# --- detection building blocks ------------------------------------------------------------


def _load_inputs(name: str):
    return importlib.import_module(f"experiments.benchmark_inputs.{name}")


def _time_interleaved(compiled: dict, args: dict, repeats: int) -> dict[str, list[float]]:
    times = {name: [] for name in compiled}
    for _ in range(repeats):
        for name, fn in compiled.items():
            t = time.perf_counter()
            jax.block_until_ready(fn(*args[name]))
            times[name].append(time.perf_counter() - t)
    return times


def bench_detection(repeats: int, images: int = 64) -> dict:
    """YOLOv8-sized detection blocks: box loss, assigner, NMS (float32).

    Box loss: value_and_grad with respect to the side logits and the decoded
    boxes, vmapped over ``images`` images of 8400 points x 4 sides x 16 bins,
    at 1 % and 10 % foreground, with the foreground buffer sized to the
    foreground count and (for contrast) to all points; against DFL and
    logsumexp value_and_grad over every point's logits in the same run.
    """
    inputs = _load_inputs("assign_and_boxloss")
    compiled, args, scratch, notes = {}, {}, {}, {}

    def box_loss(max_foreground):
        def total(logits, boxes, points, target_boxes, target_scores, foreground, strides, normalizer):
            def one(lg, bx, tb, ts, fg):
                iou, dfl = jax_dfl.yolo_box_loss(
                    lg, bx, points, tb, ts, fg,
                    point_strides=strides, normalizer=normalizer, max_foreground=max_foreground,
                )  # fmt: skip
                return iou + dfl

            return jnp.sum(jax.vmap(one)(logits, boxes, target_boxes, target_scores, foreground))

        return total

    def box_loss_vg(max_foreground):
        return jax.value_and_grad(box_loss(max_foreground), argnums=(0, 1))

    def dfl_all(logits, targets):
        return jax.value_and_grad(lambda x: jax_dfl.distribution_focal_loss(x, targets).mean())(logits)

    def lse_all(logits, targets):
        return jax.value_and_grad(lambda x: jax.nn.logsumexp(x, axis=-1).mean())(logits)

    for percent in (1, 10):
        batch = inputs.make_boxloss_inputs(images=images, foreground_fraction=percent / 100)
        count = batch.pop("foreground_count")
        notes[f"foreground points per image at {percent}%"] = count
        order = ("pred_logits", "pred_boxes", "points", "target_boxes", "target_scores", "foreground")
        loss_args = tuple(batch[k] for k in order) + (batch["point_strides"], batch["normalizer"])
        for label, buffer in (
            (f"box loss v&g {percent}% fg", count),
            (f"box loss v&g {percent}% fg, no buffer", None),
        ):
            fn = box_loss_vg(buffer)
            compiled[label] = jax.jit(fn).lower(*loss_args).compile()
            args[label] = loss_args
        if percent == 1:
            # The floor of any value_and_grad that returns dense gradients: writing them.
            compiled["zero gradients (write floor)"] = (
                jax.jit(lambda lg, bx: (jnp.zeros_like(lg), jnp.zeros_like(bx)))
                .lower(batch["pred_logits"], batch["pred_boxes"])
                .compile()
            )
            args["zero gradients (write floor)"] = (batch["pred_logits"], batch["pred_boxes"])
            compiled["box loss forward 1% fg"] = jax.jit(box_loss(count)).lower(*loss_args).compile()
            args["box loss forward 1% fg"] = loss_args
            targets = jax.random.uniform(jax.random.key(1), batch["pred_logits"].shape[:-1], maxval=15)
            for label, fn in (("dfl v&g, all points", dfl_all), ("logsumexp v&g, all points", lse_all)):
                compiled[label] = jax.jit(fn).lower(batch["pred_logits"], targets).compile()
                args[label] = (batch["pred_logits"], targets)

    assign = inputs.make_assign_inputs(images=images)
    assign_fn = jax.vmap(
        lambda s, b, p, gl, gb, gm: jax_dfl.task_aligned_assign(
            pred_boxes=b, pred_scores=s, points=p, gt_boxes=gb, gt_labels=gl, gt_mask=gm
        ),
        in_axes=(0, 0, None, 0, 0, 0),
    )
    assign_args = tuple(assign.values())
    compiled["task_aligned_assign (vmapped)"] = jax.jit(assign_fn).lower(*assign_args).compile()
    args["task_aligned_assign (vmapped)"] = assign_args
    g, a, c = assign["gt_boxes"].shape[1], assign["points"].shape[0], assign["scores"].shape[-1]
    notes["images x gt slots x points x classes float32 bytes"] = images * g * a * c * 4

    boxes, scores, classes = _load_inputs("nms").make_nms_inputs(8400)
    nms_args = tuple(jax.device_put((boxes, scores, classes)))
    for max_det in (100, 300):
        label = f"nms 8400 -> {max_det}"
        compiled[label] = (
            jax.jit(
                lambda b, s, c, max_det=max_det: jax_dfl.non_max_suppression(
                    b, s, labels=c, iou_threshold=0.7, max_detections=max_det, score_threshold=0.001
                )
            )
            .lower(*nms_args)
            .compile()
        )
        args[label] = nms_args

    for name, fn in compiled.items():
        mem = fn.memory_analysis()
        scratch[name] = None if mem is None else int(mem.temp_size_in_bytes)
        jax.block_until_ready(fn(*args[name]))  # warm up
    times = _time_interleaved(compiled, args, repeats)
    median = {name: float(np.median(ts)) for name, ts in times.items()}

    def paired(num, den):
        return float(np.median(np.array(times[num]) / np.array(times[den])))

    ratios = {
        "box loss v&g 1% fg / dfl v&g all points": paired("box loss v&g 1% fg", "dfl v&g, all points"),
        "box loss v&g 10% fg / dfl v&g all points": paired("box loss v&g 10% fg", "dfl v&g, all points"),
        "box loss v&g 10% fg / box loss v&g 1% fg": paired("box loss v&g 10% fg", "box loss v&g 1% fg"),
        "box loss v&g 1% fg / logsumexp v&g all points": paired(
            "box loss v&g 1% fg", "logsumexp v&g, all points"
        ),
        "box loss v&g 1% fg / zero gradients (write floor)": paired(
            "box loss v&g 1% fg", "zero gradients (write floor)"
        ),
        "box loss v&g 1% fg, no buffer / buffered": paired(
            "box loss v&g 1% fg, no buffer", "box loss v&g 1% fg"
        ),
    }
    if scratch["task_aligned_assign (vmapped)"] is not None:
        ratios["assigner scratch / (images x gts x points x classes) bytes"] = (
            scratch["task_aligned_assign (vmapped)"]
            / notes["images x gt slots x points x classes float32 bytes"]
        )
    return {
        "images": images,
        "median_seconds": median,
        "scratch_bytes": scratch,
        "ratios": ratios,
        "notes": notes,
    }


def print_detection_report(result: dict) -> None:
    print(f"\ndetection building blocks ({result['images']} images, 640 px, 8400 points; float32)")
    print(f"{'function':<40}{'median ms':>11}{'scratch MB':>12}")
    for name, seconds in result["median_seconds"].items():
        s = result["scratch_bytes"][name]
        print(f"{name:<40}{seconds * 1e3:>11.2f}{'n/a' if s is None else f'{s / 1e6:.1f}':>12}")
    print("ratios (paired per round):")
    for label, value in result["ratios"].items():
        print(f"  {label} = {value:.3f}")
    for label, value in result["notes"].items():
        print(f"  {label}: {value:,}")


def print_report(result: dict, on_gpu: bool) -> None:
    med, scratch, lb = result["median_seconds"], result["scratch_bytes"], result["logits_bytes"]
    print(f"\n{result['rows']:,} x {result['bins']} {result['dtype']} logits ({lb / 1e6:.1f} MB)")
    print(f"{'function':<26}{'median ms':>11}{'vs lse fwd':>12}{'vs lse v&g':>12}{'scratch MB':>12}")
    for name in med:
        s = scratch[name]
        print(
            f"{name:<26}{med[name] * 1e3:>11.2f}{med[name] / med['logsumexp fwd']:>12.2f}"
            f"{med[name] / med['logsumexp v&g']:>12.2f}{'n/a' if s is None else f'{s / 1e6:.1f}':>12}"
        )
    print("targets:")
    for label, r in result["ratios"].items():
        value, target, stretch = r["value"], r["target"], r["stretch"]
        if value is None:
            print(f"  {label}: n/a")
            continue
        verdict = ""
        if target is not None:
            verdict = "met" if value <= target else "MISSED"
        if stretch is not None:
            verdict += (", " if verdict else "") + ("stretch met" if value <= stretch else "stretch missed")
        bound = f"<= {target}" if target is not None else ""
        bound += (" (stretch " if bound else "(stretch ") + f"{stretch})" if stretch is not None else ""
        print(f"  {label} = {value:.3f}  target {bound}: {verdict}")
    if on_gpu:
        b = result["bandwidth"]
        print(
            f"bandwidth: dfl v&g {b['dfl v&g GB/s']:.0f} GB/s = {b['dfl v&g fraction of copy']:.2f} "
            f"of an elementwise copy ({b['copy GB/s']:.0f} GB/s)"
        )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=64 * 8400 * 4)
    p.add_argument("--bins", type=int, default=17)
    p.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", type=pathlib.Path)
    p.add_argument(
        "--part",
        nargs="+",
        choices=["dfl", "detection", "vmap", "toy", "all"],
        default=["all"],
        help="parts to run",
    )
    p.add_argument("--runs", type=int, nargs="+", default=[4, 8], help="runs (seeds) per program (vmap, toy)")
    p.add_argument("--vmap-steps", type=int, default=5, help="timed steps per round (--part vmap)")
    p.add_argument("--images", type=int, default=64, help="images in the detection part")
    args = p.parse_args(argv)

    device = jax.devices()[0]
    on_gpu = device.platform == "gpu"
    info = device_info()
    # A shared machine's load skews absolute times (paired ratios much less): record it.
    info["load_average_1_5_15_min_at_start"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}")
    results, detection, vmapped, toy = [], None, None, None
    if {"dfl", "all"} & set(args.part):
        results = [bench_dtype(args.rows, args.bins, jnp.dtype(d), args.repeats) for d in args.dtype]
        for r in results:
            print_report(r, on_gpu)
    if {"detection", "all"} & set(args.part):
        detection = bench_detection(args.repeats, args.images)
        print_detection_report(detection)
    if {"vmap", "all"} & set(args.part):
        vmapped = bench_vmapped_runs(args.runs, steps=args.vmap_steps, rounds=max(2, args.repeats // 5))
        print_vmapped_report(vmapped)
    if {"toy", "all"} & set(args.part):
        toy = bench_toy_seeds(args.runs, rounds=max(2, args.repeats))
        print_toy_report(toy)
    if info["load_average_1_5_15_min_at_start"] is not None:
        info["load_average_1_5_15_min_at_end"] = list(os.getloadavg())
    out = {
        "device": info,
        "config": vars(args) | {"json": str(args.json)},
        "results": results,
        "detection": detection,
        "vmapped_runs": vmapped,
        "toy_seeds": toy,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return out


# --- seeds in one program: a detection training step, one run against B runs vmapped --------------


def bench_vmapped_runs(batch_sizes, *, steps: int = 5, rounds: int = 3, arm: str = "ciou_dfl") -> dict:
    """Seconds per training step of the detection study's synthetic stride-8 program (16 images of
    128 px a step): one run alone, and ``B`` runs (seeds) stacked and vmapped in one program; the
    speed-up is ``B x (one run's step) / (the vmapped step)`` against ``B`` sequential runs."""
    from flax import nnx

    from experiments.detection_study import synthetic as syn
    from experiments.detection_study.arms import ARMS
    from experiments.detection_study.model import init_params
    from experiments.detection_study.train import (
        TrainConfig,
        build_model,
        compiled_batch_step,
        compiled_step,
        make_optimizer,
    )

    task = syn.SyntheticTask()
    config = TrainConfig(steps=300, batch=16, tile=task.image_size, strides=(8,), max_gt=task.objects)
    images, boxes, mask, _ = syn.make_batch(np.random.default_rng(0), task, config.batch)
    abstract = nnx.eval_shape(lambda: build_model(ARMS[arm], config.strides, 0))
    tx = make_optimizer(config)

    def timed(step, params, opt_state, data, lr, gain):
        params, opt_state, value, _ = step(params, opt_state, *data, lr, gain)  # warm up
        jax.block_until_ready(value)
        per_round = []
        for _ in range(rounds):
            tic = time.perf_counter()
            for _ in range(steps):
                params, opt_state, value, _ = step(params, opt_state, *data, lr, gain)
            jax.block_until_ready(value)
            per_round.append((time.perf_counter() - tic) / steps)
        return float(np.median(per_round))

    single, _, _ = compiled_step(arm, config)
    params = init_params(abstract, 0)[1]
    one = timed(single, params, tx.init(params), (images, boxes, mask), jnp.float32(1e-3), jnp.float32(0.4))
    out = {
        "arm": arm,
        "config": "synthetic stride 8, batch 16, 128 px",
        "one_run_s_per_step": one,
        "vmapped": {},
    }
    for b, mode in itertools.product(batch_sizes, ("vmap", "map")):
        step, _, _ = compiled_batch_step(arm, config, b, mode)
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[init_params(abstract, s)[1] for s in range(b)])
        data = tuple(np.broadcast_to(x, (b, *x.shape)).copy() for x in (images, boxes, mask))
        lrs, gains = jnp.full((b,), 1e-3, jnp.float32), jnp.full((b,), 0.4, jnp.float32)
        seconds = timed(step, stacked, jax.vmap(tx.init)(stacked), data, lrs, gains)
        out["vmapped"][f"{b} {mode}"] = {"s_per_step": seconds, "speedup_vs_sequential": b * one / seconds}
    return out


def print_vmapped_report(result: dict) -> None:
    print(f"\nseeds in one program ({result['arm']}, {result['config']}):")
    print(f"  one run: {result['one_run_s_per_step'] * 1e3:.1f} ms/step")
    for b, r in result["vmapped"].items():
        runs, mode = b.split()
        print(
            f"  {runs} runs ({'jax.vmap' if mode == 'vmap' else 'lax.map'}): "
            f"{r['s_per_step'] * 1e3:.1f} ms/step ({r['speedup_vs_sequential']:.2f}x {runs} sequential runs)"
        )


# --- seeds in one program: the toy study's training step, one seed against S seeds ----------------


def bench_toy_seeds(
    seed_counts, *, losses=("l1", "dfl"), chunk: int = 10, calls: int = 5, rounds: int = 10
) -> dict:
    """Seconds per training step of the toy study's program (the default config's trunk, batch and
    schedule; ``chunk`` steps per call, as the study runs them): one seed, and ``S`` seeds in one
    program, stacked under ``jax.vmap`` (as the study trains them) or in sequence under
    ``jax.lax.map``. Every program is compiled first, then all are timed in interleaved rounds of
    ``calls`` calls; the speed-up against ``S`` runs in sequence is ``S x (one seed's step) / (the
    S-seed step)``, the median over rounds of that ratio within each round."""
    from experiments.toy_regression import configs
    from experiments.toy_regression.train import _trainer

    config = configs.get("default")
    programs = {}
    for loss in losses:
        for count, mode in [(1, "vmap"), *itertools.product(seed_counts, ("vmap", "map"))]:
            state, keys, run, _ = _trainer(
                loss,
                tuple(range(count)),
                task=config.task,
                train_config=config.train,
                learning_rate=1e-2,
                chunk=chunk,
                mesh=None,
                mode=mode,
            )
            programs[(loss, count, mode)] = [jax.block_until_ready(run(state, keys, 0)), keys, run]
    times = {name: [] for name in programs}
    for r in range(rounds):
        for name, program in programs.items():
            state, keys, run = program
            tic = time.perf_counter()
            for c in range(calls):
                state = run(state, keys, (r * calls + c + 1) * chunk)
            jax.block_until_ready(state)
            times[name].append((time.perf_counter() - tic) / (calls * chunk))
            program[0] = state
    out = {
        "config": f"default toy config: hidden {config.train.hidden}, depth {config.train.depth}, batch "
        f"{config.train.batch_size}; {chunk} steps per call, {calls} calls per round, {rounds} rounds",
        "arms": {},
    }
    for loss in losses:
        one = np.array(times[(loss, 1, "vmap")])
        entry = {"one_seed_s_per_step": float(np.median(one)), "seeds": {}}
        for count, mode in itertools.product(seed_counts, ("vmap", "map")):
            t = np.array(times[(loss, count, mode)])
            entry["seeds"][f"{count} {mode}"] = {
                "s_per_step": float(np.median(t)),
                "speedup_vs_sequential": float(np.median(count * one / t)),
            }
        out["arms"][loss] = entry
    return out


def print_toy_report(result: dict) -> None:
    print(f"\ntoy seeds in one program ({result['config']}):")
    for loss, entry in result["arms"].items():
        print(f"  {loss}: one seed {entry['one_seed_s_per_step'] * 1e3:.2f} ms/step")
        for key, r in entry["seeds"].items():
            count, mode = key.split()
            how = "jax.vmap" if mode == "vmap" else "lax.map"
            print(
                f"    {count} seeds ({how}): {r['s_per_step'] * 1e3:.2f} ms/step "
                f"({r['speedup_vs_sequential']:.2f}x {count} sequential runs)"
            )


if __name__ == "__main__":
    main()
