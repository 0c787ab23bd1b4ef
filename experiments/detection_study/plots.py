"""Figures of the study (matplotlib, Agg): AP by size, validation curves, test tiles, resolution."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ap_by_size(intervals: dict, metrics: list[str], path: pathlib.Path, title: str) -> None:
    """Bars of each arm's AP per size group, with the 95% interval of ``intervals['AP']``."""
    plt = _pyplot()
    arms = list(intervals)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(metrics)), 4))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        mean = np.array([intervals[arm][m]["mean"] for m in metrics])
        lo = np.array([intervals[arm][m]["lo"] for m in metrics])
        hi = np.array([intervals[arm][m]["hi"] for m in metrics])
        x = np.arange(len(metrics)) + (i - (len(arms) - 1) / 2) * width
        err = np.nan_to_num(np.stack([mean - lo, hi - mean]), nan=0.0).clip(min=0)
        ax.bar(x, mean, width, yerr=err, capsize=2, label=arm)
    ax.set_xticks(np.arange(len(metrics)), metrics)
    ax.set_ylabel("COCO AP (95% interval)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curves(runs: list[dict], path: pathlib.Path, title: str) -> None:
    """Validation AP against step and against training seconds: mean over seeds, min-max band."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        steps = np.array([c["step"] for c in mine[0]["curve"]])
        ap = np.array([[c["val_AP"] for c in r["curve"]] for r in mine])
        seconds = np.array([[c["seconds"] for c in r["curve"]] for r in mine]).mean(0)
        for ax, x in zip(axes, (steps, seconds), strict=True):
            (line,) = ax.plot(x, ap.mean(0), marker="o", ms=3, label=arm)
            ax.fill_between(x, ap.min(0), ap.max(0), color=line.get_color(), alpha=0.15)
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("training seconds (compilation and validation excluded)")
    for ax in axes:
        ax.set_ylabel("validation AP")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def test_tiles(views: list, detections: dict, path: pathlib.Path, *, min_score: float = 0.3) -> None:
    """Test blocks with true boxes (green) and each arm's detections above ``min_score`` (red).

    ``views``: from ``RealData.test_views``; ``detections[arm]``: per test block ``(boxes, scores)``
    in original pixels, in the same block order.
    """
    plt = _pyplot()
    arms = list(detections)
    fig, axes = plt.subplots(
        len(views), len(arms), figsize=(3.6 * len(arms), 3.6 * len(views)), squeeze=False
    )
    for row, (crop, gts, origin, scale) in enumerate(views):
        lo, hi = np.percentile(crop, [1, 99])
        shown = np.clip((crop - lo) / (hi - lo + 1e-6), 0, 1)
        for col, arm in enumerate(arms):
            ax = axes[row, col]
            ax.imshow(
                shown,
                extent=(
                    origin[0],
                    origin[0] + crop.shape[1] / scale,
                    origin[1] + crop.shape[0] / scale,
                    origin[1],
                ),
            )
            for x1, y1, x2, y2 in gts:
                ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="lime", lw=1))
            boxes, scores = detections[arm][row]
            for (x1, y1, x2, y2), s in zip(boxes, scores, strict=True):
                if s >= min_score:
                    ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="red", lw=0.8))
            ax.set_axis_off()
            if row == 0:
                ax.set_title(f"{arm} (score >= {min_score})", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def resolution(cells: list[dict], path: pathlib.Path, title: str) -> None:
    """Paired AP gain of each arm over ``ciou`` per (stride, size) cell, against size in bins and pixels."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    arms = sorted({c["arm"] for c in cells})
    markers = dict(zip(sorted({c["stride"] for c in cells}), "^osDv", strict=False))  # a marker per stride
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, arm in enumerate(arms):
        for stride, marker in markers.items():
            mine = [c for c in cells if c["arm"] == arm and c["stride"] == stride]
            for ax, key in zip(axes, ("bins", "pixels"), strict=True):
                x = np.array([c[key] for c in mine]) * (1 + 0.03 * i)
                y = np.array([c["mean"] for c in mine])
                err = np.array([[c["mean"] - c["lo"], c["hi"] - c["mean"]] for c in mine]).T
                ax.errorbar(
                    x,
                    y,
                    yerr=np.nan_to_num(err, nan=0.0),
                    fmt=marker,
                    color=colours[i % len(colours)],
                    capsize=2,
                    label=f"{arm}, stride {stride}",
                )
    for ax, label in zip(
        axes, ("object size in bins (sqrt area / stride)", "object size in pixels"), strict=True
    ):
        ax.set_xscale("log", base=2)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AP difference vs ciou (95% t-interval over seeds)")
    axes[0].legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def schedule_curves(
    by_steps: Mapping[int, Mapping[str, Mapping[str, np.ndarray]]],
    arms: Sequence[str],
    path: pathlib.Path,
    title: str,
) -> None:
    """One panel per arm: its validation curve at each schedule, mean over seeds with the min-max
    band, on one step axis, so a longer schedule that still gains shows above the shorter one's end.

    ``by_steps[steps][arm]`` holds arrays ``step``, ``mean``, ``min`` and ``max``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(arms), figsize=(4 * len(arms), 3.8), sharey=True)
    for ax, arm in zip(axes, arms, strict=True):
        for steps, summary in sorted(by_steps.items()):
            c = summary[arm]
            (line,) = ax.plot(c["step"], c["mean"], lw=1.2, label=f"{steps} steps")
            ax.fill_between(c["step"], c["min"], c["max"], color=line.get_color(), alpha=0.15)
        ax.set_title(arm, fontsize="medium")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation AP")
    axes[0].legend(fontsize="small", loc="lower right")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
