"""Detection study: box-regression arms on NEON tree crowns and on synthetic controls.

    python -m experiments.detection_study.fetch_data               # once: the images, into the cache
    python -m experiments.detection_study.main --config quick --out runs/study_quick
    python -m experiments.detection_study.main --config full --data real --out results/detection_study
    python -m experiments.detection_study.main --out results/detection_study --summarise

Settings: ``configs/<name>.py`` (``default`` and variants on it). The work: ``study.py`` (pilot grid
of peak learning rate x auxiliary gain on the pilot seeds, then every arm at its choice on the
paired seeds; an arm's runs vmapped together; one record per run, a restart skips the finished
ones), ``report.py`` (intervals, paired tests with Holm, tables, figures). Writes
DIR/records/, DIR/results[_<data>].json, DIR/*.png and DIR/summary.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

from tqdm import tqdm

from experiments.common.records import device_info, provenance
from experiments.common.store import json_default
from experiments.detection_study import configs, fetch_data, report, study
from experiments.detection_study.data import data_available


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="quick", help="a module of configs/: default, quick, smoke, full, ...")
    p.add_argument("--data", choices=["real", "synthetic"], nargs="+", help="override the config's data sets")
    p.add_argument("--arms", nargs="+", help="override the config's arms")
    p.add_argument("--seeds", type=int, help="override the number of reported seeds")
    p.add_argument("--steps", type=int, help="override both data sets' steps")
    p.add_argument("--max-batch", type=int, help="override the runs per vmapped program")
    p.add_argument("--strides", type=int, nargs="+", help="override the synthetic data's head strides")
    p.add_argument(
        "--worker",
        type=worker_arg,
        help="I/N: train only the reported runs of every N-th chunk of seeds from the I-th, then stop "
        "without analysing (start N such processes; analyse afterwards without --worker)",
    )
    p.add_argument(
        "--pilot-only",
        action="store_true",
        help="only the pilot: the grid and the tuning rules the config enables (pilot_<data>.json)",
    )
    p.add_argument("--cache", type=pathlib.Path, default=fetch_data.default_cache())
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--summarise", action="store_true", help="only rewrite summary.md from the JSON files")
    p.add_argument(
        "--allow-unpinned-data",
        action="store_true",
        help="run on crowns files whose SHA-256 differs from the pinned ones (tests' stand-in images)",
    )
    return p.parse_args(argv)


def worker_arg(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--worker takes I/N (e.g. 0/2), not {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--worker {text}: I must be in 0 .. N-1")
    return i, n


def settings(args) -> configs.default.StudyConfig:
    config = configs.get(args.config)
    changes = {
        "data": tuple(args.data) if args.data else None,
        "arms": tuple(args.arms) if args.arms else None,
        "seeds": args.seeds,
        "max_batch": args.max_batch,
    }
    config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
    if args.steps:
        config = dataclasses.replace(
            config,
            real=dataclasses.replace(config.real, steps=args.steps),
            synthetic=dataclasses.replace(config.synthetic, steps=args.steps),
        )
    if args.strides:
        config = dataclasses.replace(
            config, synthetic=dataclasses.replace(config.synthetic, strides=tuple(args.strides))
        )
    return config


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        return report.summarise(args.out)
    config = settings(args)
    provenance()  # the commit this process loaded, before any later commit moves HEAD
    device = device_info()
    print(f"device: {device['device_count']} x {device['device_kind']} ({device['platform']})")
    results = {
        "device": device,
        "config": {
            "name": args.config,
            **dataclasses.asdict(config),
            "argv": sys.argv[1:] if argv is None else list(argv),
        },
    }
    started = time.perf_counter()
    total = study.total_steps(config, config.data, pilot_only=args.pilot_only)
    with tqdm(total=total, desc="training (run-steps)", unit="step", mininterval=2.0) as bar:
        for data in config.data:
            if data == "real" and not data_available(args.cache):
                message = (
                    f"no data in {args.cache}: run python -m experiments.detection_study.fetch_data first"
                )
                print(message)
                results["real"] = {"skipped": message}
                continue
            checks = fetch_data.data_checksums(args.cache) if data == "real" else None
            if checks is not None:
                if checks["mismatched"] and not args.allow_unpinned_data:
                    raise SystemExit(
                        f"{args.cache}: {', '.join(checks['mismatched'])} differ from the pinned SHA-256 "
                        "(fetch_data.PINNED_SHA256); fetch again, or pass --allow-unpinned-data"
                    )
            info = study.run_data(
                config,
                data,
                args.cache,
                args.out,
                pilot_only=args.pilot_only,
                worker=args.worker,
                progress=bar.update,
                log=tqdm.write,
            )
            if args.worker is not None:
                continue  # a worker trains its share; the analysis waits for every run
            results[data] = report.collect(config, data, args.out, info)
            # The edge rule's added points and the schedule decision (with its numbers) live only in
            # run_data's return value: collect reads the grid's records.
            results[data]["tuning"] = info.get("tuning")
            if checks is not None:
                results[data]["data_sha256"] = checks  # the crowns files this run read
    results["config"]["seconds_total"] = time.perf_counter() - started
    if args.worker is not None:
        print(f"worker {args.worker[0]}/{args.worker[1]} done in {results['config']['seconds_total']:.0f} s")
        return results
    suffix = "" if len(config.data) > 1 else f"_{config.data[0]}"
    name = f"{'pilot' if args.pilot_only else 'results'}{suffix}.json"
    (args.out / name).write_text(json.dumps(results, indent=1, default=json_default))
    if args.pilot_only:
        pilot = "\n".join(
            report.pilot_markdown(results[d]) for d in config.data if "pilot_scores" in results[d]
        )
        (args.out / f"pilot{suffix}.md").write_text(pilot)
    else:
        # From every results file in DIR: a crowns run (results_real.json) must not drop the
        # synthetic runs' sections written there by an earlier run (results_synthetic.json).
        report.summarise(args.out)
    print(f"wrote {args.out / name} in {results['config']['seconds_total']:.0f} s")
    return results


if __name__ == "__main__":
    main()
