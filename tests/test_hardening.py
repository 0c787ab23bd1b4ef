"""Regression tests for the defects found by the adversarial sweep of the public API (issue 8)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jax_dfl
from tests import reference as ref

dfl = jax_dfl.distribution_focal_loss
LOG_BINS = np.array([0, 0.25, 0.5, 1, 2, 4, 8, 16], np.float64)


def _case(seed=0, rows=4, bins=8):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(rows, bins))
    # Away from integers and bin values: the loss has kinks in y there.
    targets = np.array([0.3, 2.6, 4.45, 6.7])[:rows]
    return logits, targets


# --- 1. second derivatives that move the targets ------------------------------------------


@pytest.mark.parametrize("loss", [jax_dfl.distribution_focal_loss, jax_dfl.distribution_focal_kl])
def test_second_derivatives_in_the_targets(loss):
    logits, targets = _case()
    with jax.enable_x64(True):
        x, y = jnp.asarray(logits), jnp.asarray(targets)

        def f(x, y):
            return loss(x, y).sum()

        # The loss is piecewise linear in y: its second derivative is 0 almost everywhere.
        np.testing.assert_array_equal(jax.hessian(f, argnums=1)(x, y), 0.0)
        np.testing.assert_array_equal(jax.grad(lambda y: jax.grad(f, argnums=1)(x, y).sum())(y), 0.0)
        jvp2 = jax.jvp(
            lambda y: jax.jvp(lambda y: f(x, y), (y,), (jnp.ones_like(y),))[1], (y,), (jnp.ones_like(y),)
        )
        assert jvp2[1] == 0.0
        # The mixed derivative d/dy (d loss/dx) = -d two_hot / dy, by finite differences of two_hot.
        mixed = jax.jacfwd(jax.grad(f, argnums=0), argnums=1)(x, y)  # (rows, bins, rows)
        h = 1e-6
        d_two_hot = (ref.two_hot(targets + h, 8) - ref.two_hot(targets - h, 8)) / (2 * h)
        for r in range(len(targets)):
            np.testing.assert_allclose(mixed[r, :, r], -d_two_hot[r], atol=1e-8)
        np.testing.assert_allclose(
            mixed.sum(), 0.0, atol=1e-9
        )  # rows of d two_hot/dy sum to 0: the mass only moves
        if loss is dfl:
            # (The KL form's entropy is a constant of the target by design: its
            # target gradient is DFL's, so finite differences of its value differ.)
            check_grads(lambda y: f(x, y), (y,), order=2, modes=["fwd", "rev"], eps=1e-6)


def test_second_derivatives_in_the_targets_with_bin_values():
    logits, _ = _case()
    targets = np.array([0.3, 1.5, 5.0, 12.0])
    with jax.enable_x64(True):
        x, y = jnp.asarray(logits), jnp.asarray(targets)

        def f(x, y):
            return dfl(x, y, bin_values=LOG_BINS).sum()

        np.testing.assert_array_equal(jax.hessian(f, argnums=1)(x, y), 0.0)
        mixed = jax.jacfwd(jax.grad(f, argnums=0), argnums=1)(x, y)
        h = 1e-6
        d_two_hot = (
            ref.two_hot_values(targets + h, LOG_BINS) - ref.two_hot_values(targets - h, LOG_BINS)
        ) / (2 * h)
        for r in range(len(targets)):
            np.testing.assert_allclose(mixed[r, :, r], -d_two_hot[r], atol=1e-6)
        check_grads(lambda x, y: f(x, y), (x, y), order=2, modes=["fwd", "rev"], eps=1e-6)


# --- 2. decode_boxes with a stride column -------------------------------------------------


def test_decode_boxes_rejects_strides_that_would_broadcast():
    logits = jnp.zeros((6, 4, 9))
    points = jnp.ones((6, 2))
    with pytest.raises(ValueError, match=r"strides.shape=\(6, 1\)"):
        jax_dfl.decode_boxes(logits, points, jnp.full((6, 1), 8.0))
    with pytest.raises(ValueError, match=r"strides.shape=\(3,\)"):
        jax_dfl.decode_boxes(logits, points, jnp.full((3,), 8.0))
    assert jax_dfl.decode_boxes(logits, points, jnp.full((6,), 8.0)).shape == (6, 4)
    assert jax_dfl.decode_boxes(logits, points, 8).shape == (6, 4)
    # Points shared by a batch of images: (A, 2) against (B, A, 4, K) logits.
    assert jax_dfl.decode_boxes(jnp.zeros((3, 6, 4, 9)), points, jnp.full((6,), 8.0)).shape == (3, 6, 4)


# --- 3. masked garbage in QFL and distillation ---------------------------------------------


def test_quality_focal_loss_masked_garbage_gives_zero_gradient():
    x = jnp.array([0.5, jnp.inf, -jnp.inf, jnp.nan, 1.0])
    q = jnp.array([0.3, 0.5, jnp.nan, 0.2, jnp.inf])
    m = jnp.array([True, False, False, False, False])
    value = jax_dfl.quality_focal_loss(x, q, where=m)
    gx, gq = jax.grad(lambda x, q: jax_dfl.quality_focal_loss(x, q, where=m).sum(), argnums=(0, 1))(x, q)
    np.testing.assert_array_equal(value[1:], 0.0)
    np.testing.assert_array_equal(gx[1:], 0.0)
    np.testing.assert_array_equal(gq[1:], 0.0)
    assert value[0] == pytest.approx(float(ref.quality_focal(0.5, 0.3, 2.0)), rel=1e-6)
    assert np.isfinite(gx[0]) and gx[0] != 0


def test_distillation_masked_nan_row_gives_zero_gradient():
    s = jnp.array([[0.0, 1.0, 2.0], [jnp.nan, 0.0, 1.0]])
    t = jnp.array([[1.0, 0.0, 2.0], [0.0, jnp.nan, jnp.inf]])
    m = jnp.array([True, False])
    value = jax_dfl.distribution_distillation_loss(s, t, where=m)
    grad = jax.grad(lambda s: jax_dfl.distribution_distillation_loss(s, t, where=m).sum())(s)
    assert value[1] == 0 and np.isfinite(value[0]) and value[0] > 0
    np.testing.assert_array_equal(grad[1], 0.0)
    assert np.isfinite(grad).all() and np.abs(grad[0]).max() > 0


# --- 4. a list as the KL form's mask ---------------------------------------------------------


def test_kl_accepts_a_list_mask_like_dfl():
    x, y = jnp.zeros((3, 5)), jnp.array([1.5, 2.0, 3.3])
    where = [True, False, True]
    kl = jax_dfl.distribution_focal_kl(x, y, where=where)
    expected = dfl(x, y, where=where) - jnp.where(jnp.array(where), jax_dfl.two_hot_entropy(y, 5), 0)
    np.testing.assert_allclose(kl, expected, atol=1e-6)
    assert kl[1] == 0


# --- 5. precision at a large common offset -------------------------------------------------


@pytest.mark.parametrize("offset", [0.0, 10.0, 1e4, 1e6, 1e30])
def test_precision_at_any_common_offset(offset):
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(256, 17)) + offset).astype(np.float32)
    y = rng.uniform(0, 16, 256).astype(np.float32)
    # The reference sees the same float32 inputs, so only the loss's own rounding is measured.
    expected = ref.dfl(x.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(dfl(x, y), expected, atol=2e-6, rtol=1e-6)
    kl_expected = expected - ref.entropy(ref.two_hot(y.astype(np.float64), 17))
    np.testing.assert_allclose(jax_dfl.distribution_focal_kl(x, y), kl_expected, atol=2e-6)


def test_kl_at_its_optimum_is_zero_and_never_negative_at_large_offsets():
    y = np.array([2.37, 4.8, 7.0, 0.5], np.float32)
    with np.errstate(divide="ignore"):
        at_optimum = np.log(ref.two_hot(y, 9)).astype(np.float32)
    np.testing.assert_allclose(jax_dfl.distribution_focal_kl(at_optimum, y), 0.0, atol=1e-6)
    for offset in (1e4, 1e6):
        # float32 rounds log(w) + offset, so the shifted input is near, not at, the
        # optimum: compare with float64 on the same rounded inputs, and KL >= 0.
        x = at_optimum + np.float32(offset)
        kl = np.asarray(jax_dfl.distribution_focal_kl(x, y))
        expected = ref.dfl(x.astype(np.float64), y) - ref.entropy(ref.two_hot(y.astype(np.float64), 9))
        np.testing.assert_allclose(kl, expected, atol=2e-6)
        assert (kl >= -1e-6).all()


def test_uniform_huge_logits_give_log_num_bins():
    for value in (1e30, -1e30, 3e38):
        loss = dfl(jnp.full((2, 17), value, jnp.float32), jnp.array([3.3, 16.0]))
        np.testing.assert_allclose(loss, np.log(17), rtol=1e-6)


def test_non_finite_logits_give_nan_not_a_number():
    x = jnp.array([[0.0, jnp.inf, 1.0], [jnp.nan, 0.0, 1.0], [0.0, 1.0, 2.0]])
    loss = dfl(x, jnp.array([1.0, 1.0, 1.0]))
    assert np.isnan(loss[0]) and np.isnan(loss[1]) and np.isfinite(loss[2])


# --- 6. non-finite bin values --------------------------------------------------------------


@pytest.mark.parametrize("bad", [[0, 1, 2, np.inf], [0, np.nan, 2, 3], [-np.inf, 0, 1, 2]])
def test_non_finite_bin_values_are_rejected(bad):
    for fn in (
        lambda b: dfl(jnp.zeros((2, 4)), jnp.ones(2), bin_values=b),
        lambda b: jax_dfl.two_hot(1.0, 4, bin_values=b),
        lambda b: jax_dfl.decode(jnp.zeros(4), bin_values=b),
    ):
        with pytest.raises(ValueError, match="bin_values must be finite"):
            fn(bad)


# --- 7. traced hyper-parameters --------------------------------------------------------------


def test_distillation_temperature_may_be_traced_and_swept():
    s, t = jax.random.normal(jax.random.key(0), (2, 3, 9))
    temps = jnp.array([0.5, 1.0, 10.0])
    swept = jax.jit(jax.vmap(lambda T: jax_dfl.distribution_distillation_loss(s, t, temperature=T)))(temps)
    for i, T in enumerate([0.5, 1.0, 10.0]):
        np.testing.assert_allclose(
            swept[i], jax_dfl.distribution_distillation_loss(s, t, temperature=T), rtol=1e-5
        )
    with pytest.raises(ValueError, match="temperature"):
        jax_dfl.distribution_distillation_loss(s, t, temperature=0.0)


def test_qfl_beta_may_be_traced():
    x, q = jnp.array([0.3, -1.0]), jnp.array([0.2, 0.0])
    got = jax.jit(lambda b: jax_dfl.quality_focal_loss(x, q, beta=b))(1.5)
    np.testing.assert_allclose(got, jax_dfl.quality_focal_loss(x, q, beta=1.5), rtol=1e-6)


def test_nan_target_gives_nan_target_gradient_unless_masked():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(3, 7)), jnp.float32)
    y = jnp.array([jnp.nan, 1.0, 2.5])
    grad = jax.grad(lambda t: dfl(x, t).sum())(y)
    assert np.isnan(grad[0]) and np.isfinite(grad[1:]).all()
    np.testing.assert_allclose(grad[2], x[2, 2] - x[2, 3], rtol=1e-6)
    masked = jax.grad(lambda t: dfl(x, t, where=jnp.array([False, True, True])).sum())(y)
    assert masked[0] == 0 and np.isfinite(masked).all()
