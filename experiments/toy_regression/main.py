"""Why does DFL converge faster? An ablation on a synthetic edge-localisation task.

    python -m experiments.toy_regression.main --config quick --out runs/quick
    python -m experiments.toy_regression.main --config full --out results/toy_regression_full
    python -m experiments.toy_regression.main --config smoke --set seeds=3 train.steps=60 --out runs/t
    python -m experiments.toy_regression.main --out results/toy_regression_full --summarise
    python -m experiments.toy_regression.main --early results/toy_regression_full/results.json --out DIR
    python -m experiments.toy_regression.main --extra FULL_RESULTS [LONG_RESULTS] --out DIR

Settings: ``configs/<name>.py`` (``default`` and variants on it), changed with ``--set name=value``.
The work: ``task.py`` (the signals, the noise floor), ``model.py`` (trunk, heads, losses),
``train.py`` (an arm's seeds in one vmapped program), ``study.py`` (each arm's learning rate
chosen on validation data, one record per (arm, lr) in DIR/records/, a restart skips the finished
ones), ``metrics.py`` (first and sustained crossings), ``report.py`` (paired statistics from
``experiments/common/stats.py``, tables, figures), ``extra.py``. Writes DIR/results.json,
DIR/summary.md, DIR/curves.png and DIR/steps_to_target.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax
from tqdm import tqdm

from experiments.common.records import device_info
from experiments.common.store import json_default
from experiments.toy_regression import configs, extra, report, study
from jax_dfl import parallel

COMMAND = "python -m experiments.toy_regression.main"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="quick", help="a module of configs/: default, quick, full, smoke, ...")
    p.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", help="change settings of the config")
    p.add_argument("--single-device", action="store_true", help="do not split batches over the local devices")
    p.add_argument("--summarise", action="store_true", help="only rewrite DIR's tables and figures")
    p.add_argument("--early", type=pathlib.Path, metavar="RESULTS_JSON", help="the early-resolution rerun")
    p.add_argument("--extra", type=pathlib.Path, nargs="+", metavar="RESULTS_JSON", help="extra comparisons")
    p.add_argument("--out", type=pathlib.Path, required=True)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    config = configs.override(configs.get(args.config), args.set)
    command = f"{COMMAND} {' '.join(argv)}"
    if args.summarise:
        results = json.loads((args.out / "results.json").read_text())
        results["summary"] = report.summarise(results)
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=json_default))
        print(report.write(results, args.out))
        return results
    if args.extra:
        full, *rest = (json.loads(p.read_text()) for p in args.extra)
        out = {**extra.extra_comparisons(full, rest[0] if rest else None), "command": command}
        (args.out / "extra_comparisons.json").write_text(json.dumps(out, indent=1, default=json_default))
        (args.out / "extra_comparisons.md").write_text(f"`{command}`\n\n" + extra.extra_markdown(out))
        return out
    device = device_info()
    if args.early:
        out = study.run_early(config, json.loads(args.early.read_text()))
        out["config"]["command"] = command
        out["summary"] = report.early_summary(out)
        out["device"] = device
        (args.out / "results.json").write_text(json.dumps(out, indent=1, default=json_default))
        (args.out / "summary.md").write_text(report.early_markdown(out, device, str(args.early)))
        return out

    # Data parallel over every local device (after jax.distributed.initialize(), every device).
    mesh = None if args.single_device or jax.device_count() == 1 else parallel.data_mesh()
    device["data_parallel_devices"] = 1 if mesh is None else mesh.size
    print(f"device: {device['device_count']} x {device['device_kind']} ({device['platform']})")
    started = time.perf_counter()
    with tqdm(total=study.total_steps(config), desc="training", unit="step", mininterval=2.0) as bar:
        ran = study.run_study(config, args.out, mesh=mesh, progress=bar.update, log=tqdm.write)
    results = {
        "device": device,
        "config": {
            "name": args.config,
            "command": command,
            **dataclasses.asdict(config),
            "seeds": study.seeds(config),
            "eval_steps": study.eval_steps(config),
            "thresholds": ran["thresholds"],
            "lr_selection": "area under the validation-MAE curve: (1/T) * trapezoid integral over steps "
            "0..T of the validation MAE at the evaluation steps ('auc'); also the final validation MAE "
            "('final'). Test data choose nothing.",
            "steps_to_target": report.DEFINITION_TEXT,
            "optimizer": "adam, warmup + cosine decay",
            "seconds_total": time.perf_counter() - started,
            "seconds_by_phase": ran["seconds_by_phase"],
            "notes": "'seconds' is the wall clock of the vmapped run shared by its seeds, compile "
            "included; ms/step is for all seeds together, from the timing pass",
        },
        "noise_floor": ran["noise_floor"],
        "timing": ran["timing"],
        "selected_lrs": ran["selected_lrs"],
        "runs": ran["runs"],
    }
    results["summary"] = report.summarise(results)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=json_default))
    print("\n" + report.write(results, args.out))
    print(f"wrote {args.out}/results.json, summary.md, curves.png, steps_to_target.png")
    return results


if __name__ == "__main__":
    main()
