"""Amendment 5's exploratory projection: the per-doubling ratio, the doublings still needed and the
per-arm bookkeeping, against closed forms and hand-built records."""

import math

import numpy as np
import pytest

from experiments.detection_study import projection as pj


def test_ratio_is_exact_for_a_geometric_decay_and_none_for_a_non_positive_gain():
    assert pj.ratio_per_doubling([0.04, 0.02, 0.01]) == pytest.approx(0.5)
    assert pj.ratio_per_doubling([0.01, 0.02]) == pytest.approx(2.0)
    # Least squares on the logs: the geometric mean of the successive ratios when there are three.
    g = [0.05, 0.02, 0.012]
    assert pj.ratio_per_doubling(g) == pytest.approx(math.sqrt(g[2] / g[0]))
    assert pj.ratio_per_doubling([0.02, 0.0, 0.01]) is None
    assert pj.ratio_per_doubling([0.02, 0.01, -0.001]) is None


def test_doublings_needed_closed_form():
    assert pj.doublings_needed(0.004, 0.5, 0.005) == 0  # already levelled
    assert pj.doublings_needed(0.02, 0.5, 0.005) == 2  # 0.02 -> 0.01 -> 0.005
    assert pj.doublings_needed(0.021, 0.5, 0.005) == 3
    assert pj.doublings_needed(0.02, 1.0, 0.005) is None
    assert pj.doublings_needed(0.02, None, 0.005) is None
    # A ratio a rounding error below 1 must not ask for 2 ** 1e16 steps.
    assert pj.doublings_needed(0.02, 1 - 1e-15, 0.005) is None
    assert pj.doublings_needed(0.02, 0.5, 0.005, most=1) is None
    for upper, ratio in [(0.03, 0.7), (0.011, 0.4), (0.05, 0.6)]:
        n = pj.doublings_needed(upper, ratio, 0.005)
        assert upper * ratio**n <= 0.005 < upper * ratio ** (n - 1)


def _curve(final: float, peak: float | None = None):
    peak = final if peak is None else peak
    return [{"step": 50, "val_AP": peak / 2}, {"step": 100, "val_AP": peak}, {"step": 150, "val_AP": final}]


def test_project_drops_an_arms_collapsed_seed_and_projects_on_the_rest():
    seeds = range(100, 104)
    base = {1600: 0.50, 3200: 0.54, 6400: 0.56, 12800: 0.57}  # gains 0.04, 0.02, 0.01: ratio 0.5
    runs = {}
    for steps in pj.ORDER:
        runs[steps] = {}
        for arm in pj.ARMS:
            runs[steps][arm] = {
                s: {"curve": _curve(base[steps] + 0.001 * (s - 100) * (steps == 12800 and arm == "ciou"))}
                for s in seeds
            }
    runs[6400]["ciou_l1"][103] = {"curve": _curve(0.001, peak=0.5)}  # collapsed
    result = pj.project(runs, seconds_per_step=0.04)
    assert result["analysed_seeds"] == [100, 101, 102, 103]
    l1 = result["arms"]["ciou_l1"]
    assert l1["dropped_collapsed"] == [103] and l1["seeds"] == [100, 101, 102]
    assert l1["ratio"] == pytest.approx(0.5)
    # Identical seeds: the interval has no width, so the upper end is the mean, 0.01: one more doubling.
    assert l1["doublings"][-1]["hi"] == pytest.approx(0.01)
    assert l1["more_doublings"] == 1 and l1["steps"] == 25600
    assert l1["run_hours"] == pytest.approx(25600 * 0.04 / 3600)
    assert l1["amendment_hours"] == pytest.approx(4 * 4 * 25600 * 0.04 / 3600)
    ciou = result["arms"]["ciou"]
    gains = np.array([0.01 + 0.001 * k for k in range(4)])
    assert ciou["doublings"][-1]["mean"] == pytest.approx(gains.mean())
    assert ciou["doublings"][-1]["hi"] > gains.mean()


def test_markdown_names_every_arm():
    runs = {
        t: {a: {s: {"curve": _curve(0.5 + 0.01 * i)} for s in (1, 2)} for a in pj.ARMS}
        for i, t in enumerate(pj.ORDER)
    }
    text = pj.markdown(pj.project(runs, 0.04))
    assert all(f"| {arm} |" in text for arm in pj.ARMS)
