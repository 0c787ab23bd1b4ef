"""The figure of ``docs/box_range.md``: how far each level's bins reach, against the image size.

    python docs/plots/box_range.py  # writes docs/_static/box_range.png

The ranges come from :func:`jax_dfl.representable_range`. Each bar's height (labelled on top) is
the widest box a point can predict, twice its range (the point at the box's centre); the label
inside the bar is the level's range itself, stride x (num_bins - 1), the farthest side distance.
"""

from __future__ import annotations

import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the checkout's jax_dfl, as docs/conf.py does
import jax_dfl  # noqa: E402

OUT = ROOT / "docs" / "_static" / "box_range.png"


def _range_labels(ax, bars, reach) -> None:
    """The level's range per side (half the bar), written inside the bar."""
    ax.bar_label(
        bars, labels=[f"{r:g}/side" for r in reach], label_type="center", fontsize=6.5, color="white"
    )


def main() -> None:
    fig, (yolo, study) = plt.subplots(1, 2, figsize=(11.5, 4.2), gridspec_kw={"width_ratios": [3, 2]})

    # YOLOv8 at strides 8/16/32 (P3-P5) and the P6 models' extra level, stride 64.
    strides = [8, 16, 32, 64]
    width = 0.38
    for offset, num_bins, label in [(-width / 2, 16, "16 bins (ultralytics reg_max=16)"),
                                    (width / 2, 17, "17 bins (mmdetection reg_max=16)")]:  # fmt: skip
        reach = np.asarray(jax_dfl.representable_range(strides, num_bins=num_bins))
        bars = yolo.bar(np.arange(len(strides)) + offset, 2 * reach, width, label=label)
        yolo.bar_label(bars, fmt="%g", fontsize=8)
        _range_labels(yolo, bars, reach)
    for size, style in [(640, "--"), (1280, ":")]:
        yolo.axhline(size, color="k", linestyle=style, linewidth=1)
        yolo.text(-0.45, size + 25, f"{size} px input", fontsize=8)
    yolo.set_xticks(range(len(strides)), [f"P{i + 3}, stride {s}" for i, s in enumerate(strides)])
    yolo.set_ylabel("widest box from one point (px)")
    yolo.set_title(
        "YOLOv8-style heads: widest box 2 x stride x (num_bins - 1)\n"
        "inside the bars: range per side, stride x (num_bins - 1)",
        fontsize=10,
    )
    yolo.legend(loc="upper left", fontsize=8, bbox_to_anchor=(0.0, 0.93))

    # The detection study's synthetic controls: one level, stride 8 or 4, 16 bins, 96 px images.
    study_strides = [4, 8]
    reach = np.asarray(jax_dfl.representable_range(study_strides, num_bins=16))
    widest = 2 * reach
    bars = study.bar(range(2), widest, 0.5, color="C2", label="16 bins")
    study.bar_label(bars, fmt="%g", fontsize=8)
    _range_labels(study, bars, reach)
    study.axhline(96, color="k", linestyle="--", linewidth=1)
    study.text(0.28, 99, "96 px image", fontsize=8)
    largest = 44 * np.sqrt(1.4)  # the generator's largest box side (synthetic.SyntheticTask)
    study.axhline(largest, color="C3", linestyle=":", linewidth=1)
    study.text(0.28, largest + 3, f"largest box side, {largest:.0f} px", fontsize=8, color="C3")
    study.set_xticks(range(2), [f"stride {s}" for s in study_strides])
    study.set_title("Detection study, synthetic controls")
    study.legend(loc="upper left", fontsize=8)
    study.set_ylim(0, 1.15 * widest.max())

    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
