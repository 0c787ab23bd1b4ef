"""experiments/common/stats.py against hand cases, closed forms and (where installed) SciPy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from experiments.common import stats


def test_t_distribution_closed_forms():
    # df = 1 (Cauchy): P(|T| <= t) = 2 arctan(t) / pi; df = 2: t / sqrt(2 + t^2).
    for t in (0.1, 1.0, 3.0, 40.0):
        assert stats.t_central_mass(t, 1) == pytest.approx(2 * math.atan(t) / math.pi, rel=1e-14)
        assert stats.t_central_mass(t, 2) == pytest.approx(t / math.sqrt(2 + t * t), rel=1e-14)
    assert stats.t_quantile(0.975, 1) == pytest.approx(math.tan(0.95 * math.pi / 2), rel=1e-12)
    assert stats.t_quantile(0.975, 2) == pytest.approx(0.95 * math.sqrt(2 / (1 - 0.95**2)), rel=1e-12)
    # Table values (t_{0.975}): 4 -> 2.776445, 15 -> 2.131450, 30 -> 2.042272.
    for df, value in ((4, 2.776445), (15, 2.131450), (30, 2.042272)):
        assert stats.t_quantile(0.975, df) == pytest.approx(value, abs=1e-6)
    assert stats.t_quantile(0.025, 4) == pytest.approx(-2.776445, abs=1e-6)


def test_t_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 5, 8, 15, 19, 31, 60):
        for p in (0.6, 0.9, 0.975, 0.995):
            assert stats.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9)
        for t in (0.3, 1.7, 4.0):
            assert stats.t_two_sided_p(t, df) == pytest.approx(2 * scipy_stats.t.sf(t, df), rel=1e-9)
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, 12)
    ours = stats.t_interval(d)
    ref = scipy_stats.ttest_1samp(d, 0.0)
    assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    lo, hi = ref.confidence_interval(0.95)
    assert (ours["lo"], ours["hi"]) == pytest.approx((lo, hi), rel=1e-9)


def test_paired_t_interval_by_hand():
    # Differences 2, 3, 1: mean 2, sd 1, half-width t_{0.975, 2} / sqrt(3); t = 2 sqrt(3) on 2 df.
    out = stats.paired_t([3.0, 5.0, 4.0], [1.0, 2.0, 3.0])
    half = 4.302652729749464 / math.sqrt(3)
    assert out["mean"] == 2.0 and out["n"] == 3 and out["sd"] == 1.0
    assert (out["lo"], out["hi"]) == pytest.approx((2 - half, 2 + half), rel=1e-12)
    t = 2 * math.sqrt(3)
    assert out["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-12)
    assert math.isnan(stats.t_interval([1.0])["lo"]) and stats.t_interval([1.0, np.nan])["n"] == 1
    assert stats.t_interval([0.5, 0.5])["p"] == 0.0 and stats.t_interval([0.0, 0.0])["p"] == 1.0


def test_sign_flip_exact_hand_cases():
    assert stats.sign_flip_p([1.0, 2.0, 3.0, 4.0, 5.0]) == 2 / 32  # only all + and all -
    assert stats.sign_flip_p([-1.0] * 6) == 2 / 64
    # 1, 2, -3: |sum| = 0; every assignment reaches it.
    assert stats.sign_flip_p([1.0, 2.0, -3.0]) == 1.0
    # 3, 1, 1: |sum| 5 observed; sums of +-3 +-1 +-1 are 5, 3, 3, 1, -1, -3, -3, -5: two of eight.
    assert stats.sign_flip_p([3.0, 1.0, 1.0]) == 2 / 8
    # Brute force over all assignments agrees, including n > 16 (the chunked enumeration).
    rng = np.random.default_rng(1)
    for n in (7, 18):
        d = rng.normal(0.4, 1.0, n)
        if n <= 10:
            sums = [abs(np.dot(s, d)) for s in itertools.product((-1, 1), repeat=n)]
            brute = np.mean(np.array(sums) >= abs(d.sum()) - 1e-12)
            assert stats.sign_flip_p(d) == pytest.approx(brute, abs=0)
        else:
            exact = stats.sign_flip_p(d)
            approx = stats.sign_flip_p(d, exact_max=10, samples=200_000)
            assert exact * 2**n == round(exact * 2**n)  # a count over 2^n
            assert approx == pytest.approx(exact, abs=0.005)


def test_sign_flip_meet_in_the_middle_equals_full_enumeration():
    # Ties included (integer differences): the split count must equal counting all 2^n sums directly.
    rng = np.random.default_rng(7)
    for n in (1, 2, 9, 14, 20):
        for d in (rng.normal(0.3, 1.0, n), rng.integers(-3, 4, n).astype(float)):
            sums = np.abs(stats._signed_sums(d))
            direct = np.mean(sums >= abs(d.sum()) - 1e-12 * max(np.abs(d).sum(), 1e-300))
            assert stats.sign_flip_p(d) == (1.0 if abs(d.sum()) == 0 else direct)


def test_sign_flip_exact_at_32_seeds():
    # All positive and equal: only the two extreme assignments reach |sum|; and a count over 2^32.
    assert stats.sign_flip_p([0.01] * 32) == 2 / 2**32
    d = np.random.default_rng(3).normal(0.005, 0.02, 32)
    p = stats.sign_flip_p(d)
    assert p * 2**32 == round(p * 2**32)
    assert p == pytest.approx(stats.sign_flip_p(d, exact_max=10, samples=200_000), abs=0.005)


def test_holm_known_vector():
    # m = 4: sorted 0.01, 0.02, 0.03, 0.04 -> 0.04, 0.06, 0.06, 0.06 (running maximum).
    out = stats.holm({"a": 0.03, "b": 0.01, "c": 0.04, "d": 0.02})
    assert [out[k]["p_holm"] for k in "bdac"] == pytest.approx([0.04, 0.06, 0.06, 0.06])
    assert [out[k]["reject"] for k in "abcd"] == [False, True, False, False]
    assert list(out) == ["a", "b", "c", "d"]
    # Capped at 1, NaN left out of the family.
    out = stats.holm({"x": 0.7, "y": 0.001, "w": 0.6, "z": float("nan")})  # m = 3
    assert out["w"]["p_holm"] == 1.0 and out["x"]["p_holm"] == 1.0  # 2 x 0.6 capped; max(1, 0.7)
    assert out["y"]["p_holm"] == pytest.approx(0.003)
    assert math.isnan(out["z"]["p_holm"]) and not out["z"]["reject"]


def test_bootstrap_pieces():
    rng = np.random.default_rng(0)
    strata = np.array([0, 0, 0, 1, 1])
    for _ in range(20):
        counts = stats.bootstrap_counts(rng, strata)
        assert counts[:3].sum() == 3 and counts[3:].sum() == 2
    assert stats.percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    assert all(math.isnan(x) for x in stats.percentile_interval(np.array([np.nan])))


def test_planning_helpers():
    # c4: E[s]/sigma; c4(2) = sqrt(2/pi).
    assert stats.c4(2) == pytest.approx(math.sqrt(2 / math.pi))
    # Expected half-width for n = 16 at sd 1: t_{0.975, 15} c4(16) / 4.
    assert stats.expected_half_width(1.0, 16) == pytest.approx(2.131450 * stats.c4(16) / 4, rel=1e-6)
    n = stats.seeds_for_half_width(0.02, 0.01)
    assert stats.expected_half_width(0.02, n) <= 0.01 < stats.expected_half_width(0.02, n - 1)
    # Simulated: the mean half-width over many normal samples matches the expectation.
    rng = np.random.default_rng(0)
    draws = rng.normal(0, 0.03, (20_000, 8))
    halves = [stats.t_interval(row)["hi"] - stats.t_interval(row)["mean"] for row in draws[:4000]]
    assert np.mean(halves) == pytest.approx(stats.expected_half_width(0.03, 8), rel=0.02)


def test_paired_ratio():
    a, b = [20.0, 40.0, 80.0], [10.0, 10.0, 20.0]  # per-pair ratios 2, 4, 4
    r = stats.paired_ratio(a, b)
    assert r["median_ratio"] == 4.0 and r["n"] == 3
    logs = stats.t_interval(np.log(a) - np.log(b))
    assert r["geometric_mean"] == pytest.approx(32 ** (1 / 3), rel=1e-12)
    assert (r["lo"], r["hi"], r["p"]) == pytest.approx(
        (math.exp(logs["lo"]), math.exp(logs["hi"]), logs["p"])
    )
    # Scale-free: multiplying both by a constant changes nothing; swapping inverts.
    assert stats.paired_ratio(np.multiply(a, 7), np.multiply(b, 7))["geometric_mean"] == pytest.approx(
        r["geometric_mean"]
    )
    swapped = stats.paired_ratio(b, a)
    assert swapped["geometric_mean"] == pytest.approx(1 / r["geometric_mean"])
    assert (swapped["lo"], swapped["hi"]) == pytest.approx((1 / r["hi"], 1 / r["lo"]))
    # Not defined for values that are not positive.
    assert math.isnan(stats.paired_ratio([1.0, 0.0], [1.0, 2.0])["geometric_mean"])
    with pytest.raises(ValueError, match="same shape"):
        stats.paired_ratio([1.0], [1.0, 2.0])
