"""Detection study (issue 11): box-regression arms on NEON tree crowns and on synthetic controls.

    python experiments/detection_study/fetch_data.py            # once: the images, into the cache
    python experiments/detection_study/main.py --preset quick --out runs/study_quick
    python experiments/detection_study/main.py --preset full --data real --out results/detection_study
    python experiments/detection_study/main.py --preset full --data synthetic --out results/detection_study

For each data set: a pilot sweep of the peak learning rate per arm (one seed,
``PILOT_SEED``, not one of the reported seeds), the rate of best final
validation AP chosen, then every arm at its rate for each seed (the same seeds
for every arm: same initial shared weights and the same batches). The test
split is scored by pycocotools (COCO AP by size, and terciles on the crowns),
with paired intervals against ``ciou`` and ``ciou_dist``: a bootstrap over
seeds and test blocks (within each source image) on the crowns, a t-interval
over seeds on the synthetic controls. ``--data both`` writes both into one
directory; ``--data real`` or ``synthetic`` writes ``results_<data>.json`` so the
two halves can run one after another (or in parallel on more cores) and be read
together by ``--summarise``.

Writes DIR/results[_<data>].json, DIR/*.png and DIR/summary.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np
from tqdm import tqdm

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout: jax_dfl and experiments importable

from experiments.common.records import device_info  # noqa: E402
from experiments.detection_study import arms as arms_lib  # noqa: E402
from experiments.detection_study import evaluate as ev  # noqa: E402
from experiments.detection_study import fetch_data, plots  # noqa: E402
from experiments.detection_study import synthetic as syn  # noqa: E402
from experiments.detection_study.data import data_available  # noqa: E402
from experiments.detection_study.datasets import RealData, SyntheticData, size_edges_for  # noqa: E402
from experiments.detection_study.train import TrainConfig, train  # noqa: E402

PILOT_SEED = 1000
REAL_METRICS = ["AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AP_T1", "AP_T2", "AP_T3"]
SYN_METRICS = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"]

PRESETS = {
    # <= 3 minutes on 2 CPU cores: three arms (the two references and YOLOv8's box loss), a few
    # steps, 3 learning rates x 1 pilot seed, 2 seeds; both data sets; one synthetic stride.
    "quick": {
        "arms": ["ciou", "ciou_dist", "ciou_dfl"],
        "lrs": [1e-3, 3e-3, 1e-2],
        "seeds": 2,
        "replicates": 50,
        "real": {"steps": 6, "batch": 4, "eval_every": 3},
        "synthetic": {
            "steps": 6,
            "batch": 8,
            "eval_every": 3,
            "val_images": 16,
            "test_images": 32,
            "strides": [4],
            "pilot_stride": 4,
        },
    },
    # For the test suite: two arms, real and synthetic share one training program (same TrainConfig:
    # a 96 px tile, one stride-8 level), so each arm compiles once.
    "smoke": {
        "arms": ["ciou", "ciou_dfl"],
        "lrs": [1e-3, 3e-3, 1e-2],
        "seeds": 2,
        "replicates": 20,
        "real": {
            "steps": 2,
            "batch": 2,
            "eval_every": 2,
            "tile": 96,
            "strides": [8],
            "max_gt": 16,
            "block": 64,
            "eval_core": 64,  # inference tiles of 64 + 2 x 16 = 96 px: the synthetic images' shape
            "eval_margin": 16,
        },
        "synthetic": {
            "steps": 2,
            "batch": 2,
            "eval_every": 2,
            "val_images": 4,
            "test_images": 8,
            "strides": [8],
            "pilot_stride": 8,
            "max_gt": 16,
            "chunk": 8,  # the real data's inference batch: one compiled forward per arm for both
        },
    },
    # 2 CPU cores: the real data's 48 runs of 400 steps took 5200 s and the synthetic controls' 78 runs
    # of 300 steps 2828 s, run side by side with other jobs (0.115-0.13 and 0.03-0.066 s a step when
    # timed interleaved: about 40-45 and 25 min alone). The resolution test uses strides 4 and 8 here
    # (a stride-2 step costs 3-5x a stride-4 one on CPU); the accelerator preset runs 2, 4 and 8.
    "full": {
        "arms": list(arms_lib.ARMS),
        "lrs": [1e-3, 3e-3, 1e-2],
        "seeds": 5,
        "replicates": 1000,
        "real": {"steps": 400, "batch": 16, "eval_every": 100},
        "synthetic": {
            "steps": 300,
            "batch": 16,
            "eval_every": 50,
            "val_images": 128,
            "test_images": 512,
            "strides": [4, 8],
            "pilot_stride": 4,
        },
    },
    # One GPU, meant for <= 8 minutes a data set (run --data real and --data synthetic separately):
    # longer schedules, bigger batches, more seeds, all three strides. Not yet timed on a GPU.
    "accelerator": {
        "arms": list(arms_lib.ARMS),
        "lrs": [1e-3, 3e-3, 1e-2],
        "seeds": 8,
        "replicates": 1000,
        "real": {"steps": 1000, "batch": 32, "eval_every": 200},
        "synthetic": {
            "steps": 1000,
            "batch": 64,
            "eval_every": 200,
            "val_images": 256,
            "test_images": 2048,
            "strides": [2, 4, 8],
            "pilot_stride": 4,
            "chunk": 256,
        },
    },
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    p.add_argument("--data", choices=["both", "real", "synthetic"], default="both")
    p.add_argument("--arms", nargs="+", choices=list(arms_lib.ARMS))
    p.add_argument("--lrs", nargs="+", type=float, help="pilot learning rates")
    p.add_argument("--seeds", type=int)
    p.add_argument("--steps", type=int, help="override both data sets' steps")
    p.add_argument("--split", choices=["blocks", "cross_image"], default="blocks")
    p.add_argument("--replicates", type=int)
    p.add_argument("--cache", type=pathlib.Path, default=fetch_data.default_cache())
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--summarise", action="store_true", help="only rewrite summary.md from the JSON files")
    p.add_argument(
        "--pilot-only",
        action="store_true",
        help="only the pilot sweep (extra --lrs beyond the grid's edge, say), written to pilot_<data>.json",
    )
    return p.parse_args(argv)


def _fmt(x: dict, digits: int = 3) -> str:
    if x is None or np.isnan(x["mean"]):
        return "n/a"
    return f"{x['mean']:.{digits}f} [{x['lo']:.{digits}f}, {x['hi']:.{digits}f}]"


def run_arms(dataset, arms, seeds, lrs, config, bar, *, pilot_dataset=None) -> dict:
    """Pilot sweep on ``pilot_dataset`` (default ``dataset``), then every arm x seed at its chosen rate."""
    pilot_dataset = pilot_dataset or dataset
    pilot, chosen = [], {}
    for arm in arms:
        spec = arms_lib.ARMS[arm]
        best = None
        for lr in lrs:
            bar.set_postfix_str(f"{dataset.name} pilot {arm} lr={lr:g}")
            result = train(
                arm,
                seed=PILOT_SEED,
                lr=lr,
                config=pilot_dataset.config,
                batch_fn=pilot_dataset.batch,
                validate=lambda m, s=spec: pilot_dataset.validate(s, m),
                progress=bar.update,
            )
            final = result.curve[-1]["val_AP"]
            pilot.append({"arm": arm, "lr": lr, "val_AP": final, "curve": result.curve})
            if best is None or (not np.isnan(final) and (np.isnan(best[1]) or final > best[1])):
                best = (lr, final)
        chosen[arm] = best[0]
    return {"pilot": pilot, "chosen_lr": chosen}


def run_seeds(dataset, arms, seeds, chosen, bar):
    runs, records = [], {}
    for arm in arms:
        spec = arms_lib.ARMS[arm]
        for seed in seeds:
            bar.set_postfix_str(f"{dataset.name} {arm} seed={seed}")
            result = train(
                arm,
                seed=seed,
                lr=chosen[arm],
                config=dataset.config,
                batch_fn=dataset.batch,
                validate=lambda m, s=spec: dataset.validate(s, m),
                progress=bar.update,
            )
            record = dataset.test(spec, result.model())
            records.setdefault(arm, []).append(record)
            runs.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "lr": chosen[arm],
                    "curve": result.curve,
                    "test": ev.ap_from_matches(record.matches),
                    "extra": record.extra,
                    "premise": ev.premise_check(record.records, size_edges_for(dataset)),
                    "compile_seconds": result.compile_seconds,
                    "train_seconds": result.train_seconds,
                    "eval_seconds": result.eval_seconds,
                }
            )
    return runs, records


def premise_summary(runs: list[dict]) -> dict:
    """Mean over seeds of the Spearman correlations, per arm and size group."""
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r["premise"] for r in runs if r["arm"] == arm]
        out[arm] = {
            group: {key: ev.nanmean([m[group][key] for m in mine]) for key in mine[0][group]}
            for group in mine[0]
        }
    return out


def real_study(args, preset, arms, seeds, lrs, bar) -> dict:
    spec = preset["real"]
    config = TrainConfig(
        steps=args.steps or spec["steps"],
        batch=spec["batch"],
        eval_every=spec["eval_every"],
        **{k: spec[k] for k in ("tile", "max_gt") if k in spec},
        strides=tuple(spec.get("strides", (4, 8, 16))),
    )
    eval_config = ev.EvalConfig(core=spec.get("eval_core", 192), margin=spec.get("eval_margin", 32))
    dataset = RealData(
        args.cache, config, split=args.split, block=spec.get("block", 160), eval_config=eval_config
    )
    out = {
        "data": dataset.describe(),
        "train_config": dataclasses.asdict(config),
        "eval_config": dataclasses.asdict(dataset.eval_config),
    }
    out.update(run_arms(dataset, arms, seeds, lrs, config, bar))
    if args.pilot_only:
        return out
    runs, records = run_seeds(dataset, arms, seeds, out["chosen_lr"], bar)
    out["runs"] = runs
    strata = records[arms[0]][0].strata
    tic = time.perf_counter()
    out["intervals"] = ev.bootstrap_intervals(
        {a: [r.matches for r in records[a]] for a in arms},
        strata,
        references=arms_lib.REFERENCES,
        metrics=REAL_METRICS,
        replicates=args.replicates or preset["replicates"],
    )
    out["bootstrap_seconds"] = time.perf_counter() - tic
    out["premise"] = premise_summary(runs)
    tag = "real" if args.split == "blocks" else f"real_{args.split}"  # the cross-image run keeps its own
    plots.ap_by_size(
        out["intervals"]["AP"],
        REAL_METRICS,
        args.out / f"ap_by_size_{tag}.png",
        f"NEON crowns, test blocks: AP per arm ({len(seeds)} seeds; bootstrap 95% over seeds and blocks)",
    )
    plots.curves(
        runs, args.out / f"curves_{tag}.png", "NEON crowns: validation AP (mean over seeds, min-max band)"
    )
    shown = [a for a in ("ciou", "ciou_dist", "ciou_dfl") if a in records] or arms[:3]
    plots.test_tiles(
        dataset.test_views(3),
        {a: records[a][0].detections for a in shown},
        args.out / f"test_tiles_{tag}.png",
    )
    return out


def synthetic_study(args, preset, arms, seeds, lrs, bar) -> dict:
    spec = preset["synthetic"]
    task = syn.SyntheticTask()

    def dataset_for(stride):
        config = TrainConfig(
            steps=args.steps or spec["steps"],
            batch=spec["batch"],
            eval_every=spec["eval_every"],
            tile=task.image_size,
            strides=(stride,),
            max_gt=spec.get("max_gt", task.objects),
        )
        return SyntheticData(
            task,
            config,
            val_images=spec["val_images"],
            test_images=spec["test_images"],
            chunk=spec.get("chunk", 64),
        )

    pilot_data = dataset_for(spec["pilot_stride"])
    out = {"task": dataclasses.asdict(task), "pilot_stride": spec["pilot_stride"]}
    out.update(run_arms(pilot_data, arms, seeds, lrs, pilot_data.config, bar))
    if args.pilot_only:
        return out
    out["conditions"] = {}
    cells = []
    for stride in spec["strides"]:
        dataset = pilot_data if stride == spec["pilot_stride"] else dataset_for(stride)
        runs, _ = run_seeds(dataset, arms, seeds, out["chosen_lr"], bar)
        per_arm = {a: [r["test"] for r in runs if r["arm"] == a] for a in arms}
        ap = {a: {m: ev.t_interval([v[m] for v in per_arm[a]]) for m in SYN_METRICS} for a in arms}
        diff = {
            f"{a}-{r}": {
                m: ev.t_interval([x[m] - y[m] for x, y in zip(per_arm[a], per_arm[r], strict=True)])
                for m in SYN_METRICS
            }
            for a, r in ev.reference_pairs(arms, arms_lib.REFERENCES)
        }
        out["conditions"][str(stride)] = {
            "data": dataset.describe(),
            "train_config": dataclasses.asdict(dataset.config),
            "runs": runs,
            "AP": ap,
            "diff": diff,
            "premise": premise_summary(runs),
        }
        for size, (lo, hi) in zip(syn.SIZE_NAMES, task.size_ranges, strict=True):
            for key, value in diff.items():
                arm, ref = key.split("-")
                if ref != "ciou":
                    continue
                cells.append(
                    {
                        "arm": arm,
                        "stride": stride,
                        "size": size,
                        "pixels": (lo + hi) / 2,
                        "bins": (lo + hi) / 2 / stride,
                        **value[f"AP_{size}"],
                    }
                )
        plots.curves(
            runs,
            args.out / f"curves_synthetic_stride{stride}.png",
            f"synthetic, stride {stride}: validation AP (mean over seeds, min-max band)",
        )
        plots.ap_by_size(
            ap,
            SYN_METRICS,
            args.out / f"ap_by_size_synthetic_stride{stride}.png",
            f"synthetic, stride {stride}: AP per arm ({len(seeds)} seeds; 95% t-interval)",
        )
    out["resolution"] = cells
    if cells:
        plots.resolution(
            cells,
            args.out / "resolution_synthetic.png",
            "Does the gain over ciou follow size in bins or in pixels?",
        )
    return out


def summary_markdown(results: dict) -> str:
    lines = ["# Detection study: box-regression arms on NEON tree crowns and synthetic controls", ""]
    for name, res in results.items():
        if name in ("device", "config"):
            continue
        lines += [f"## {name}", ""]
        if res.get("skipped"):
            lines += [f"Skipped: {res['skipped']}", ""]
            continue
        lines += [
            "Chosen peak learning rates (pilot, one seed, final validation AP): "
            + ", ".join(f"{a} {lr:g}" for a, lr in res["chosen_lr"].items()),
            "",
        ]
        lines += pilot_table(res["pilot"], res.get("pilot_extra", [])) + [""]
        if name.startswith("real"):
            iv = res["intervals"]
            edges = ", ".join(f"{e:.1f}" for e in res["data"]["tercile_edges_sqrt_area_px"])
            lines += [
                f"Test AP, mean over {iv['seeds']} seeds, 95% bootstrap over seeds and {iv['blocks']} test "
                f"blocks ({iv['replicates']} replicates); areas in original pixels, T1-T3 crown-size "
                f"terciles (sqrt area edges {edges} px).",
                "",
            ]
            lines += _table(iv["AP"], REAL_METRICS) + [""]
            lines += ["Paired differences (arm - reference):", ""] + _table(iv["diff"], REAL_METRICS) + [""]
            lines += [
                "The bootstrap resamples only 5 seeds (percentile limits), so its seed part under-covers. "
                "The same pairs with a t-interval over the 5 seeds' test AP (t(4) quantiles; test blocks "
                "held fixed, so block sampling is not in these):",
                "",
                *_table(seed_pairs(res["runs"], REAL_METRICS, list(iv["diff"])), REAL_METRICS),
                "",
            ]
            further = seed_pairs(res["runs"], REAL_METRICS)
            if further:
                lines += ["Further pairs, same seed t-interval:", "", *_table(further, REAL_METRICS), ""]
            oos = {r["arm"]: [] for r in res["runs"]}
            for r in res["runs"]:
                oos[r["arm"]].append(r["extra"].get("out_of_site", {}).get("AP", np.nan))
            lines += [
                "Out-of-site AP (OSBS + SOAP, never trained on), mean over seeds: "
                + ", ".join(f"{a} {ev.nanmean(v):.3f}" for a, v in oos.items()),
                "",
            ]
        else:
            for stride, cond in res["conditions"].items():
                lines += [f"### stride {stride}", "", "Test AP, mean and 95% t-interval over seeds:", ""]
                lines += _table(cond["AP"], SYN_METRICS) + [""]
                lines += ["Paired differences:", ""] + _table(cond["diff"], SYN_METRICS) + [""]
                lines += ["Further pairs (same t-interval):", ""]
                lines += _table(seed_pairs(cond["runs"], SYN_METRICS), SYN_METRICS) + [""]
        premises = (
            {"": res["premise"]}
            if name.startswith("real")
            else {f", stride {st}": c["premise"] for st, c in res["conditions"].items()}
        )
        for label, premise in premises.items():
            lines += [
                f"Spearman rank correlation of the distribution's spread with the box's IoU error{label}: "
                "every detection kept after NMS (score > 0.001, duplicates included) whose IoU with some "
                "ground-truth box is >= 0.5; mean over seeds, per size group (score: the same for the "
                "class score; n: detections per seed):",
                "",
                "| arm | " + " | ".join(premise[next(iter(premise))]) + " |",
                "|---|" + "---|" * len(premise[next(iter(premise))]),
            ]
            for arm, groups in premise.items():
                lines.append(
                    f"| {arm} | "
                    + " | ".join(
                        f"{g['rho_spread']:.2f} (score {g['rho_score']:.2f}, n {g['n']:.0f})"
                        for g in groups.values()
                    )
                    + " |"
                )
            lines.append("")
    return "\n".join(lines)


# Pairs beyond the references: DFL against the best scalar loss here, and the variants against DFL.
FURTHER_PAIRS = [("ciou_dfl", "l1"), ("ciou_dfl_log", "ciou_dfl"), ("ciou_hl_gauss", "ciou_dfl")]


def seed_pairs(runs: list[dict], metrics: list[str], pairs: list[str] | None = None) -> dict:
    """Paired t-intervals over seeds of ``pairs`` ("a-b"; default ``FURTHER_PAIRS``), from test AP."""
    per = {}
    for r in runs:
        per.setdefault(r["arm"], {})[r["seed"]] = r["test"]
    out = {}
    chosen = FURTHER_PAIRS if pairs is None else [tuple(p.split("-")) for p in pairs]
    for a, b in chosen:
        if a in per and b in per:
            seeds = sorted(set(per[a]) & set(per[b]))
            out[f"{a}-{b}"] = {
                m: ev.t_interval([per[a][s][m] - per[b][s][m] for s in seeds]) for m in metrics
            }
    return out


def pilot_table(pilot: list[dict], extra: list[dict]) -> list[str]:
    """Final validation AP of the pilot seed per arm and peak learning rate (``extra``: later checks)."""
    rows: dict[str, dict[float, float]] = {}
    for entry in [*pilot, *extra]:
        rows.setdefault(entry["arm"], {})[entry["lr"]] = entry["val_AP"]
    lrs = sorted({lr for row in rows.values() for lr in row})
    later = sorted({e["lr"] for e in extra} - {e["lr"] for e in pilot})
    out = [
        "Pilot (seed 1000): final validation AP per peak learning rate"
        + (
            f"; {', '.join(f'{lr:g}' for lr in later)} run afterwards to check the grid's edge"
            if later
            else ""
        )
        + ":",
        "",
        "| arm | " + " | ".join(f"{lr:g}" for lr in lrs) + " |",
        "|---|" + "---|" * len(lrs),
    ]
    for arm, row in rows.items():
        out.append(f"| {arm} | " + " | ".join(f"{row[lr]:.3f}" if lr in row else "" for lr in lrs) + " |")
    return out


def timing_markdown(timing: dict) -> str:
    """The interleaved step timings of ``timing.py`` as a table: seconds per step and ratio to ciou."""
    keys = [k for k, v in timing.items() if isinstance(v, dict) and "ciou" in v]
    arms = list(timing[keys[0]]) if keys else []
    device = timing["device"]
    lines = [
        "## Seconds per training step (interleaved)",
        "",
        f"`{timing['command']}` on {device['device_count']} x {device['device_kind']} "
        f"({device['platform']}), {timing['date']}: median over {timing['rounds']} rounds of "
        f"{timing['steps_per_round']} steps, arms' order rotated; load average before "
        f"{timing['load_average_before'][0]:.1f}, after {timing['load_average_after'][0]:.1f}. "
        "Milliseconds per step (ratio to ciou):",
        "",
        "| arm | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for arm in arms:
        cells = [
            f"{1e3 * timing[k][arm]['median_s_per_step']:.1f} ({timing[k][arm]['ratio_to_ciou']:.2f})"
            for k in keys
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def _table(rows: dict, metrics: list[str]) -> list[str]:
    out = ["| | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, values in rows.items():
        out.append(f"| {name} | " + " | ".join(_fmt(values.get(m)) for m in metrics) + " |")
    return out


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x))


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        results = {}
        for path in sorted(args.out.glob("results*.json")):
            part = json.loads(path.read_text())
            tag = path.stem.removeprefix("results").removeprefix("_")  # "", "real", "real_cross_image", ...
            for key, value in part.items():
                if key in ("device", "config"):
                    results[key] = value
                else:  # the cross-image run keeps its own section next to the main split's
                    results[key if "cross_image" not in tag else f"{key} (cross_image)"] = value
        for path in sorted(args.out.glob("pilot*.json")):
            for key, value in json.loads(path.read_text()).items():
                if key in results and isinstance(value, dict) and "pilot" in value:
                    results[key]["pilot_extra"] = value["pilot"]
        timing = args.out / "timing.json"
        text = summary_markdown(results)
        if timing.exists():
            text += timing_markdown(json.loads(timing.read_text()))
        (args.out / "summary.md").write_text(text)
        return results
    preset = PRESETS[args.preset]
    arms, skipped = arms_lib.available(args.arms or preset["arms"])
    for message in skipped:
        print(message)
    seeds = list(range(args.seeds or preset["seeds"]))
    lrs = args.lrs or preset["lrs"]
    device = device_info()
    print(f"device: {device['device_count']} x {device['device_kind']} ({device['platform']})")
    results = {
        "device": device,
        "config": {
            "preset": args.preset,
            "arms": arms,
            "skipped": skipped,
            "seeds": seeds,
            "pilot_seed": PILOT_SEED,
            "pilot_lrs": lrs,
            "argv": sys.argv[1:] if argv is None else list(argv),
        },
    }
    started = time.perf_counter()
    want_real = args.data in ("both", "real")
    have_real = data_available(args.cache)
    steps = {k: (args.steps or preset[k]["steps"]) for k in ("real", "synthetic")}
    runs_per_arm = len(lrs) + (0 if args.pilot_only else len(seeds))
    total = 0
    if want_real and have_real:
        total += len(arms) * runs_per_arm * steps["real"]
    if args.data in ("both", "synthetic"):
        strides = preset["synthetic"]["strides"]
        total += (
            len(arms)
            * (len(lrs) + (0 if args.pilot_only else len(seeds) * len(strides)))
            * steps["synthetic"]
        )
    with tqdm(total=total, desc="training", unit="step", mininterval=2.0) as bar:
        if want_real:
            if have_real:
                results["real"] = real_study(args, preset, arms, seeds, lrs, bar)
            else:
                message = f"no data in {args.cache}: run experiments/detection_study/fetch_data.py first"
                print(message)
                results["real"] = {"skipped": message}
        if args.data in ("both", "synthetic"):
            results["synthetic"] = synthetic_study(args, preset, arms, seeds, lrs, bar)
    results["config"]["seconds_total"] = time.perf_counter() - started
    suffix = ("" if args.data == "both" else f"_{args.data}") + (
        "" if args.split == "blocks" else f"_{args.split}"
    )
    if args.pilot_only:  # a check beside the study's results, merged into its summary by --summarise
        (args.out / f"pilot{suffix}.json").write_text(json.dumps(results, indent=1, default=_json_default))
        print(f"wrote pilot{suffix}.json in {results['config']['seconds_total']:.0f} s")
        return results
    (args.out / f"results{suffix}.json").write_text(json.dumps(results, indent=1, default=_json_default))
    (args.out / "summary.md").write_text(summary_markdown(results))
    print(f"wrote {args.out} in {results['config']['seconds_total']:.0f} s")
    return results


if __name__ == "__main__":
    main()
