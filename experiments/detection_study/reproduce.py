"""Retrain recorded runs with the current code and compare them with their records.

    python -m experiments.detection_study.reproduce --out results/detection_test \\
        --condition synthetic_stride8 --keys ciou_dfl_seed131_lr0.01_gain0.1

The training code changed while the detection test's confirmatory runs went (options that are
off by default, a shared training loop); each change was meant to leave what a run computes
unchanged. This retrains the named runs of a condition of the ``detection_test`` configuration
(at the record's own number of steps) into a temporary store and compares, per run, the test
metrics and the validation curve with the committed record: the largest absolute difference,
and whether they are identical. Writes ``<name>.json`` and ``<name>.md`` (``--name``, default
``reproduce``), with the ``XLA_FLAGS`` the rerun had.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile

from experiments.common.records import device_info
from experiments.common.store import RunStore, json_default
from experiments.detection_study import configs, study
from experiments.detection_study.fetch_data import default_cache
from experiments.detection_study.train import Run


def parse_key(key: str) -> Run:
    """``arm_seedS_lrL_gainG`` (``Run.key``) back into its run."""
    head, gain = key.rsplit("_gain", 1)
    head, lr = head.rsplit("_lr", 1)
    arm, seed = head.rsplit("_seed", 1)
    run = Run(arm, int(seed), float(lr), float(gain))
    if run.key != key:
        raise ValueError(f"{key!r} is not a run key (arm_seedS_lrL_gainG)")
    return run


def differences(old: dict, new: dict) -> dict:
    """The largest absolute differences between two records' test metrics and validation curves."""
    test = max(abs(old["test"][k] - new["test"][k]) for k in old["test"])
    curve = max(
        abs(a[k] - b[k])
        for a, b in zip(old["curve"], new["curve"], strict=True)
        for k in a
        if k.startswith("val_")
    )
    return {
        "test_max_abs": test,
        "val_curve_max_abs": curve,
        "identical": test == 0 and curve == 0,
        "test_AP": {"record": old["test"]["AP"], "rerun": new["test"]["AP"]},
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="the detection test's results folder")
    p.add_argument("--condition", default="synthetic_stride8")
    p.add_argument(
        "--records",
        help="the records' folder under records/ when it is not the condition's own (e.g. "
        "amendment4_steps6400: the condition at a longer schedule)",
    )
    p.add_argument("--keys", nargs="+", required=True)
    p.add_argument("--cache", type=pathlib.Path, default=default_cache())
    p.add_argument("--name", default="reproduce", help="the output files' name (<name>.json, <name>.md)")
    args = p.parse_args(argv)
    config = configs.get("detection_test")
    _, reported = study.conditions(config, args.cache, "synthetic")
    condition = next(c for c in reported if c.name == args.condition)
    folder = args.records or args.condition
    recorded = RunStore(args.out / "records" / folder)
    compared = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(pathlib.Path(tmp))
        for key in args.keys:
            old = recorded.read(key)
            steps = old["curve"][-1]["step"]
            study.run_phase([[parse_key(key)]], study.with_steps(condition, steps), store, phase="reported")
            compared[key] = differences(old, store.read(key))
            print(f"{key}: {compared[key]}")
    # XLA's CPU thread settings change how reductions are split, hence the rounding: record them.
    xla_flags = os.environ.get("XLA_FLAGS", "")
    result = {
        "device": device_info(),
        "xla_flags": xla_flags,
        "condition": args.condition,
        "records": folder,
        "runs": compared,
    }
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=json_default) + "\n")
    lines = [
        "Recorded runs retrained with the code at the time of this file "
        f"(`python -m experiments.detection_study.reproduce`; XLA_FLAGS {xla_flags or 'unset'}), "
        "compared with their records:",
        "",
        "| run | test AP (record) | test AP (rerun) | largest test-metric difference "
        "| largest validation-curve difference | identical |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in compared.items():
        lines.append(
            f"| {folder}/{key} | {r['test_AP']['record']:.6f} | {r['test_AP']['rerun']:.6f} "
            f"| {r['test_max_abs']:.2g} | {r['val_curve_max_abs']:.2g} "
            f"| {'yes' if r['identical'] else 'no'} |"
        )
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
