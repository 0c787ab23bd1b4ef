"""A wider seeded sweep (issue 17): hyper-parameters at their edges, non-finite values in every
input and in masked rows, under jit, vmap and grad, against float64 references.

Each test is a small grid, not a random search, so that the suite's time stays where it was.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_dfl
from tests import reference as ref
from tests import reference_detection as ref_det

BAD = [np.nan, np.inf, -np.inf]


# --- hyper-parameters at their edges, against float64 ------------------------------------------


@pytest.mark.parametrize("num_bins", [2, 3, 17])
def test_dfl_and_two_hot_at_the_end_points_and_the_smallest_num_bins(num_bins):
    rng = np.random.default_rng(num_bins)
    logits = rng.normal(scale=3.0, size=(6, num_bins))
    # The boundary values the docs allow: 0, num_bins - 1 exactly, and just inside both.
    targets = np.array([0.0, num_bins - 1.0, 1e-6, num_bins - 1 - 1e-6, 0.5, (num_bins - 1) / 2])
    np.testing.assert_allclose(
        jax_dfl.two_hot(targets.astype(np.float32), num_bins), ref.two_hot(targets, num_bins), atol=1e-6
    )
    got = jax.jit(jax_dfl.distribution_focal_loss)(logits.astype(np.float32), targets.astype(np.float32))
    np.testing.assert_allclose(got, ref.dfl(logits, targets), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 5, 9])
def test_distribution_stats_k_from_one_to_num_bins(k):
    logits = np.random.default_rng(k).normal(scale=2.0, size=(3, 9))
    stats = jax_dfl.distribution_stats(logits.astype(np.float32), k=k)
    p = ref.softmax(logits)
    np.testing.assert_allclose(stats.topk_probs, -np.sort(-p, axis=-1)[:, :k], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats.entropy, ref.entropy(p), rtol=1e-5)
    np.testing.assert_allclose(stats.mean, ref.decode(logits), rtol=1e-5)


@pytest.mark.parametrize("sigma", [1e-3, 0.75, 50.0])
def test_hl_gauss_rows_sum_to_one_at_extreme_widths(sigma):
    targets = np.array([0.0, 3.3, 8.0], np.float32)
    probs = np.asarray(jax_dfl.hl_gauss(targets, 9, sigma=sigma))
    assert np.isfinite(probs).all() and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("iou_threshold", [0.0, 1.0])
@pytest.mark.parametrize("max_detections", [1, 7])
def test_nms_at_threshold_and_size_edges(iou_threshold, max_detections):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 20, (5, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 10, (5, 2))], -1).astype(np.float32)
    scores = rng.permutation(5).astype(np.float32) / 5
    keep, valid = jax.jit(
        lambda b, s: jax_dfl.non_max_suppression(
            b, s, iou_threshold=iou_threshold, max_detections=max_detections, pre_nms_top_k=5
        )
    )(boxes, scores)
    order = list(np.argsort(-scores, kind="stable"))
    expected = []  # float64 greedy NMS
    for i in order:
        if all(ref_det.iou_value(boxes[i], boxes[j]) <= iou_threshold for j in expected):
            expected.append(i)
    expected = expected[:max_detections]
    assert list(np.asarray(keep)[np.asarray(valid)]) == expected


@pytest.mark.parametrize(("top_k", "alpha", "beta"), [(1, 1.0, 6.0), (12, 0.0, 0.0), (12, 0.5, 6.0)])
def test_assigner_at_top_k_and_exponent_edges(top_k, alpha, beta):
    rng = np.random.default_rng(top_k)
    points = np.asarray(jax_dfl.anchor_points([(3, 4)], [8])[0], np.float64)
    gt = np.array([[0.0, 0.0, 20.0, 20.0], [10.0, 4.0, 30.0, 24.0]])
    pred = gt[rng.integers(0, 2, 12)] + rng.normal(0, 2, (12, 4))
    scores = rng.uniform(0.1, 1, (12, 2))
    args = (scores, pred, points, np.array([0, 1]), gt, np.array([True, True]))
    expected = ref_det.tal(*args, top_k=top_k, alpha=alpha, beta=beta, iou="ciou")
    got = jax_dfl.task_aligned_assign(
        pred_boxes=pred.astype(np.float32), pred_scores=scores.astype(np.float32), points=points,
        gt_boxes=gt, gt_labels=np.array([0, 1]), gt_mask=np.array([True, True]),
        top_k=top_k, alpha=alpha, beta=beta,
    )  # fmt: skip
    np.testing.assert_array_equal(got.foreground, expected[3])
    np.testing.assert_allclose(got.scores, expected[2], rtol=2e-5, atol=1e-7)


# --- non-finite values: separately, in masked rows, under vmap and grad -------------------------


@pytest.mark.parametrize("bad", BAD)
def test_dfl_non_finite_target_rows_masked_under_vmap_and_grad(bad):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 4, 7)).astype(np.float32)
    targets = rng.uniform(0, 6, (3, 4)).astype(np.float32)
    where = np.ones((3, 4), bool)
    targets[1, 2], where[1, 2] = bad, False

    def loss(x, y, w):
        return jnp.sum(jax_dfl.distribution_focal_loss(x, y, where=w))

    value, (g_x, g_y) = jax.vmap(jax.value_and_grad(loss, argnums=(0, 1)))(logits, targets, where)
    assert np.isfinite(value).all() and np.isfinite(g_x).all() and np.isfinite(g_y).all()
    assert (g_x[1, 2] == 0).all() and g_y[1, 2] == 0
    clean = ref.dfl(logits[0].astype(np.float64), targets[0].astype(np.float64)).sum()
    np.testing.assert_allclose(value[0], clean, rtol=1e-5)
    # Unmasked, the same value is non-finite: nothing clips it into a number.
    assert not np.isfinite(jax_dfl.distribution_focal_loss(logits[1], targets[1])[2])


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("loss", [jax_dfl.box_iou, jax_dfl.giou_loss, jax_dfl.diou_loss, jax_dfl.ciou_loss])
def test_box_functions_give_nan_for_any_non_finite_coordinate_and_finite_grads_elsewhere(loss, bad):
    a = np.array([[0.0, 0, 4, 4], [1, 1, 5, 6]], np.float32)
    b = np.array([[0.0, 0, 3, 4], [2, 1, 5, 5]], np.float32)
    for side in range(4):
        dirty = a.copy()
        dirty[0, side] = bad
        out = np.asarray(jax.jit(loss)(dirty, b))
        assert np.isnan(out[0]), (side, out)
        np.testing.assert_allclose(out[1], np.asarray(loss(a, b))[1])
    grad = jax.grad(lambda x: jnp.sum(loss(x, b)[1:]))(dirty)
    assert np.isfinite(grad[1]).all()


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("where", ["point_strides", "normalizer", "points"])
def test_yolo_box_loss_non_finite_geometry_gives_nan_unless_background(bad, where):
    box = np.array([[0.0, 0.0, 24.0, 24.0], [0.0, 0.0, 24.0, 24.0]], np.float32)
    kw = dict(point_strides=np.array([8.0, 8.0], np.float32), normalizer=np.float32(1.0))
    args = dict(points=np.array([[8.0, 8.0], [8.0, 8.0]], np.float32))
    logits = np.zeros((2, 4, 4), np.float32)
    scores = np.array([[0.5], [0.5]], np.float32)
    fg = np.array([True, False])
    if where == "normalizer":
        kw["normalizer"] = np.float32(bad)
    else:
        target = kw if where == "point_strides" else args
        target[where] = target[where].copy()
        target[where][0] = bad
    out = jax_dfl.yolo_box_loss(logits, box, args["points"], box, scores, fg, **kw)
    assert not all(np.isfinite(x) for x in out)
    if where != "normalizer":  # the same garbage on the background point changes nothing
        for name in (where,):
            target = kw if name == "point_strides" else args
            target[name] = target[name][::-1].copy()
        out = jax_dfl.yolo_box_loss(logits, box, args["points"], box, scores, fg, **kw)
        assert all(np.isfinite(x) for x in out)


def test_assigner_vmapped_over_images_with_non_finite_points_in_one():
    points = np.asarray(jax_dfl.anchor_points([(2, 2)], [8])[0])
    gt = np.array([[0.0, 0.0, 16.0, 16.0]], np.float32)
    scores = np.full((2, 4, 1), 0.5, np.float32)
    scores[1, 0, 0] = np.nan

    def assign(s):
        return jax_dfl.task_aligned_assign(
            pred_boxes=np.tile(gt, (4, 1)), pred_scores=s, points=points,
            gt_boxes=gt, gt_labels=np.array([0]), gt_mask=np.array([True]), top_k=2,
        ).foreground  # fmt: skip

    fg = np.asarray(jax.jit(jax.vmap(assign))(scores))
    np.testing.assert_array_equal(fg, [[True, True, False, False], [False, True, True, False]])
