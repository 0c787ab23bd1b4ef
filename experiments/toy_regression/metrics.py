"""What a run's MAE curve gives: the learning-rate criterion and the steps to each threshold.

Two definitions of "steps to MAE t", both read from the same evaluated curve:

* ``first``: the first evaluated step at which the MAE is at or below ``t``. On a noisy curve
  this is an early dip, and it moves with how densely the curve is evaluated;
* ``sustained``: the first evaluated step from which the MAE stays at or below ``t`` at every
  later evaluation (to the end of training); ``None`` when the last evaluation is above ``t``.
  It is never earlier than ``first``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DEFINITIONS = ("first", "sustained")


def first_crossing(steps: Sequence[int], curve, threshold: float) -> int | None:
    """First evaluated step whose MAE is at or below ``threshold``.

    Examples:
      >>> first_crossing([0, 10, 20, 30], [1.0, 0.4, 0.6, 0.3], 0.5)
      10
    """
    hit = np.flatnonzero(np.asarray(curve) <= threshold)
    return int(steps[hit[0]]) if hit.size else None


def sustained_crossing(steps: Sequence[int], curve, threshold: float) -> int | None:
    """First evaluated step from which the MAE stays at or below ``threshold`` to the end.

    Examples:
      >>> sustained_crossing([0, 10, 20, 30], [1.0, 0.4, 0.6, 0.3], 0.5)
      30
      >>> sustained_crossing([0, 10, 20, 30], [1.0, 0.4, 0.6, 0.7], 0.5) is None
      True
    """
    above = np.flatnonzero(np.asarray(curve) > threshold)
    if not above.size:
        return int(steps[0])
    last = int(above[-1])
    return int(steps[last + 1]) if last + 1 < len(steps) else None


def crossings(steps: Sequence[int], curve, thresholds: Mapping[str, float]) -> dict[str, dict]:
    """``{definition: {threshold name: step or None}}`` for both definitions."""
    fns = {"first": first_crossing, "sustained": sustained_crossing}
    return {d: {name: fns[d](steps, curve, t) for name, t in thresholds.items()} for d in DEFINITIONS}


def area_under_curve(steps: Sequence[int], curve) -> float:
    """Validation MAE averaged over training: ``(1 / T) * integral_0^T MAE(step) d step``, by trapezoids.

    The learning-rate criterion for convergence speed: a curve that gets low
    early scores lower. Trapezoids over the step itself (not its log), so
    unevenly spaced evaluations are weighted by the steps they stand for.

    Examples:
      >>> print(round(area_under_curve([0, 10, 30], np.array([1.0, 0.5, 0.5])), 4))  # (7.5 + 10) / 30
      0.5833
    """
    steps = np.asarray(steps, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    widths = np.diff(steps)
    return float(np.sum(widths * 0.5 * (curve[1:] + curve[:-1])) / (steps[-1] - steps[0]))


def log_area(steps: Sequence[int], curve, *, start: int = 10) -> float:
    """MAE averaged over log(step) from step ``start`` (each decade weighs the same)."""
    steps = np.asarray(steps, dtype=np.float64)
    mae = np.asarray(curve, dtype=np.float64)
    keep = steps >= start
    x = np.log(steps[keep])
    return float(np.sum(np.diff(x) * 0.5 * (mae[keep][1:] + mae[keep][:-1])) / (x[-1] - x[0]))
