"""HL-Gauss soft labels and their cross-entropy against float64 NumPy references."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_dfl.histogram_losses import hl_gauss, hl_gauss_loss
from tests import reference as ref


def ref_hl_gauss(targets, num_bins: int, sigma: float, values=None) -> np.ndarray:
    """Bin masses of N(y, sigma^2) via math.erf, renormalised over the support; loops on purpose."""
    values = np.arange(num_bins, dtype=np.float64) if values is None else np.asarray(values, np.float64)
    edges = [values[0] - (values[1] - values[0]) / 2]
    edges += [(values[i] + values[i + 1]) / 2 for i in range(num_bins - 1)]
    edges += [values[-1] + (values[-1] - values[-2]) / 2]
    targets = np.asarray(targets, dtype=np.float64)
    out = np.zeros(targets.shape + (num_bins,))
    for pos in np.ndindex(targets.shape):
        y = min(max(float(targets[pos]), values[0]), values[-1])
        cdf = [0.5 * (1 + math.erf((e - y) / (sigma * math.sqrt(2)))) for e in edges]
        total = cdf[-1] - cdf[0]
        for i in range(num_bins):
            out[pos + (i,)] = (cdf[i + 1] - cdf[i]) / total
    return out


TARGETS = np.array([0.0, 0.3, 2.5001, 7.77, 14.2, 16.0])


@pytest.mark.parametrize("sigma", [0.3, 0.75, 2.0])
def test_soft_label_matches_reference_and_sums_to_one(sigma):
    q = np.asarray(hl_gauss(TARGETS, 17, sigma=sigma))
    np.testing.assert_allclose(q, ref_hl_gauss(TARGETS, 17, sigma), atol=2e-6)
    np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-6)
    assert q.dtype == np.float32


def test_non_uniform_bins_match_reference():
    values = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
    y = np.array([0.2, 1.7, 5.0])
    np.testing.assert_allclose(
        hl_gauss(y, 6, sigma=0.6, bin_values=values), ref_hl_gauss(y, 6, 0.6, values), atol=2e-6
    )


def test_sigma_to_zero_is_the_one_hot_of_the_containing_bin():
    y = np.array([0.2, 3.49, 3.51, 8.9, 15.6])
    q = np.asarray(hl_gauss(y, 17, sigma=1e-4))
    np.testing.assert_array_equal(q, np.eye(17)[[0, 3, 4, 9, 16]])


def test_mean_is_the_target_away_from_the_ends_and_biased_inwards_near_them():
    bins = np.arange(17.0)
    middle = np.linspace(4.0, 12.0, 41)
    mean = np.asarray(hl_gauss(middle, 17, sigma=0.75)) @ bins
    np.testing.assert_allclose(mean, middle, atol=1e-4)
    # sigma = 0.25 is narrow enough for the bin grid to show: a staircase (documented).
    narrow = np.asarray(hl_gauss(middle, 17, sigma=0.25)) @ bins
    assert 0.05 < np.abs(narrow - middle).max() < 0.12
    # Near the ends the truncated Gaussian's mean is pulled towards the middle (documented: 0.37 at y = 0).
    ends = np.asarray(hl_gauss(np.array([0.0, 16.0]), 17, sigma=0.75)) @ bins
    assert ends[0] == pytest.approx(0.369, abs=2e-3) and ends[1] == pytest.approx(16 - 0.369, abs=2e-3)


def test_loss_matches_reference_and_gradient_is_softmax_minus_label():
    logits = np.asarray(jax.random.normal(jax.random.key(0), (6, 17)) * 3)
    loss = hl_gauss_loss(logits, TARGETS, sigma=0.75)
    q = ref_hl_gauss(TARGETS, 17, 0.75)
    np.testing.assert_allclose(loss, ref.cross_entropy(q, logits), rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda x: hl_gauss_loss(x, TARGETS, sigma=0.75).sum())(logits)
    np.testing.assert_allclose(grad, ref.softmax(logits) - q, atol=2e-6)


def test_large_logit_offset_keeps_precision():
    logits = (np.asarray(jax.random.normal(jax.random.key(1), (6, 17))) + 1e6).astype(np.float32)
    got = hl_gauss_loss(logits, TARGETS, sigma=0.75)
    # The same float32 inputs, in float64.
    expected = ref.cross_entropy(ref_hl_gauss(TARGETS, 17, 0.75), logits.astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_where_masks_value_and_gradient_even_for_nan_inputs():
    logits = jnp.ones((3, 8)).at[1].set(jnp.nan).at[2, 3].set(jnp.inf)
    targets = jnp.array([2.0, jnp.nan, 3.0])
    where = jnp.array([True, False, False])
    value, grad = jax.value_and_grad(lambda x: hl_gauss_loss(x, targets, sigma=0.75, where=where).sum())(
        logits
    )
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_array_equal(hl_gauss_loss(logits, targets, sigma=0.75, where=where)[1:], 0.0)
    np.testing.assert_array_equal(grad[1:], 0.0)


def test_jit_vmap_traced_sigma_and_plain_inputs():
    logits = jax.random.normal(jax.random.key(2), (4, 5, 9))
    y = jax.random.uniform(jax.random.key(3), (4, 5), maxval=8)
    direct = hl_gauss_loss(logits, y, sigma=0.5)
    np.testing.assert_allclose(
        jax.jit(lambda x, y: hl_gauss_loss(x, y, sigma=0.5))(logits, y), direct, rtol=1e-6
    )
    np.testing.assert_allclose(
        jax.vmap(lambda x, y: hl_gauss_loss(x, y, sigma=0.5))(logits, y), direct, rtol=1e-6
    )
    # A traced sigma (e.g. a schedule) is not checked but works.
    traced = jax.jit(lambda x, y, s: hl_gauss_loss(x, y, sigma=s))(logits, y, 0.5)
    np.testing.assert_allclose(traced, direct, rtol=1e-6)
    # Python lists and NumPy arrays are accepted.
    out = hl_gauss_loss([[0.0, 1.0, 2.0]], [1.5], sigma=np.float64(0.7))
    assert out.shape == (1,) and out.dtype == jnp.float32


def test_dtypes():
    x = jnp.zeros((2, 6), jnp.bfloat16)
    y = jnp.array([1.0, 2.5])
    assert hl_gauss_loss(x, y, sigma=0.75).dtype == jnp.float32
    grad = jax.grad(lambda x: hl_gauss_loss(x, y, sigma=0.75).sum())(x)
    assert grad.dtype == jnp.bfloat16


def test_input_rules():
    x, y = jnp.zeros((4, 6)), jnp.zeros((4,))
    with pytest.raises(ValueError, match="sigma"):
        hl_gauss_loss(x, y, sigma=0.0)
    with pytest.raises(ValueError, match="sigma"):
        hl_gauss(y, 6, sigma=-1.0)
    with pytest.raises(ValueError, match=r"targets.shape=\(4, 1\)"):
        hl_gauss_loss(x, y[:, None], sigma=1.0)
    with pytest.raises(TypeError, match="floating"):
        hl_gauss_loss(jnp.zeros((4, 6), jnp.int32), y, sigma=1.0)
    with pytest.raises(TypeError, match="boolean"):
        hl_gauss_loss(x, y, sigma=1.0, where=jnp.ones((4,)))
    with pytest.raises(ValueError, match="num_bins"):
        hl_gauss(y, 1, sigma=1.0)
    with pytest.raises(ValueError, match="increasing"):
        hl_gauss_loss(x, y, sigma=1.0, bin_values=[0, 1, 1, 2, 3, 4])


def test_forward_mode_and_target_gradient():
    logits = jax.random.normal(jax.random.key(4), (3, 9))
    y = jnp.array([1.3, 4.0, 7.2])
    loss = lambda x, t: hl_gauss_loss(x, t, sigma=0.75).sum()
    # Forward mode agrees with reverse mode for the logits.
    direction = jax.random.normal(jax.random.key(5), logits.shape)
    _, forward = jax.jvp(lambda x: loss(x, y), (logits,), (direction,))
    assert forward == pytest.approx(float(jnp.vdot(jax.grad(loss)(logits, y), direction)), rel=1e-4)
    # The target gradient is the formula's own: central differences of the float64 reference.
    got = np.asarray(jax.grad(loss, argnums=1)(logits, y))
    h = 1e-5
    for i in range(3):
        up, down = np.asarray(y, np.float64).copy(), np.asarray(y, np.float64).copy()
        up[i] += h
        down[i] -= h
        fd = (
            ref.cross_entropy(ref_hl_gauss(up, 9, 0.75), logits).sum()
            - ref.cross_entropy(ref_hl_gauss(down, 9, 0.75), logits).sum()
        ) / (2 * h)
        assert got[i] == pytest.approx(fd, rel=1e-3, abs=1e-4)


def test_value_and_grad_keep_no_rows_by_bins_scratch():
    x = jnp.zeros((65536, 17))
    y = jnp.zeros((65536,))

    def scratch(fn):
        mem = jax.jit(fn).lower(x, y).compile().memory_analysis()
        if mem is None:
            pytest.skip("this backend reports no memory analysis")
        return mem.temp_size_in_bytes

    hl = scratch(jax.value_and_grad(lambda x, y: hl_gauss_loss(x, y, sigma=0.75).mean()))
    lse = scratch(jax.value_and_grad(lambda x, y: jax.nn.logsumexp(x, -1).mean()))
    assert hl <= 0.3 * x.nbytes and hl <= lse * 1.01 + 4096, (hl, lse)
    assert scratch(lambda x, y: hl_gauss_loss(x, y, sigma=0.75)) <= 0.3 * x.nbytes
