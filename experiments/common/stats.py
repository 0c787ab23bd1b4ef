"""The statistics both studies report, in one place: tested once (tests/test_stats.py).

* :func:`t_interval` / :func:`paired_t`: mean of paired differences with its Student-t interval
  and two-sided p-value (Student's t from its closed-form distribution function, no SciPy);
  :func:`paired_ratio`: ratio of medians and the geometric-mean ratio with its interval;
* :func:`sign_flip_p`: the exact paired sign-flip (permutation) test, every one of the ``2**n``
  sign assignments for ``n <= exact_max``;
* :func:`holm`: Holm's step-down adjusted p-values and decisions;
* :func:`bootstrap_counts`, :func:`percentile_interval`: the pieces of the detection study's
  stratified bootstrap (seeds and test blocks resampled; the AP itself is recomputed in
  ``experiments.detection_study.evaluate``);
* :func:`expected_half_width`, :func:`seeds_for_half_width`: planning a paired study from a
  pilot's standard deviation of the differences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# --- Student's t ------------------------------------------------------------------------------------


def t_central_mass(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with integer ``df`` degrees of freedom.

    The finite trigonometric series of Abramowitz & Stegun 26.7.3-26.7.4 (exact for integer
    ``df``), with ``theta = arctan(t / sqrt(df))``.

      >>> round(t_central_mass(1.0, 1), 6)  # Cauchy: 2 arctan(1) / pi
      0.5
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer; got {df}")
    t = abs(float(t))
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, 1.0
        if df > 1:
            total = 1.0
            for k in range(1, (df - 1) // 2):  # 1 + 2/3 c^2 + (2 4)/(3 5) c^4 + ... (df - 3)/2 terms after 1
                term *= (2 * k) / (2 * k + 1) * c2
                total += term
            total *= s * math.cos(theta)
        return 2.0 / math.pi * (theta + total)
    total, term = 1.0, 1.0
    for k in range(1, df // 2):  # 1 + 1/2 c^2 + (1 3)/(2 4) c^4 + ... up to c^(df - 2)
        term *= (2 * k - 1) / (2 * k) * c2
        total += term
    return s * total


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p-value ``P(|T| >= |t|)``."""
    return max(0.0, 1.0 - t_central_mass(t, df))


def t_quantile(probability: float, df: int) -> float:
    """Quantile of Student's t (bisection on :func:`t_central_mass` to float precision).

    >>> round(t_quantile(0.975, 2), 6)  # closed form for df = 2: 0.95 * sqrt(2 / (1 - 0.95**2))
    4.302653
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1); got {probability}")
    if probability == 0.5:
        return 0.0
    mass = abs(2.0 * probability - 1.0)
    lo, hi = 0.0, 1.0
    while t_central_mass(hi, df) < mass:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_central_mass(mid, df) < mass:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    value = 0.5 * (lo + hi)
    return value if probability > 0.5 else -value


# --- paired intervals and tests ---------------------------------------------------------------------


def _clean(values) -> np.ndarray:
    d = np.asarray(values, np.float64).ravel()
    return d[~np.isnan(d)]


def t_interval(differences: Sequence[float], *, confidence: float = 0.95) -> dict[str, float]:
    """Mean of ``differences`` (NaNs dropped) with its Student-t interval and two-sided p-value.

    Returns ``{"mean", "lo", "hi", "n", "sd", "p"}``; ``lo``, ``hi``, ``p`` are NaN below two values.

      >>> r = t_interval([2.0, 3.0, 1.0])  # mean 2, sd 1: half-width t(0.975, 2) / sqrt(3)
      >>> round(r["lo"], 3), round(r["hi"], 3)
      (-0.484, 4.484)
    """
    d = _clean(differences)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "n": n, "sd": math.nan, "p": math.nan}
    sd = float(d.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    if sd == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = t_two_sided_p(mean / (sd / math.sqrt(n)), n - 1)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n, "sd": sd, "p": p}


def paired_t(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict[str, float]:
    """:func:`t_interval` of the paired differences ``a - b`` (same seeds, same order)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same shape; got {a.shape} and {b.shape}")
    return t_interval(a - b, confidence=confidence)


def paired_ratio(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict[str, float]:
    """How many times ``a`` is ``b``, paired: the ratio of the medians, and the geometric mean of the
    per-pair ratios ``a / b`` with the Student-t interval of their logs, exponentiated.

    For positive quantities that scale (steps, seconds). Returns ``{"median_ratio", "geometric_mean",
    "lo", "hi", "p", "n"}`` (``p``: the t-test of ``mean log(a / b) = 0``); NaN everywhere when a
    value is not positive or NaN.

      >>> r = paired_ratio([20.0, 40.0, 80.0], [10.0, 10.0, 20.0])  # ratios 2, 4, 4
      >>> r["median_ratio"], round(r["geometric_mean"], 4)
      (4.0, 3.1748)
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same shape; got {a.shape} and {b.shape}")
    if not a.size or np.isnan(a).any() or np.isnan(b).any() or (a <= 0).any() or (b <= 0).any():
        nan = math.nan
        return {"median_ratio": nan, "geometric_mean": nan, "lo": nan, "hi": nan, "p": nan, "n": a.size}
    logs = t_interval(np.log(a) - np.log(b), confidence=confidence)
    return {
        "median_ratio": float(np.median(a) / np.median(b)),
        "geometric_mean": math.exp(logs["mean"]),
        "lo": math.exp(logs["lo"]) if not math.isnan(logs["lo"]) else math.nan,
        "hi": math.exp(logs["hi"]) if not math.isnan(logs["hi"]) else math.nan,
        "p": logs["p"],
        "n": logs["n"],
    }


def _signed_sums(d: np.ndarray) -> np.ndarray:
    """``sum_i s_i d_i`` for all ``2**len(d)`` sign vectors ``s`` (one array, built by doubling)."""
    sums = np.zeros(1)
    for x in d:
        sums = np.concatenate([sums + x, sums - x])
    return sums


def sign_flip_p(
    differences: Sequence[float], *, exact_max: int = 40, samples: int = 100_000, seed: int = 0
) -> float:
    """Two-sided paired sign-flip (permutation) test of "the differences are symmetric about 0".

    The p-value is the fraction of sign assignments whose ``|mean|`` is at least the observed one
    (the observed assignment included). Exact, over all ``2**n`` assignments, for ``n <=
    exact_max``: the signed sums of the two halves of the differences are listed (``2**(n/2)``
    each), one half sorted, and for each sum of the other half the assignments with ``|a + b| >=
    observed`` are counted by binary search, so 32 seeds take well under a second. Above
    ``exact_max``, ``samples`` random assignments plus the observed one (a valid Monte-Carlo
    p-value). NaNs are dropped; exact zeros have no sign and count either way.

      >>> sign_flip_p([0.1, 0.2, 0.3, 0.4, 0.5])  # all positive, n = 5: only the two extremes
      0.0625
    """
    d = _clean(differences)
    n = len(d)
    if n == 0:
        return math.nan
    observed = abs(d.sum())
    tolerance = 1e-12 * max(float(np.abs(d).sum()), 1e-300)
    threshold = observed - tolerance  # |a + b| >= threshold counts
    if threshold <= 0:
        return 1.0
    if n <= exact_max:
        first, second = _signed_sums(d[: n // 2]), np.sort(_signed_sums(d[n // 2 :]))
        # a + b >= threshold  <=>  b >= threshold - a;  a + b <= -threshold  <=>  b <= -threshold - a
        above = len(second) - np.searchsorted(second, threshold - first, side="left")
        below = np.searchsorted(second, -threshold - first, side="right")
        return float(np.sum(above) + np.sum(below)) / float(1 << n)
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(samples, n))
    hits = int(np.count_nonzero(np.abs(signs @ d) >= threshold))
    return (hits + 1) / (samples + 1)


def holm(pvalues: Mapping[str, float], *, alpha: float = 0.05) -> dict[str, dict[str, float | bool]]:
    """Holm's step-down adjustment over a family: ``{name: {"p", "p_holm", "reject"}}``.

    ``p_holm`` of the k-th smallest of m p-values is ``max_{j <= k} min(1, (m - j + 1) p_(j))``;
    a test is rejected at family-wise level ``alpha`` when ``p_holm <= alpha``. NaN p-values are
    left out of the family (``p_holm`` NaN, not rejected).

      >>> {k: v["reject"] for k, v in holm({"a": 0.01, "b": 0.04, "c": 0.03}).items()}
      {'a': True, 'b': False, 'c': False}
    """
    names = [k for k, p in pvalues.items() if not math.isnan(p)]
    ordered = sorted(names, key=lambda k: pvalues[k])
    m, running, out = len(ordered), 0.0, {}
    for rank, name in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * pvalues[name]))
        out[name] = {"p": pvalues[name], "p_holm": running, "reject": running <= alpha}
    for name, p in pvalues.items():
        if name not in out:
            out[name] = {"p": p, "p_holm": math.nan, "reject": False}
    return {name: out[name] for name in pvalues}


# --- the detection study's bootstrap pieces ----------------------------------------------------------


def bootstrap_counts(rng: np.random.Generator, strata: np.ndarray) -> np.ndarray:
    """Multiplicities of one stratified resample: within each stratum, as many draws as it has members."""
    strata = np.asarray(strata)
    counts = np.zeros(len(strata), int)
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        np.add.at(counts, rng.choice(members, len(members)), 1)
    return counts


def percentile_interval(draws: np.ndarray, *, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap ``draws`` (NaN draws dropped; NaN if none are left)."""
    finite = np.asarray(draws, np.float64)
    finite = finite[~np.isnan(finite)]
    if not finite.size:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


# --- planning ----------------------------------------------------------------------------------------


def c4(n: int) -> float:
    """``E[s] / sigma`` for the sample standard deviation of ``n`` normal values."""
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


def expected_half_width(sd: float, n: int, *, confidence: float = 0.95) -> float:
    """Expected half-width of the paired t-interval over ``n`` seeds when the differences' SD is ``sd``.

    ``t_{(1+confidence)/2, n-1} * E[s] / sqrt(n)`` with ``E[s] = c4(n) sd`` (normal differences).
    """
    if n < 2:
        raise ValueError("a t-interval needs at least 2 seeds")
    return t_quantile(0.5 + confidence / 2, n - 1) * c4(n) * sd / math.sqrt(n)


def seeds_for_half_width(sd: float, target: float, *, confidence: float = 0.95, max_n: int = 10_000) -> int:
    """The fewest seeds whose expected paired t half-width (:func:`expected_half_width`) is <= ``target``."""
    for n in range(2, max_n + 1):
        if expected_half_width(sd, n, confidence=confidence) <= target:
            return n
    raise ValueError(f"more than {max_n} seeds needed for half-width {target} at sd {sd}")
