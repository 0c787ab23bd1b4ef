"""Non-uniform bins, the zero-at-optimum DFL, QFL, distillation, statistics and boxes."""

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

LOG_BINS = np.array([0.0, 1, 2, 4, 8, 16])


# --- non-uniform bins ---------------------------------------------------------------------


def test_issue_example_log_spaced_two_hot():
    np.testing.assert_allclose(jax_dfl.two_hot(6.0, 6, bin_values=LOG_BINS), [0, 0, 0, 0.5, 0.5, 0])
    np.testing.assert_allclose(jax_dfl.two_hot(16.0, 6, bin_values=LOG_BINS), [0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(jax_dfl.two_hot(-1.0, 6, bin_values=LOG_BINS), [1, 0, 0, 0, 0, 0])


def test_non_uniform_two_hot_loss_and_decode_match_brute_force():
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.uniform(0.1, 3.0, size=9))
    targets = rng.uniform(values[0] - 1, values[-1] + 1, size=(5, 4))
    logits = rng.normal(scale=2.0, size=(5, 4, 9))
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            jax_dfl.two_hot(targets, 9, bin_values=values), ref.two_hot_values(targets, values), atol=1e-12
        )
        expected = ref.cross_entropy(ref.two_hot_values(targets, values), logits)
        np.testing.assert_allclose(
            jax_dfl.distribution_focal_loss(logits, targets, bin_values=values), expected, rtol=1e-12
        )
        np.testing.assert_allclose(
            jax_dfl.decode(logits, bin_values=values), (ref.softmax(logits) * values).sum(-1), rtol=1e-12
        )


def test_non_uniform_gradients():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 6))
    targets = np.array([0.5, 1.5, 3.0, 5.0, 12.0, 15.9])
    with jax.enable_x64(True):
        g_x, g_y = jax.grad(
            lambda x, y: jax_dfl.distribution_focal_loss(x, y, bin_values=LOG_BINS).sum(), argnums=(0, 1)
        )(logits, targets)
        np.testing.assert_allclose(
            g_x, ref.softmax(logits) - ref.two_hot_values(targets, LOG_BINS), atol=1e-12
        )
        k = np.searchsorted(LOG_BINS, targets, side="right") - 1
        rows = np.arange(6)
        expected = (logits[rows, k] - logits[rows, k + 1]) / (LOG_BINS[k + 1] - LOG_BINS[k])
        np.testing.assert_allclose(g_y, expected, rtol=1e-10)
        targets_off_grid = np.array([0.5, 1.5, 3.0, 5.0, 12.0, 15.9])
        check_grads(
            lambda x, y: jax_dfl.distribution_focal_loss(x, y, bin_values=LOG_BINS),
            (logits, targets_off_grid),
            order=2,
            modes=["fwd", "rev"],
            eps=1e-6,
        )
        check_grads(lambda x: jax_dfl.decode(x, bin_values=LOG_BINS), (logits,), order=1, eps=1e-6)


def test_integer_bin_values_equal_the_default_path():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(7, 5)).astype(np.float32)
    targets = rng.uniform(-1, 5, size=7).astype(np.float32)
    bins = np.arange(5.0)
    np.testing.assert_allclose(
        jax_dfl.distribution_focal_loss(logits, targets, bin_values=bins),
        jax_dfl.distribution_focal_loss(logits, targets),
        rtol=1e-6,
    )
    np.testing.assert_allclose(jax_dfl.decode(logits, bin_values=bins), jax_dfl.decode(logits), rtol=1e-6)


def test_non_uniform_under_jit_with_traced_bin_values():
    f = jax.jit(lambda x, y, v: jax_dfl.distribution_focal_loss(x, y, bin_values=v))
    x = jnp.zeros((3, 6))
    y = jnp.array([0.5, 6.0, 16.0])
    np.testing.assert_allclose(
        f(x, y, LOG_BINS.astype(np.float32)), jax_dfl.distribution_focal_loss(x, y, bin_values=LOG_BINS)
    )


def test_bad_bin_values_are_rejected():
    with pytest.raises(ValueError, match="strictly increasing"):
        jax_dfl.two_hot(1.0, 4, bin_values=[0, 2, 2, 3])
    with pytest.raises(ValueError, match=r"bin_values.shape=\(3,\).*num_bins is 4 from logits.shape\[1\]"):
        jax_dfl.distribution_focal_loss(jnp.zeros((2, 4)), jnp.zeros(2), bin_values=[0, 1, 2])
    with pytest.raises(
        ValueError, match=r"bin_values.shape=\(2, 2\) does not match \(num_bins,\): it has 2 axes"
    ):
        jax_dfl.decode(jnp.zeros((2, 4)), bin_values=np.zeros((2, 2)))


def test_validate_targets_with_bin_values():
    def f(y):
        jax_dfl.validate_targets(y, 6, bin_values=LOG_BINS)
        return y.sum()

    err, _ = checkify.checkify(jax.jit(f))(jnp.array([0.5, 15.0]))
    assert err.get() is None
    err, _ = checkify.checkify(jax.jit(f))(jnp.array([0.5, 17.0]))
    assert "max=17.0" in err.get() and "16.0" in err.get()


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float64, (4,), elements=st.floats(0, 16, width=64)))
def test_property_decode_of_non_uniform_two_hot_is_the_target(targets):
    with jax.enable_x64(True), np.errstate(divide="ignore"):
        logits = np.log(np.asarray(jax_dfl.two_hot(targets, 6, bin_values=LOG_BINS)))
        np.testing.assert_allclose(jax_dfl.decode(logits, bin_values=LOG_BINS), targets, atol=1e-12)


# --- zero-at-optimum DFL --------------------------------------------------------------------


def test_two_hot_entropy_and_kl_form():
    assert jax_dfl.two_hot_entropy(4.8, 6) == pytest.approx(0.5004024, abs=1e-6)
    assert jax_dfl.two_hot_entropy(3.0, 6) == 0.0
    assert jax_dfl.two_hot_entropy(2.5, 6) == pytest.approx(math.log(2), rel=1e-6)
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(8, 7)).astype(np.float32)
    targets = rng.uniform(0, 6, size=8).astype(np.float32)
    kl = jax_dfl.distribution_focal_kl(logits, targets)
    t = ref.two_hot(targets, 7)
    np.testing.assert_allclose(kl, ref.kl(t, ref.softmax(logits)), rtol=1e-4, atol=1e-6)
    assert (np.asarray(kl) >= -1e-6).all()
    with np.errstate(divide="ignore"):
        at_optimum = jax_dfl.distribution_focal_kl(np.log(t), targets)
    np.testing.assert_allclose(at_optimum, 0.0, atol=1e-6)
    g_kl = jax.grad(lambda x: jax_dfl.distribution_focal_kl(x, targets).sum())(jnp.asarray(logits))
    np.testing.assert_allclose(g_kl, ref.softmax(logits) - t, atol=1e-6)
    mask = np.arange(8) % 2 == 0
    np.testing.assert_array_equal(jax_dfl.distribution_focal_kl(logits, targets, where=mask)[~mask], 0.0)


# --- QFL ---------------------------------------------------------------------------------


def test_quality_focal_loss_matches_brute_force():
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=4, size=(6, 5))
    q = rng.uniform(0, 1, size=(6, 5)) * (rng.uniform(size=(6, 5)) > 0.5)
    for beta in (2.0, 1.0, 0.5):
        with jax.enable_x64(True):
            np.testing.assert_allclose(
                jax_dfl.quality_focal_loss(logits, q, beta=beta),
                ref.quality_focal(logits, q, beta),
                rtol=1e-12,
            )
    np.testing.assert_allclose(
        jax_dfl.quality_focal_loss(logits.astype(np.float32), q.astype(np.float32)),
        ref.quality_focal(logits, q, 2.0),
        rtol=2e-5,
        atol=1e-6,
    )


def test_quality_focal_loss_huge_logits_and_gradients():
    logits = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=np.float32)
    q = np.array([0.0, 0.3, 0.5, 0.9, 1.0], dtype=np.float32)
    loss = jax_dfl.quality_focal_loss(logits, q)
    grad = jax.grad(lambda x: jax_dfl.quality_focal_loss(x, q).sum())(jnp.asarray(logits))
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, ref.quality_focal(logits, q, 2.0), rtol=1e-5)
    with jax.enable_x64(True):
        check_grads(
            lambda x: jax_dfl.quality_focal_loss(x, np.array([0.2, 0.0, 0.7])),
            (np.array([-1.5, 0.3, 2.0]),),
            order=2,
            modes=["fwd", "rev"],
            eps=1e-6,
        )


def test_quality_focal_loss_bad_input():
    with pytest.raises(ValueError, match=r"targets.shape=\(4, 1\)"):
        jax_dfl.quality_focal_loss(jnp.zeros((4, 3)), jnp.zeros((4, 1)))
    with pytest.raises(TypeError, match="floating"):
        jax_dfl.quality_focal_loss(jnp.zeros(3, jnp.int32), jnp.zeros(3))
    np.testing.assert_array_equal(
        jax_dfl.quality_focal_loss(jnp.ones(3), jnp.zeros(3), where=jnp.array([True, False, True]))[1], 0.0
    )


# --- distillation --------------------------------------------------------------------------


def test_distribution_distillation_loss():
    rng = np.random.default_rng(5)
    s = rng.normal(size=(4, 3, 9)).astype(np.float32)
    t = rng.normal(size=(4, 3, 9)).astype(np.float32)
    for temperature in (1.0, 10.0):
        got = jax_dfl.distribution_distillation_loss(s, t, temperature=temperature)
        expected = temperature**2 * ref.kl(ref.softmax(t / temperature), ref.softmax(s / temperature))
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(jax_dfl.distribution_distillation_loss(s, s), 0.0, atol=1e-6)
    g_s, g_t = jax.grad(
        lambda a, b: jax_dfl.distribution_distillation_loss(a, b, temperature=2.0).sum(), argnums=(0, 1)
    )(jnp.asarray(s), jnp.asarray(t))
    np.testing.assert_array_equal(g_t, 0.0)
    # d/ds of T^2 KL(p_t || softmax(s/T)) = T (softmax(s/T) - p_t).
    np.testing.assert_allclose(g_s, 2.0 * (ref.softmax(s / 2) - ref.softmax(t / 2)), atol=1e-5)
    with pytest.raises(ValueError, match="teacher"):
        jax_dfl.distribution_distillation_loss(s, t[..., :5])
    with pytest.raises(ValueError, match="temperature"):
        jax_dfl.distribution_distillation_loss(s, t, temperature=0.0)


# --- distribution statistics ---------------------------------------------------------------


def test_distribution_stats_match_brute_force():
    rng = np.random.default_rng(6)
    logits = rng.normal(scale=2, size=(3, 4, 17))
    with jax.enable_x64(True):
        stats = jax_dfl.distribution_stats(logits, k=4)
    p = ref.softmax(logits)
    top = -np.sort(-p, axis=-1)[..., :4]
    np.testing.assert_allclose(stats.topk_probs, top, rtol=1e-12)
    np.testing.assert_allclose(stats.topk_mean, top.mean(-1), rtol=1e-12)
    np.testing.assert_allclose(stats.mean, ref.decode(logits), rtol=1e-12)
    var = (p * (np.arange(17) - ref.decode(logits)[..., None]) ** 2).sum(-1)
    np.testing.assert_allclose(stats.variance, var, rtol=1e-10)
    np.testing.assert_allclose(stats.entropy, ref.entropy(p), rtol=1e-12)
    uniform = jax_dfl.distribution_stats(jnp.zeros(8), k=2)
    assert uniform.entropy == pytest.approx(math.log(8), rel=1e-6)
    assert uniform.variance == pytest.approx((8**2 - 1) / 12, rel=1e-6)
    log_bins = jax_dfl.distribution_stats(jnp.zeros(6), bin_values=LOG_BINS)
    assert log_bins.mean == pytest.approx(LOG_BINS.mean(), rel=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        jax_dfl.distribution_stats(jnp.zeros(6), k=7)


# --- boxes ----------------------------------------------------------------------------------


def test_bbox_distance_round_trip_and_broadcast():
    rng = np.random.default_rng(7)
    points = rng.uniform(0, 64, size=(10, 2)).astype(np.float32)
    boxes = np.concatenate(
        [points - rng.uniform(0, 9, (3, 10, 2)), points + rng.uniform(0, 9, (3, 10, 2))], -1
    )
    d = jax_dfl.bbox2distance(points, boxes)
    assert d.shape == (3, 10, 4) and (np.asarray(d) >= 0).all()
    np.testing.assert_allclose(jax_dfl.distance2bbox(points, d), boxes, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match=r"boxes.shape\[2\] is 3, not 4"):
        jax_dfl.bbox2distance(points, boxes[..., :3])
    with pytest.raises(ValueError, match=r"points.shape\[2\] is 4, not 2"):
        jax_dfl.distance2bbox(boxes, d)


def test_giou_matches_brute_force():
    rng = np.random.default_rng(8)
    a = (
        np.sort(rng.uniform(0, 10, size=(50, 2, 2)), axis=1)
        .transpose(0, 2, 1)
        .reshape(50, 4)[:, [0, 2, 1, 3]]
    )
    b = (
        np.sort(rng.uniform(0, 10, size=(50, 2, 2)), axis=1)
        .transpose(0, 2, 1)
        .reshape(50, 4)[:, [0, 2, 1, 3]]
    )
    expected = np.array([1 - ref.giou(x, y) for x, y in zip(a, b, strict=True)])
    with jax.enable_x64(True):
        # eps floors the denominators (it is not added): exact for these boxes.
        np.testing.assert_allclose(jax_dfl.giou_loss(a, b), expected, rtol=1e-10)
    np.testing.assert_allclose(
        jax_dfl.giou_loss(a.astype(np.float32), b.astype(np.float32)), expected, atol=1e-5
    )
    same = jnp.array([1.0, 2.0, 3.0, 5.0])
    assert jax_dfl.giou_loss(same, same) == pytest.approx(0.0, abs=1e-6)
    far = jax_dfl.giou_loss(jnp.array([0.0, 0, 1, 1]), jnp.array([1000.0, 1000, 1001, 1001]))
    assert 1.99 < far <= 2.0
    assert jax_dfl.box_iou(same, same) == pytest.approx(1.0, abs=1e-6)


def test_giou_degenerate_boxes_have_finite_gradients():
    boxes = jnp.array([[2.0, 2, 2, 2], [0, 0, 0, 5], [1, 1, 3, 3], [0, 0, 0, 0]])
    targets = jnp.array([[2.0, 2, 2, 2], [1, 1, 4, 4], [0, 0, 0, 0], [0, 0, 0, 0]])
    loss = jax_dfl.giou_loss(boxes, targets)
    g = jax.grad(lambda b: jax_dfl.giou_loss(b, targets).sum())(boxes)
    assert np.isfinite(loss).all() and np.isfinite(g).all()


def test_decode_boxes_one_call():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(5, 4, 17)).astype(np.float32)
    points = rng.uniform(0, 64, size=(5, 2)).astype(np.float32)
    strides = np.array([8.0, 8, 16, 16, 32], np.float32)
    boxes = jax_dfl.decode_boxes(logits, points, strides)
    d = ref.decode(logits) * strides[:, None]
    expected = np.concatenate([points - d[:, :2], points + d[:, 2:]], -1)
    np.testing.assert_allclose(boxes, expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(\.\.\., \*P, 4, num_bins\): logits.shape\[1\] is 3, not 4"):
        jax_dfl.decode_boxes(logits[:, :3], points, strides)
