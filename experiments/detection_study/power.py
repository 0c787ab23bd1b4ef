"""The detection test's pre-registered power rule and verdicts (``preregistration.md``).

    python -m experiments.detection_study.power --out results/detection_test

After the pilot (``main --config detection_test --pilot-only``), estimates each primary contrast's
per-seed standard deviation as the larger of (a) the pilot seeds' paired differences in final
validation AP at each arm's chosen setting and (b) the earlier study's five seeds at stride 8 for
the nearest committed contrast, then the number of seeds: the smallest n >= ``min_seeds`` at which
every primary contrast's expected 95 % half-width is at most ``target``, capped at ``max_seeds``.
Writes DIR/power.json. ``--config detection_test_crowns``: the crowns' statement (amendment 3),
the expected half-widths at the budget's seed count from the earlier study's crowns seeds and, once
it has run, the crowns' pilot: DIR/power_real.json. :func:`verdict` turns a contrast's interval
and Holm-adjusted p-value into the pre-registered reading.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from experiments.common import stats
from experiments.common.store import RunStore, json_default
from experiments.detection_study import configs
from experiments.detection_study.report import paired_tests
from experiments.detection_study.study import choose
from experiments.detection_study.train import Run

# Primary contrasts -> the earlier study's nearest committed contrast at stride 8 (its arms).
EARLIER_NEAREST = {
    "ciou_dfl-ciou_dist_l1": ("ciou_dfl", "l1"),
    "ciou_dfl-ciou_l1": ("ciou_dfl", "l1"),
    "ciou_dfl-ciou": ("ciou_dfl", "ciou"),
}
EARLIER = pathlib.Path(__file__).resolve().parents[2] / "results/detection_study/results_synthetic.json"
# The crowns (amendment 3): the earlier study's five crowns seeds, the same nearest contrasts.
EARLIER_REAL = EARLIER.with_name("results_real.json")


def paired_sd(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """Sample standard deviation of ``a[s] - b[s]`` over the seeds both have (NaN under 2 seeds)."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], np.float64)
    return float(np.std(d, ddof=1)) if len(d) >= 2 else math.nan


def planned_seeds(
    sds: Mapping[str, float], *, target: float = 0.01, min_seeds: int = 16, max_seeds: int = 32
) -> dict:
    """The smallest n in [min_seeds, max_seeds] at which every contrast's expected half-width
    ``E[t s / sqrt(n)]`` is at most ``target``; ``max_seeds`` (``capped``) when none is.

    >>> planned_seeds({"a": 0.01})["seeds"]
    16
    >>> r = planned_seeds({"a": 0.05}); r["seeds"], r["capped"]
    (32, True)
    """
    needed = {k: stats.seeds_for_half_width(sd, target) for k, sd in sds.items()}
    n = min(max(min_seeds, *needed.values()), max_seeds)
    return {
        "seeds": n,
        "capped": any(v > max_seeds for v in needed.values()),
        "needed": needed,
        "expected_half_width": {k: stats.expected_half_width(sd, n) for k, sd in sds.items()},
        "target": target,
    }


def verdict(
    interval: Mapping[str, float], p_holm: float, *, margin: float = 0.01, alpha: float = 0.05
) -> str:
    """The pre-registered reading of one primary contrast (arm minus reference, test AP), from its
    95 % paired t-interval and its Holm-adjusted exact sign-flip p-value (amendment 1's labels):

    * ``support``: Holm p < alpha, the interval above 0 and reaching ``margin`` or beyond;
    * ``support, below margin``: Holm p < alpha and the interval inside (0, ``margin``): a real
      gain smaller than the margin;
    * ``worse``: Holm p < alpha and the interval below 0;
    * ``no useful gain``: otherwise, when the interval lies below ``margin``;
    * ``cannot tell``: anything else.

    >>> verdict({"lo": 0.004, "hi": 0.02}, 0.01)
    'support'
    >>> verdict({"lo": 0.001, "hi": 0.008}, 0.01)
    'support, below margin'
    >>> verdict({"lo": -0.006, "hi": 0.008}, 0.4)
    'no useful gain'
    >>> verdict({"lo": -0.03, "hi": -0.001}, 0.01)
    'worse'
    >>> verdict({"lo": -0.004, "hi": 0.02}, 0.3)
    'cannot tell'
    """
    significant = p_holm < alpha
    if significant and interval["lo"] > 0:
        return "support" if interval["hi"] >= margin else "support, below margin"
    if significant and interval["hi"] < 0:
        return "worse"
    if interval["hi"] < margin:
        return "no useful gain"
    return "cannot tell"


def verdict_probabilities(
    sd: float,
    n: int,
    effect: float,
    *,
    holm_factor: int = 1,
    margin: float = 0.01,
    alpha: float = 0.05,
    simulations: int = 400,
    seed: int = 0,
) -> dict[str, float]:
    """How often each :func:`verdict` comes out for one contrast whose ``n`` paired differences are
    normal with mean ``effect`` and SD ``sd`` (simulated; t-interval and exact sign-flip p as in the
    analysis). Holm is approximated by multiplying the contrast's p-value by ``holm_factor``: 1 when
    it is the family's smallest p-value that decides (its best case), 3 when it is tested first of
    three (its worst case).
    """
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for _ in range(simulations):
        d = rng.normal(effect, sd, n)
        label = verdict(
            stats.t_interval(d), min(1.0, holm_factor * stats.sign_flip_p(d)), margin=margin, alpha=alpha
        )
        counts[label] = counts.get(label, 0) + 1
    return {k: v / simulations for k, v in sorted(counts.items())}


def verdicts(results: Mapping, condition: str, pairs: Sequence[str]) -> dict[str, dict]:
    """The verdict of each primary contrast of ``condition`` in a results file's ``tests``."""
    tests = results["tests"][condition]
    return {
        name: {**tests[name], "verdict": verdict(tests[name], tests[name]["p_sign_flip_holm"])}
        for name in pairs
        if name in tests
    }


def verdicts_markdown(out: Mapping[str, Mapping], power_result: Mapping | None = None) -> str:
    """The verdicts as Markdown: per primary contrast the seeds, mean paired difference in test AP
    with its 95 % t-interval, the half-width reached (and the power statement's expected one), the
    exact sign-flip p-value, its Holm adjustment and the verdict."""
    expected = (power_result or {}).get("expected_half_width", {})
    lines = [
        "| contrast | seeds | mean difference [95% CI] | half-width (expected) | p (sign flip) | Holm p "
        "| verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in out.items():
        half = (r["hi"] - r["lo"]) / 2
        planned = f" ({expected[name]:.4f})" if name in expected else ""
        lines.append(
            f"| {name} | {r['n']} | {r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}] | {half:.4f}{planned} "
            f"| {r['p_sign_flip']:.3g} | {r['p_sign_flip_holm']:.3g} | **{r['verdict']}** |"
        )
    return "\n".join(lines) + "\n"


def secondary(out: pathlib.Path, config) -> dict[str, dict]:
    """The primary contrasts in the secondary conditions (exploratory, no verdicts): every synthetic
    condition but the primary one (``results_synthetic.json``) and the crowns (``results_real.json``),
    each with the paired t-interval, the unadjusted exact sign-flip p-value and its Holm adjustment
    within the condition; on the crowns also the two-way bootstrap over seeds and test blocks and
    the expected half-width of ``power_real.json``. Conditions whose results file is absent are
    left out."""
    primary = f"synthetic_stride{config.synthetic.strides[0]}"
    names = [f"{a}-{b}" for a, b in contrasts(config)]
    rows: dict[str, dict] = {}
    path = out / "results_synthetic.json"
    if path.exists():
        tests = json.loads(path.read_text())["synthetic"]["tests"]
        for condition, table in tests.items():
            if condition != primary:
                rows[condition] = {n: dict(table[n]) for n in names if n in table}
    path = out / "results_real.json"
    if path.exists():
        real = json.loads(path.read_text())["real"]
        planned = out / "power_real.json"
        expected = json.loads(planned.read_text())["expected_half_width"] if planned.exists() else {}
        rows["real"] = {}
        for n in names:
            if n in real["tests"]["real"]:
                boot = real["intervals"]["diff"].get(n, {}).get("AP")
                rows["real"][n] = {
                    **real["tests"]["real"][n],
                    "bootstrap": boot,
                    "expected_half_width": expected.get(n),
                }
    return rows


def secondary_markdown(rows: Mapping[str, Mapping]) -> str:
    """:func:`secondary` as Markdown: one row per condition and contrast."""
    lines = [
        "| condition | contrast | seeds | mean difference [95% t-CI] | half-width (expected, if planned) "
        "| p (sign flip) "
        "| Holm p (within condition) | bootstrap 95% over seeds and test blocks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for condition, table in rows.items():
        for name, r in table.items():
            half = (r["hi"] - r["lo"]) / 2
            planned = f" ({r['expected_half_width']:.4f})" if r.get("expected_half_width") else ""
            boot = r.get("bootstrap")
            boot_cell = f"[{boot['lo']:+.4f}, {boot['hi']:+.4f}]" if boot else "(test set fixed)"
            lines.append(
                f"| {condition} | {name} | {r['n']} | {r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}] "
                f"| {half:.4f}{planned} | {r['p_sign_flip']:.3g} | {r['p_sign_flip_holm']:.3g} "
                f"| {boot_cell} |"
            )
    return "\n".join(lines) + "\n"


def without_seeds(results: Mapping, condition: str, pairs: Sequence[tuple[str, str]], seeds) -> dict:
    """Exploratory sensitivity: the condition's paired tests (Holm over ``pairs``) recomputed with
    ``seeds`` left out, as a results file's ``tests`` entry for :func:`verdicts`. ``results``: the
    ``synthetic`` part of ``results_synthetic.json``, or for ``condition="real"`` the ``real`` part of
    ``results_real.json`` (test blocks held fixed: the bootstrap is not redone)."""
    if condition == "real":
        every = results["runs"]
    else:
        every = results["conditions"][condition.removeprefix("synthetic_stride")]["runs"]
    runs = [r for r in every if r["seed"] not in set(seeds)]
    per_arm: dict[str, dict[int, dict]] = {}
    for r in runs:
        per_arm.setdefault(r["arm"], {})[r["seed"]] = r["test"]
    return {"tests": {condition: paired_tests(per_arm, list(pairs))}}


def pilot_values(config, store: RunStore, arm: str) -> dict[int, float]:
    """Final validation AP per pilot seed at ``arm``'s chosen setting; empty while the pilot's grid
    is not finished (a power statement made before the pilot uses the earlier study's SD only)."""
    try:
        lr, gain, _ = choose(config, arm, store)
        return {
            s: store.read(Run(arm, s, lr, gain).key)["metrics"]["final_val_AP"] for s in config.pilot_seeds
        }
    except FileNotFoundError:
        return {}


def earlier_values(path: pathlib.Path, arm: str, stride: str = "8") -> dict[int, float]:
    """Test AP per seed of ``arm`` in the earlier study's results file (crowns: ``results_real.json``)."""
    part = json.loads(path.read_text())
    runs = part["real"]["runs"] if "real" in part else part["synthetic"]["conditions"][stride]["runs"]
    return {r["seed"]: r["test"]["AP"] for r in runs if r["arm"] == arm}


def contrasts(config) -> Sequence[tuple[str, str]]:
    return [tuple(p) for p in config.comparisons]


def power_markdown(result: Mapping) -> str:
    """The power statement as Markdown (``result``: what :func:`main` writes to power.json)."""
    n = result["seeds"]
    if result.get("condition") == "real":  # amendment 3: the budget fixes the crowns' seeds
        head = (
            f"Crowns: **{n} seeds**, the budget's (amendment 3); the rule's target half-width "
            f"{result['target']:g} AP."
        )
    else:
        head = (
            f"Power rule: **{n} seeds**{' (the cap binds)' if result['capped'] else ''}; target half-width "
            f"{result['target']:g} AP."
        )
    lines = [
        head,
        "",
        "| contrast | SD used | pilot SD (val AP, 2 seeds) | earlier SD (test AP, 5 seeds) | seeds needed "
        f"| expected half-width at {n} |",
        "|---|---|---|---|---|---|",
    ]
    for name, sd in result["sd"].items():
        d = result["detail"][name]
        lines.append(
            f"| {name} | {sd:.4f} | {d['pilot_sd']:.4f} | {d['earlier_sd']:.4f} ({d['earlier_contrast']}) "
            f"| {result['needed'][name]} | {result['expected_half_width'][name]:.4f} |"
        )
    lines += [
        "",
        f"Chance of each verdict at {n} seeds (simulated: normal paired differences at the SD used; Holm "
        "as the contrast's best case x1 and worst case x3):",
        "",
        "| contrast | case | verdicts |",
        "|---|---|---|",
    ]
    for name, table in result["verdict_chances"].items():
        for case, chances in table.items():
            lines.append(
                f"| {name} | {case} | " + ", ".join(f"{k} {v:.2f}" for k, v in chances.items()) + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="detection_test")
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument(
        "--earlier",
        type=pathlib.Path,
        help="the earlier study's results file (default: by the config's data)",
    )
    p.add_argument(
        "--verdicts",
        action="store_true",
        help="read results_synthetic.json and write verdicts.json and verdicts.md",
    )
    p.add_argument(
        "--exclude-seeds",
        type=int,
        nargs="+",
        help="with --verdicts (or --secondary): also write verdicts_sensitivity.{json,md} "
        "(secondary_sensitivity.{json,md}) without these seeds (exploratory)",
    )
    p.add_argument(
        "--sensitivity-of",
        choices=["synthetic", "real"],
        default="synthetic",
        help="with --secondary --exclude-seeds: the synthetic secondary conditions "
        "(secondary_sensitivity.*) or the crowns (secondary_sensitivity_real.*; t-intervals only)",
    )
    p.add_argument(
        "--secondary",
        action="store_true",
        help="write secondary.{json,md} (and secondary_CONDITION.md for each): the primary contrasts at "
        "stride 4 and on the crowns (exploratory)",
    )
    args = p.parse_args(argv)
    config = configs.get(args.config)
    if args.secondary:
        rows = secondary(args.out, config)
        (args.out / "secondary.json").write_text(json.dumps(rows, indent=1, default=json_default))
        (args.out / "secondary.md").write_text(secondary_markdown(rows))
        for condition, table in rows.items():  # one file per condition, for its own page section
            (args.out / f"secondary_{condition}.md").write_text(secondary_markdown({condition: table}))
        print(secondary_markdown(rows))
        if args.exclude_seeds:  # exploratory sensitivity of the synthetic secondary conditions, or the crowns
            real = args.sensitivity_of == "real"
            results = json.loads((args.out / f"results_{args.sensitivity_of}.json").read_text())[
                args.sensitivity_of
            ]
            left = {
                c: without_seeds(results, c, contrasts(config), args.exclude_seeds)["tests"][c]
                for c in rows
                if (c == "real") == real
            }
            names = [f"{a}-{b}" for a, b in contrasts(config)]
            left = {c: {n: t[n] for n in names if n in t} for c, t in left.items()}
            text = (
                f"Exploratory: seeds {', '.join(map(str, args.exclude_seeds))} left out (Holm within the "
                "condition over the same three contrasts):\n\n" + secondary_markdown(left)
            )
            name = "secondary_sensitivity" + ("_real" if real else "")
            (args.out / f"{name}.json").write_text(
                json.dumps(
                    {"excluded_seeds": args.exclude_seeds, "tests": left}, indent=1, default=json_default
                )
            )
            (args.out / f"{name}.md").write_text(text)
            print(text)
        return rows
    if args.verdicts:
        results = json.loads((args.out / "results_synthetic.json").read_text())["synthetic"]
        primary = f"synthetic_stride{config.synthetic.strides[0]}"
        out = verdicts(results, primary, [f"{a}-{b}" for a, b in contrasts(config)])
        (args.out / "verdicts.json").write_text(json.dumps(out, indent=1, default=json_default))
        power_path = args.out / "power.json"
        planned = json.loads(power_path.read_text()) if power_path.exists() else None
        (args.out / "verdicts.md").write_text(verdicts_markdown(out, planned))
        if args.exclude_seeds:
            left = without_seeds(results, primary, contrasts(config), args.exclude_seeds)
            sensitivity = verdicts(left, primary, [f"{a}-{b}" for a, b in contrasts(config)])
            (args.out / "verdicts_sensitivity.json").write_text(
                json.dumps({"excluded_seeds": args.exclude_seeds, "verdicts": sensitivity}, indent=1)
            )
            (args.out / "verdicts_sensitivity.md").write_text(
                f"Exploratory: seeds {', '.join(map(str, args.exclude_seeds))} left out (Holm over the same "
                "three contrasts):\n\n" + verdicts_markdown(sensitivity)
            )
        for name, r in out.items():
            print(
                f"{name}: {r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}], "
                f"Holm p {r['p_sign_flip_holm']:.3g}: {r['verdict']}"
            )
        return out
    real = config.data == ("real",)
    earlier_path = args.earlier or (EARLIER_REAL if real else EARLIER)
    condition = "real" if real else f"synthetic_stride{config.synthetic.pilot_stride}"
    store = RunStore(args.out / "records" / condition)
    sds = {}
    detail = {}
    for a, b in contrasts(config):
        name = f"{a}-{b}"
        pilot = paired_sd(pilot_values(config, store, a), pilot_values(config, store, b))
        ea, eb = EARLIER_NEAREST[name]
        earlier = paired_sd(earlier_values(earlier_path, ea), earlier_values(earlier_path, eb))
        sds[name] = float(np.nanmax([pilot, earlier]))
        detail[name] = {"pilot_sd": pilot, "earlier_sd": earlier, "earlier_contrast": f"{ea}-{eb}"}
    # The crowns' seed count is the budget's (amendment 3), not the rule's: state what it can resolve.
    bounds = {"min_seeds": config.seeds, "max_seeds": config.seeds} if real else {}
    plan = planned_seeds(sds, **bounds)
    # What the planned seeds can show: each verdict's chance with no effect and with an effect
    # of one margin, at the contrast's SD (Holm's best and worst case for its p-value).
    chances = {
        name: {
            f"effect {effect:g}, holm x{factor}": verdict_probabilities(
                sd, plan["seeds"], effect, holm_factor=factor
            )
            for effect in (0.0, plan["target"])
            for factor in (1, 3)
        }
        for name, sd in sds.items()
    }
    result = {
        "config": args.config,
        "condition": condition,
        "sd": sds,
        "detail": detail,
        **plan,
        "verdict_chances": chances,
    }
    suffix = "_real" if real else ""
    (args.out / f"power{suffix}.json").write_text(json.dumps(result, indent=1, default=json_default))
    (args.out / f"power{suffix}.md").write_text(power_markdown(result))
    for name in sds:
        print(
            f"{name}: sd {sds[name]:.4f} (pilot {detail[name]['pilot_sd']:.4f}, earlier "
            f"{detail[name]['earlier_sd']:.4f} from {detail[name]['earlier_contrast']}); seeds needed "
            f"{plan['needed'][name]}, expected half-width at {plan['seeds']}: "
            f"{plan['expected_half_width'][name]:.4f}"
        )
    print(f"seeds: {plan['seeds']}{' (capped)' if plan['capped'] else ''}")
    for name, table in chances.items():
        for case, probabilities in table.items():
            print(f"  {name}, {case}: " + ", ".join(f"{k} {v:.2f}" for k, v in probabilities.items()))
    return result


if __name__ == "__main__":
    main()
