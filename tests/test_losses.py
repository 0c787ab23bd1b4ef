"""distribution_focal_loss, two_hot, decode and validate_targets."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.test_util import check_grads

import jax_dfl
from tests import reference as ref

dfl = jax_dfl.distribution_focal_loss
SETTINGS = settings(max_examples=30, deadline=None)


def _random_case(seed: int, shape: tuple[int, ...], num_bins: int, spill: float = 0.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=shape + (num_bins,))
    targets = rng.uniform(-spill, num_bins - 1 + spill, size=shape)
    return logits, targets


# --- the seed document's worked examples ------------------------------------------------


def test_seed_two_hot_examples():
    np.testing.assert_allclose(two := jax_dfl.two_hot(2.37, 6), [0, 0, 0.63, 0.37, 0, 0], atol=1e-6)
    assert two.shape == (6,)
    np.testing.assert_allclose(jax_dfl.two_hot(4.8, 6), [0, 0, 0, 0, 0.2, 0.8], atol=1e-6)
    with jax.enable_x64(True):
        # In float64 the weights are the seed's formulas to the last bit.
        t = np.asarray(jax_dfl.two_hot(np.float64(2.37), 6))
        assert t[2] == 3 - 2.37 and t[3] == 2.37 - 2


def test_seed_decode_example():
    logits = jnp.log(jnp.array([0.0, 0.0, 0.0, 0.0, 0.2, 0.8]))
    assert jax_dfl.decode(logits) == pytest.approx(4.8, abs=1e-6)


def test_seed_loss_examples():
    # Example 2: prediction equal to the target; the loss is the target's entropy.
    p = jnp.array([0.0, 0.0, 0.0, 0.0, 0.2, 0.8])
    expected = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    assert expected == pytest.approx(0.5004, abs=5e-5)
    assert dfl(jnp.log(p), jnp.array(4.8)) == pytest.approx(expected, abs=1e-6)
    # Example 1: its prediction sums to 1.05; a softmax renormalises it.
    p = np.array([0.0, 0.05, 0.60, 0.40, 0.0, 0.0])
    assert p.sum() == pytest.approx(1.05)
    renormalised = -(0.63 * math.log(0.60 / 1.05) + 0.37 * math.log(0.40 / 1.05))
    assert dfl(jnp.log(p), jnp.array(2.37)) == pytest.approx(renormalised, abs=1e-5)
    assert renormalised == pytest.approx(0.7096, abs=1e-4)


# --- against the float64 brute force ----------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "num_bins"), [((), 2), ((7,), 5), ((3, 4), 17), ((2, 3, 5), 9), ((64,), 33)]
)
def test_loss_matches_float64_brute_force(shape, num_bins):
    logits, targets = _random_case(len(shape) * 100 + num_bins, shape, num_bins, spill=1.5)
    expected = ref.dfl(logits, targets)
    with jax.enable_x64(True):
        got64 = dfl(jnp.asarray(logits), jnp.asarray(targets))
        assert got64.dtype == jnp.float64
        np.testing.assert_allclose(got64, expected, rtol=1e-12, atol=1e-12)
    got32 = dfl(jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.float32))
    assert got32.shape == shape and got32.dtype == jnp.float32
    np.testing.assert_allclose(got32, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_bins", [2, 6, 17])
def test_two_hot_matches_brute_force(num_bins):
    targets = np.concatenate([np.linspace(-2, num_bins + 1, 97), np.arange(num_bins), [num_bins - 1.0]])
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            jax_dfl.two_hot(targets, num_bins), ref.two_hot(targets, num_bins), atol=1e-15
        )


def test_decode_matches_brute_force():
    logits, _ = _random_case(3, (4, 5), 16)
    with jax.enable_x64(True):
        np.testing.assert_allclose(jax_dfl.decode(logits), ref.decode(logits), rtol=1e-12)
    np.testing.assert_allclose(jax_dfl.decode(logits.astype(np.float32)), ref.decode(logits), rtol=1e-5)


# --- derivatives ------------------------------------------------------------------------


def test_gradient_is_softmax_minus_two_hot():
    logits, targets = _random_case(0, (6, 3), 11, spill=0.5)
    grad = jax.grad(lambda x: dfl(x, jnp.asarray(targets, jnp.float32)).sum())(
        jnp.asarray(logits, jnp.float32)
    )
    expected = ref.softmax(logits) - ref.two_hot(targets, 11)
    np.testing.assert_allclose(grad, expected, atol=2e-6)


def test_gradient_scales_with_cotangent_and_mean():
    logits, targets = _random_case(1, (8,), 7)
    x, y = jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.float32)
    grad = jax.grad(lambda x: dfl(x, y).mean())(x)
    np.testing.assert_allclose(grad, (ref.softmax(logits) - ref.two_hot(targets, 7)) / 8, atol=1e-6)


def test_gradient_wrt_targets():
    logits, targets = _random_case(2, (10,), 8)
    targets = np.concatenate([targets[:8], [-1.0, 9.0]])  # the last two are clipped
    x, y = jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.float32)
    grad = jax.grad(lambda y: dfl(x, y).sum())(y)
    k = np.floor(targets[:8]).astype(int)
    rows = np.arange(8)
    expected = logits[rows, k] - logits[rows, k + 1]
    np.testing.assert_allclose(grad[:8], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(grad[8:], 0.0)


def test_check_grads_both_modes_second_order():
    logits, targets = _random_case(4, (3, 2), 6)
    # Keep targets away from integers, where the loss has a kink in y.
    targets = np.floor(targets) + 0.3
    with jax.enable_x64(True):
        check_grads(jax.jit(dfl), (logits, targets), order=2, modes=["fwd", "rev"], eps=1e-6)
        check_grads(jax.jit(jax_dfl.decode), (logits,), order=2, modes=["fwd", "rev"], eps=1e-6)


def test_hessian_is_softmax_covariance():
    # d2/dx2 of logsumexp(x) - w.x is diag(p) - p p^T, whatever the target.
    logits, targets = _random_case(5, (), 7)
    with jax.enable_x64(True):
        hess = jax.hessian(dfl)(jnp.asarray(logits), jnp.asarray(targets))
    p = ref.softmax(logits)
    np.testing.assert_allclose(hess, np.diag(p) - np.outer(p, p), atol=1e-12)


def test_forward_mode_matches_reverse():
    logits, targets = _random_case(6, (5,), 9)
    x, y = jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.float32)
    v = jax.random.normal(jax.random.PRNGKey(0), x.shape)
    loss = lambda x: dfl(x, y).sum()
    _, tangent = jax.jvp(loss, (x,), (v,))
    assert tangent == pytest.approx(float(jnp.vdot(jax.grad(loss)(x), v)), rel=1e-5)
    np.testing.assert_allclose(jax.jacfwd(loss)(x), jax.jacrev(loss)(x), atol=1e-6)


# --- transformations --------------------------------------------------------------------


def test_jit_and_vmap_parity():
    logits, targets = _random_case(7, (4, 5), 10, spill=1.0)
    x, y = jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.float32)
    eager = dfl(x, y)
    np.testing.assert_allclose(jax.jit(dfl)(x, y), eager, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(dfl)(x, y), eager, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(jax.vmap(dfl))(x, y), eager, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(jax_dfl.decode))(x), jax_dfl.decode(x), rtol=1e-6)
    np.testing.assert_allclose(
        jax.jit(jax.vmap(jax_dfl.two_hot, in_axes=(0, None)), static_argnums=1)(y, 10),
        jax_dfl.two_hot(y, 10),
    )
    grad_jit = jax.jit(jax.grad(lambda x, y: dfl(x, y).mean()))(x, y)
    grad_vmap = jax.vmap(jax.grad(lambda x, y: dfl(x, y).mean() / 4))(x, y)
    np.testing.assert_allclose(grad_jit, grad_vmap, atol=1e-7)


# --- masks, clipping, numerics ----------------------------------------------------------


def test_where_masks_loss_and_gradient_even_for_garbage():
    logits, targets = _random_case(8, (6,), 5)
    logits[1] = np.nan
    targets[4] = np.nan
    mask = np.array([True, False, True, True, False, True])
    x, y = jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.float32)
    loss = dfl(x, y, where=mask)
    np.testing.assert_array_equal(loss[~mask], 0.0)
    np.testing.assert_allclose(loss[mask], ref.dfl(logits[mask], targets[mask]), rtol=1e-5)
    g_x, g_y = jax.grad(lambda x, y: dfl(x, y, where=mask).sum(), argnums=(0, 1))(x, y)
    assert np.isfinite(g_x).all() and np.isfinite(g_y).all()
    np.testing.assert_array_equal(g_x[~mask], 0.0)
    np.testing.assert_array_equal(g_y[~mask], 0.0)
    np.testing.assert_allclose(
        g_x[mask], ref.softmax(logits[mask]) - ref.two_hot(targets[mask], 5), atol=1e-6
    )
    _, tangent = jax.jvp(lambda x: dfl(x, y, where=mask), (x,), (jnp.ones_like(x),))
    np.testing.assert_array_equal(tangent[~mask], 0.0)


def test_out_of_range_targets_are_clipped_and_end_point_is_exact():
    logits, _ = _random_case(9, (), 6)
    x = jnp.asarray(logits, jnp.float32)
    assert dfl(x, jnp.array(-3.0)) == dfl(x, jnp.array(0.0))
    assert dfl(x, jnp.array(100.0)) == dfl(x, jnp.array(5.0))
    # y = num_bins - 1 puts all weight on the last bin: loss = -log p_last.
    assert dfl(x, jnp.array(5.0)) == pytest.approx(-ref.log_softmax(logits)[5], rel=1e-6)
    np.testing.assert_array_equal(jax_dfl.two_hot(5.0, 6), [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(jax_dfl.two_hot(-0.5, 6), [1, 0, 0, 0, 0, 0])


def test_nan_targets_give_nan():
    x = jnp.zeros((2, 4))
    loss = dfl(x, jnp.array([1.5, jnp.nan]))
    assert np.isfinite(loss[0]) and np.isnan(loss[1])
    assert np.isnan(jax_dfl.two_hot(jnp.nan, 4)).all()


def test_huge_logits_are_finite():
    rng = np.random.default_rng(10)
    logits = rng.choice([-1e4, 1e4, 0.0, 5e3], size=(20, 8)).astype(np.float32)
    targets = rng.uniform(0, 7, size=20).astype(np.float32)
    loss = dfl(logits, targets)
    grad = jax.grad(lambda x: dfl(x, targets).sum())(jnp.asarray(logits))
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, ref.dfl(logits, targets), rtol=1e-6)
    assert np.isfinite(jax_dfl.decode(logits)).all()


def test_zero_probability_bins_with_zero_weight_are_fine():
    # -inf logits on bins whose target weight is 0 must not produce 0 * inf = NaN.
    logits = jnp.log(jnp.array([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    loss = dfl(logits, jnp.array([2.0, 3.0]))
    np.testing.assert_allclose(loss, [0.0, 0.0], atol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_logits_compute_in_float32(dtype):
    logits, targets = _random_case(11, (16,), 17)
    x = jnp.asarray(logits, dtype)
    loss = dfl(x, targets.astype(np.float32))
    assert loss.dtype == jnp.float32
    # Reference on the same rounded logits: the only error left is float32's.
    np.testing.assert_allclose(loss, ref.dfl(np.asarray(x, np.float64), targets), rtol=1e-5)
    grad = jax.grad(lambda x: dfl(x, targets.astype(np.float32)).sum())(x)
    assert grad.dtype == dtype
    assert jax_dfl.decode(x).dtype == jnp.float32


# --- bad input --------------------------------------------------------------------------


def test_trailing_unit_axis_target_is_rejected_naming_both_shapes():
    with pytest.raises(ValueError, match=r"targets.shape=\(8, 1\).*logits.shape=\(8, 17\)"):
        dfl(jnp.zeros((8, 17)), jnp.zeros((8, 1)))
    with pytest.raises(ValueError, match=r"targets\.shape"):
        jax.jit(dfl)(jnp.zeros((8, 17)), jnp.zeros((8,)).reshape(1, 8))
    with pytest.raises(ValueError, match=r"targets\.shape"):
        dfl(jnp.zeros((8, 17)), jnp.zeros(()))


def test_bad_dtypes_and_bins_are_rejected():
    with pytest.raises(TypeError, match="logits must be floating"):
        dfl(jnp.zeros((3, 5), jnp.int32), jnp.zeros(3))
    with pytest.raises(TypeError, match="targets must be real"):
        dfl(jnp.zeros((3, 5)), jnp.zeros(3, jnp.complex64))
    with pytest.raises(TypeError, match="targets must be real"):
        dfl(jnp.zeros((3, 5)), jnp.zeros(3, bool))
    with pytest.raises(
        ValueError, match=r"logits.shape=\(3, 1\).*logits.shape\[1\] is 1, but num_bins must be >= 2"
    ):
        dfl(jnp.zeros((3, 1)), jnp.zeros(3))
    with pytest.raises(
        ValueError, match=r"logits.shape=\(\) does not match \(\.\.\., num_bins\): it has 0 axes"
    ):
        dfl(jnp.zeros(()), jnp.zeros(()))
    with pytest.raises(ValueError, match="num_bins must be >= 2"):
        jax_dfl.two_hot(0.5, 1)
    with pytest.raises(ValueError, match="num_bins must be a Python int"):
        jax_dfl.two_hot(0.5, 4.0)
    with pytest.raises(TypeError, match="logits must be floating"):
        jax_dfl.decode(jnp.arange(4))


def test_bad_where_is_rejected():
    with pytest.raises(ValueError, match=r"where.shape=\(3, 1\)"):
        dfl(jnp.zeros((3, 5)), jnp.zeros(3), where=jnp.ones((3, 1), bool))
    with pytest.raises(TypeError, match="boolean"):
        dfl(jnp.zeros((3, 5)), jnp.zeros(3), where=jnp.ones(3))


def test_validate_targets_under_checkify():
    def loss_fn(logits, targets, where=None):
        jax_dfl.validate_targets(targets, logits.shape[-1], where=where)
        return dfl(logits, targets, where=where).mean()

    checked = checkify.checkify(jax.jit(loss_fn))
    x = jnp.zeros((3, 5))
    err, value = checked(x, jnp.array([0.0, 2.5, 4.0]))
    assert err.get() is None and np.isfinite(value)
    err, _ = checked(x, jnp.array([-0.5, 2.5, 7.25]))
    assert "min=-0.5, max=7.25" in err.get() and "[0, 4]" in err.get()
    with pytest.raises(checkify.JaxRuntimeError):
        err.throw()
    err, _ = checked(x, jnp.array([1.0, jnp.nan, 2.0]))
    assert "min=nan" in err.get()
    # Integer targets are checked as numbers too.
    err, _ = checked(x, jnp.array([0, 2, 9]))
    assert "min=0.0, max=9.0" in err.get()
    # Masked-out targets are not checked.
    err, _ = checked(x, jnp.array([1.0, 99.0, 2.0]), jnp.array([True, False, True]))
    assert err.get() is None


# --- properties -------------------------------------------------------------------------

# A few fixed shapes, so that eager dispatch reuses compiled kernels across examples.
_bins = st.sampled_from([2, 3, 7, 17])


@st.composite
def _logits_and_targets(draw):
    num_bins = draw(_bins)
    rows = 3
    logits = draw(hnp.arrays(np.float64, (rows, num_bins), elements=st.floats(-30, 30, width=64)))
    targets = draw(hnp.arrays(np.float64, (rows,), elements=st.floats(0, num_bins - 1, width=64)))
    return logits, targets


@SETTINGS
@given(_logits_and_targets(), st.floats(-1e3, 1e3))
def test_property_shift_invariance(case, shift):
    logits, targets = case
    with jax.enable_x64(True):
        np.testing.assert_allclose(dfl(logits + shift, targets), dfl(logits, targets), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(
            jax_dfl.decode(logits + shift), jax_dfl.decode(logits), rtol=1e-9, atol=1e-9
        )


@SETTINGS
@given(_logits_and_targets())
def test_property_loss_bounded_by_entropy_with_equality_at_two_hot(case):
    logits, targets = case
    with jax.enable_x64(True):
        target_dist = np.asarray(jax_dfl.two_hot(targets, logits.shape[-1]))
        floor = ref.entropy(target_dist)
        assert (np.asarray(dfl(logits, targets)) >= floor - 1e-9).all()
        with np.errstate(divide="ignore"):
            at_optimum = dfl(np.log(target_dist), targets)
        np.testing.assert_allclose(at_optimum, floor, atol=1e-12)


@SETTINGS
@given(_logits_and_targets())
def test_property_decode_of_two_hot_is_the_target(case):
    logits, targets = case
    with jax.enable_x64(True), np.errstate(divide="ignore"):
        logits_at_target = np.log(np.asarray(jax_dfl.two_hot(targets, logits.shape[-1])))
        np.testing.assert_allclose(jax_dfl.decode(logits_at_target), targets, atol=1e-12)


@SETTINGS
@given(_logits_and_targets())
def test_property_gradient_rows_sum_to_zero(case):
    logits, targets = case
    with jax.enable_x64(True):
        grad = jax.grad(lambda x: dfl(x, targets).sum())(jnp.asarray(logits))
        np.testing.assert_allclose(grad.sum(axis=-1), 0.0, atol=1e-12)
