"""DIoU/CIoU/pairwise IoU, anchor points, the task-aligned assigner and YOLOv8's box loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from jax_dfl.assignment import Assignment
from jax_dfl.assignment import task_aligned_assign as _task_aligned_assign
from jax_dfl.boxes import anchor_points, ciou_loss, diou_loss, pairwise_iou
from jax_dfl.yolo import validate_foreground, yolo_box_loss
from tests import reference_detection as ref


def task_aligned_assign(scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask, **kw):
    """The assigner in the order of the references (ultralytics'), through its keyword-only names."""
    return _task_aligned_assign(
        pred_boxes=pred_boxes, pred_scores=scores, points=points,
        gt_boxes=gt_boxes, gt_labels=gt_labels, gt_mask=gt_mask, **kw,
    )  # fmt: skip


def random_boxes(rng, n, scale=100.0, min_side=0.5):
    xy = rng.uniform(0, scale, size=(n, 2))
    wh = rng.uniform(min_side, scale / 2, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=-1)


# --- DIoU / CIoU / pairwise -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["diou", "ciou"])
def test_paired_losses_match_reference(kind):
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 64), random_boxes(rng, 64)
    b[:8] = a[:8] + rng.uniform(-1, 1, size=(8, 4))  # near-identical pairs
    b[8:12] = a[8:12]  # identical: loss 0
    fn = diou_loss if kind == "diou" else ciou_loss
    expected = 1 - ref.paired(a, b, kind)
    with jax.enable_x64(True):
        np.testing.assert_allclose(fn(a, b), expected, rtol=1e-12, atol=1e-14)
    got = fn(a.astype(np.float32), b.astype(np.float32))
    assert got.dtype == jnp.float32 and got.shape == (64,)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    np.testing.assert_allclose(got[8:12], 0.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_pairwise_matches_reference(kind):
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 7), random_boxes(rng, 5)
    expected = np.array([[ref.iou_value(x, y, kind) for y in b] for x in a])
    with jax.enable_x64(True):
        got = pairwise_iou(a, b, kind=kind)
        assert got.shape == (7, 5)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pairwise_iou(a.tolist(), b.tolist(), kind=kind), expected, atol=2e-6)


def test_ciou_is_ultralytics_ciou_at_pixel_scale():
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, 32, scale=640.0, min_side=4.0), random_boxes(rng, 32, scale=640.0, min_side=4.0)
    ultra = np.array([ref.ultralytics_ciou(x, y) for x, y in zip(a, b, strict=True)])
    with jax.enable_x64(True):
        np.testing.assert_allclose(1 - ciou_loss(a, b), ultra, atol=1e-7)


def test_small_normalised_boxes_are_not_distorted_by_eps():
    # Boxes of side 0.01 in [0, 1] coordinates: every denominator is ~1e-4, far above eps.
    rng = np.random.default_rng(3)
    a = np.concatenate([c := rng.uniform(0.1, 0.9, (16, 2)), c + 0.01], axis=-1)
    b = a + rng.uniform(-0.004, 0.004, size=a.shape)
    for kind in ("iou", "diou", "ciou"):
        expected = ref.paired(a, b, kind)
        got = np.diagonal(np.asarray(pairwise_iou(a.astype(np.float32), b.astype(np.float32), kind=kind)))
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(
        1 - ciou_loss(a.astype(np.float32), b.astype(np.float32)), ref.paired(a, b, "ciou"), rtol=1e-5
    )


def test_degenerate_boxes_have_finite_values_and_gradients():
    boxes = jnp.array(
        [
            [2.0, 2, 2, 2],  # point box
            [0, 0, 0, 5],  # zero width
            [0, 3, 6, 3],  # zero height
            [1, 1, 3, 3],
            [0, 0, 0, 0],
            [4, 4, 2, 2],  # inverted: zero width and height
        ]
    )
    targets = jnp.array(
        [[2.0, 2, 2, 2], [1, 1, 3, 3], [0, 3, 6, 3], [5, 5, 5, 5], [0, 0, 0, 0], [0, 0, 1, 1]]
    )
    for fn in (diou_loss, ciou_loss):
        assert np.isfinite(fn(boxes, targets)).all()
        g_pred, g_target = jax.grad(lambda p, t, fn=fn: fn(p, t).sum(), argnums=(0, 1))(boxes, targets)
        assert np.isfinite(g_pred).all() and np.isfinite(g_target).all()
    for kind in ("iou", "giou", "diou", "ciou"):
        g = jax.grad(lambda p, kind=kind: pairwise_iou(p, targets, kind=kind).sum())(boxes)
        assert np.isfinite(g).all()
    # Zero height: aspect angle pi/2 exactly (ultralytics: atan(w / 1e-7)).
    flat = jnp.array([0.0, 0, 4, 0])
    assert float(1 - ciou_loss(flat, flat)) == pytest.approx(0.0, abs=1e-7)


def test_ciou_gradient_holds_alpha_constant():
    rng = np.random.default_rng(4)
    a, b = random_boxes(rng, 3, scale=10.0), random_boxes(rng, 3, scale=10.0)
    with jax.enable_x64(True):
        grads = np.asarray(jax.grad(lambda p: ciou_loss(p, b).sum())(a))
    h = 1e-6
    for row in range(3):
        alpha = ref.ciou_alpha(a[row], b[row])
        for col in range(4):
            up, down = a[row].copy(), a[row].copy()
            up[col] += h
            down[col] -= h
            numeric = -(
                ref.ciou_frozen_alpha(up, b[row], alpha) - ref.ciou_frozen_alpha(down, b[row], alpha)
            ) / (2 * h)
            assert grads[row, col] == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_iou_family_dtypes_jit_vmap_and_errors():
    rng = np.random.default_rng(5)
    a, b = random_boxes(rng, 6).astype(np.float32), random_boxes(rng, 6).astype(np.float32)
    for dt in (jnp.bfloat16, jnp.float16):
        out = ciou_loss(a.astype(dt), b.astype(dt))
        assert out.dtype == jnp.float32
    np.testing.assert_allclose(jax.jit(ciou_loss)(a, b), ciou_loss(a, b), rtol=1e-6)
    np.testing.assert_allclose(
        jax.vmap(diou_loss)(a.reshape(2, 3, 4), b.reshape(2, 3, 4)).ravel(), diou_loss(a, b)
    )
    np.testing.assert_allclose(jax.jit(lambda x, y, e: ciou_loss(x, y, eps=e))(a, b, 1e-9), ciou_loss(a, b))
    # Coordinates may be integers (pixel boxes); bool and complex are errors.
    np.testing.assert_allclose(ciou_loss(a.round().astype(np.int32), b), ciou_loss(a.round(), b), rtol=1e-6)
    with pytest.raises(TypeError, match="pred must be real"):
        ciou_loss(a.astype(np.complex64), b)
    with pytest.raises(TypeError, match="target must be real"):
        diou_loss(a, b > 0)
    with pytest.raises(
        ValueError, match=r"target.shape=\(1, 4\).*from pred.shape\[:1\], pred.shape=\(6, 4\)"
    ):
        ciou_loss(a, b[:1])
    with pytest.raises(ValueError, match=r"pred.shape\[1\] is 3, not 4"):
        diou_loss(a[:, :3], b[:, :3])
    with pytest.raises(ValueError, match="eps"):
        ciou_loss(a, b, eps=-1.0)
    with pytest.raises(ValueError, match="eps"):
        pairwise_iou(a, b, eps=float("nan"))
    with pytest.raises(ValueError, match="kind must be one of"):
        pairwise_iou(a, b, kind="siou")
    with pytest.raises(
        ValueError, match=r"boxes1.shape=\(1, \d+, 4\) does not match \(N, 4\): it has 3 axes"
    ):
        pairwise_iou(a[None], b)
    with pytest.raises(TypeError, match="boxes2 must be real"):
        pairwise_iou(a, b.astype(bool))


# --- anchor points ------------------------------------------------------------------------------


def test_anchor_points_match_make_anchors_order():
    shapes, strides = [(80, 80), (40, 40), (20, 20)], [8, 16, 32]
    points, point_strides = anchor_points(shapes, strides)
    expected_points, expected_strides = ref.anchors(shapes, strides)
    assert points.shape == (8400, 2) and point_strides.shape == (8400,) and points.dtype == jnp.float32
    np.testing.assert_array_equal(points, expected_points)
    np.testing.assert_array_equal(point_strides, expected_strides)
    np.testing.assert_array_equal(np.asarray(points)[[0, 1, 80, 6400]], [[4, 4], [12, 4], [4, 12], [8, 8]])
    rect, _ = anchor_points([(2, 3)], [4.0], offset=0.0)
    np.testing.assert_array_equal(rect, ref.anchors([(2, 3)], [4.0], 0.0)[0])


@pytest.mark.parametrize(
    ("shapes", "strides", "offset", "match"),
    [
        ([(0, 4)], [8], 0.5, "positive"),
        ([(4, 4, 1)], [8], 0.5, "positive"),
        ([(4.5, 4)], [8], 0.5, "Python ints"),
        ([], [], 0.5, "non-empty"),
        ([(4, 4)], [8, 16], 0.5, "one stride per level"),
        ([(4, 4)], [0], 0.5, "strides"),
        ([(4, 4)], [-8], 0.5, "strides"),
        ([(4, 4)], [8], 1.0, "offset"),
        ([(4, 4)], [8], -0.5, "offset"),
    ],
)
def test_anchor_points_errors(shapes, strides, offset, match):
    with pytest.raises(ValueError, match=match):
        anchor_points(shapes, strides, offset=offset)


# --- task-aligned assignment ------------------------------------------------------------------


def assign_problem(seed, num_gt=6, valid=4, classes=4, image=64, min_side=8.0, crowded=False):
    rng = np.random.default_rng(seed)
    points, _ = anchor_points([(image // 8,) * 2, (image // 16,) * 2, (image // 32,) * 2], [8, 16, 32])
    points = np.asarray(points, np.float64)
    n = len(points)
    centre = (
        rng.uniform(image / 3, image * 2 / 3, size=(num_gt, 2))
        if crowded
        else rng.uniform(0, image, (num_gt, 2))
    )
    size = rng.uniform(min_side, image * 0.6, size=(num_gt, 2))
    gt_boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], -1), 0, image)
    gt_labels = rng.integers(0, classes, size=num_gt)
    gt_mask = np.arange(num_gt) < valid
    pred_boxes = np.concatenate(
        [points - rng.uniform(2, 24, size=(n, 2)), points + rng.uniform(2, 24, size=(n, 2))], -1
    )
    scores = rng.uniform(0.01, 1, size=(n, classes))
    return scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask


def assert_assignment(got: Assignment, expected, rtol=1e-6, atol=1e-7):
    labels, boxes, scores, foreground, gt_index = expected
    np.testing.assert_array_equal(got.foreground, foreground)
    np.testing.assert_array_equal(got.gt_index, gt_index)
    np.testing.assert_array_equal(got.labels, labels)
    np.testing.assert_allclose(got.boxes, boxes, rtol=1e-6)
    np.testing.assert_allclose(got.scores, scores, rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    ("seed", "top_k", "alpha", "beta", "iou"),
    [(0, 13, 1.0, 6.0, "ciou"), (1, 10, 0.5, 6.0, "ciou"), (2, 5, 1.0, 6.0, "iou"), (3, 3, 1.0, 2.0, "ciou")],
)
def test_assign_matches_both_references(seed, top_k, alpha, beta, iou):
    problem = assign_problem(seed, valid=5, crowded=seed % 2 == 0)
    kw = dict(top_k=top_k, alpha=alpha, beta=beta)
    stats = {}
    expected = ref.tal(*problem, iou=iou, stats=stats, **kw)
    assert expected[3].sum() > 5  # a non-trivial assignment
    if seed % 2 == 0:
        assert stats["conflicts"] > 0  # points claimed by several gts
    with jax.enable_x64(True):
        assert_assignment(_assign(*problem, iou_kind=iou, **kw), expected, rtol=1e-10, atol=1e-14)
    got = _assign(*f32(problem), iou_kind=iou, **kw)
    assert_assignment(got, expected, rtol=2e-5, atol=1e-7)
    if iou == "ciou":
        # ultralytics' tensor steps, with its CIoU eps: same assignment.
        assert_assignment(got, ref.tal_ultralytics(*problem, **kw), rtol=2e-5, atol=1e-7)


def test_assign_overlapping_gts_resolve_by_overlap():
    points = np.array([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0]])
    gt_boxes = np.array([[0.0, 0.0, 16.0, 8.0], [8.0, 0.0, 24.0, 8.0]])  # both contain point 1
    pred_boxes = np.array([[0.0, 0.0, 16.0, 8.0], [7.0, 0.0, 24.0, 8.0], [8.0, 0.0, 24.0, 8.0]])
    scores = np.full((3, 2), 0.9)
    args = (scores, pred_boxes, points, np.array([0, 1]), gt_boxes, np.array([True, True]))
    got = task_aligned_assign(*args, top_k=2)
    np.testing.assert_array_equal(got.foreground, [True, True, True])
    np.testing.assert_array_equal(got.gt_index, [0, 1, 1])  # point 1's box overlaps gt 1 more
    np.testing.assert_array_equal(got.labels, [0, 1, 1])
    assert_assignment(got, ref.tal(*args, top_k=2, alpha=1.0, beta=6.0, iou="ciou"), rtol=1e-5)
    assert_assignment(got, ref.tal_ultralytics(*args, top_k=2, alpha=1.0, beta=6.0), rtol=1e-5)


def test_assign_fewer_candidates_than_top_k_edges_and_zero_metric():
    points, _ = anchor_points([(4, 4)], [8])  # x, y in {4, 12, 20, 28}
    # The right and bottom edges lie exactly on the points at x = 20 and y = 20: not candidates.
    gt = np.array([[0.0, 0.0, 20.0, 20.0]])
    pred = np.tile(gt, (16, 1))
    scores = np.full((16, 1), 0.5)
    scores[5, 0] = 0.0  # point (12, 12): a candidate, but of zero metric
    got = task_aligned_assign(scores, pred, points, np.array([0]), gt, np.array([True]), top_k=13)
    expected_fg = np.zeros(16, bool)
    expected_fg[[0, 1, 4]] = True  # (4, 4), (12, 4), (4, 12): 3 points although top_k = 13
    np.testing.assert_array_equal(got.foreground, expected_fg)
    args = (scores, pred, points, [0], gt, [True])
    assert_assignment(got, ref.tal(*args, top_k=13, alpha=1.0, beta=6.0, iou="ciou"))
    assert_assignment(got, ref.tal_ultralytics(*args, top_k=13, alpha=1.0, beta=6.0))


def test_assign_without_valid_gt_and_with_no_slots():
    scores, pred_boxes, points, gt_labels, gt_boxes, _ = assign_problem(5)
    none = np.zeros(len(gt_boxes), bool)
    got = task_aligned_assign(scores, pred_boxes, points, gt_labels, gt_boxes, none)
    assert not got.foreground.any() and (got.scores == 0).all() and (got.gt_index == 0).all()
    np.testing.assert_array_equal(got.labels, 0)  # slot 0 is padding: zeroed
    np.testing.assert_array_equal(got.boxes, 0.0)
    empty = task_aligned_assign(
        scores, pred_boxes, points, np.zeros(0, np.int32), np.zeros((0, 4)), np.zeros(0, bool)
    )
    assert not empty.foreground.any() and (empty.labels == scores.shape[1]).all()
    assert empty.scores.shape == scores.shape


def test_assign_background_gets_slot_zero_and_padding_garbage_is_ignored():
    problem = list(assign_problem(6))
    clean = task_aligned_assign(*problem)
    bg = ~np.asarray(clean.foreground)
    np.testing.assert_array_equal(np.asarray(clean.labels)[bg], problem[3][0])
    np.testing.assert_allclose(
        np.asarray(clean.boxes)[bg], np.broadcast_to(problem[4][0], (bg.sum(), 4)), rtol=1e-6
    )
    problem[4] = problem[4].copy()
    problem[4][~problem[5]] = np.nan
    problem[3] = problem[3].copy()
    problem[3][~problem[5]] = 10_000
    dirty = task_aligned_assign(*problem)
    for x, y in zip(clean, dirty, strict=True):
        np.testing.assert_array_equal(x, y)


def f32(problem):
    return [
        np.asarray(x, np.float32) if np.asarray(x).dtype == np.float64 else np.asarray(x) for x in problem
    ]


def test_assign_jit_vmap_no_gradient_and_no_gac_array():
    problems = [assign_problem(seed) for seed in (7, 8, 9)]
    batch = [np.stack(x) for x in zip(*(f32(p) for p in problems), strict=True)]
    batch[2] = batch[2][0]  # the points are shared
    fn = jax.jit(
        jax.vmap(lambda *a: task_aligned_assign(*a, top_k=10, alpha=0.5), in_axes=(0, 0, None, 0, 0, 0))
    )
    got = fn(*batch)
    for i, p in enumerate(problems):
        expected = ref.tal(*p, top_k=10, alpha=0.5, beta=6.0, iou="ciou")
        assert_assignment(jax.tree.map(lambda x, i=i: x[i], got), expected, rtol=2e-5)
    # No gradient flows through the assignment.
    one = f32(problems[0])
    g = jax.grad(lambda s: task_aligned_assign(s, *one[1:]).scores.sum())(one[0])
    np.testing.assert_array_equal(g, 0.0)
    # No (G, A, C) intermediate: with G=6, A=84, C=7, nothing reaches G * A * C elements.
    jaxpr = jax.make_jaxpr(task_aligned_assign)(*f32(assign_problem(10, classes=7)))
    sizes = [int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars]
    assert max(sizes) < 6 * 84 * 7


def test_assign_errors():
    scores, pred_boxes, points, labels, boxes, mask = assign_problem(11)
    args = [scores, pred_boxes, points, labels, boxes, mask]

    def call(index, value, **kw):
        a = list(args)
        a[index] = value
        return task_aligned_assign(*a, **kw)

    with pytest.raises(TypeError, match="scores must be floating"):
        call(0, scores > 0.5)
    with pytest.raises(TypeError, match="pred_boxes must be real"):
        call(1, pred_boxes > 0)
    with pytest.raises(TypeError, match="gt_labels must be integers"):
        call(3, labels.astype(np.float32))
    with pytest.raises(TypeError, match="gt_mask must be a boolean"):
        call(5, mask.astype(np.int32))
    with pytest.raises(ValueError, match=r"pred_boxes.shape=\(83, 4\)"):
        call(1, pred_boxes[:-1])
    with pytest.raises(ValueError, match=r"gt_mask.shape=\(5,\)"):
        call(5, mask[:-1])
    with pytest.raises(ValueError, match=r"points.shape=\(\d+, 1\) does not match \(A, 2\)"):
        call(2, points[:, :1])
    for bad, match in [
        (dict(top_k=0), "top_k"),
        (dict(top_k=85), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(alpha=-1.0), "alpha"),
        (dict(beta=float("inf")), "beta"),
        (dict(iou_kind="giou"), "iou_kind must be one of"),
        (dict(candidate_eps=0.0), "candidate_eps"),
        (dict(metric_eps=-1.0), "metric_eps"),
        (dict(iou_eps=float("nan")), "iou_eps"),
        (dict(norm_eps=0.0), "norm_eps"),
    ]:
        with pytest.raises(ValueError, match=match):
            task_aligned_assign(*args, **bad)
    # Traced numeric hyper-parameters are fine.
    traced = jax.jit(lambda a, b: task_aligned_assign(*args, alpha=a, beta=b))(0.5, 6.0)
    assert_assignment(traced, ref.tal(*args, top_k=13, alpha=0.5, beta=6.0, iou="ciou"), rtol=2e-5)


# --- YOLOv8 box loss ----------------------------------------------------------------------------


def boxloss_problem(seed, n=40, bins=8, classes=3, fg_fraction=0.3):
    rng = np.random.default_rng(seed)
    points, strides = anchor_points([(4, 4), (2, 2)], [8, 16])
    points, strides = np.asarray(points, np.float64), np.asarray(strides, np.float64)
    index = rng.integers(0, len(points), size=n)
    points, strides = points[index], strides[index]
    logits = rng.normal(scale=2.0, size=(n, 4, bins))
    pred_dist = rng.uniform(0.2, bins - 1, size=(n, 4)) * strides[:, None]
    pred_boxes = np.concatenate([points - pred_dist[:, :2], points + pred_dist[:, 2:]], -1)
    target_dist = rng.uniform(0.0, bins - 1.02, size=(n, 4)) * strides[:, None]
    target_boxes = np.concatenate([points - target_dist[:, :2], points + target_dist[:, 2:]], -1)
    foreground = rng.uniform(size=n) < fg_fraction
    foreground[0] = True
    target_scores = np.zeros((n, classes))
    target_scores[np.arange(n), rng.integers(0, classes, n)] = rng.uniform(0.1, 1, n)
    target_scores *= foreground[:, None]
    return logits, pred_boxes, points, target_boxes, target_scores, foreground, strides


# Jitted once per shape and dtype: eager dispatch of every op would dominate the test time.
_box_loss = jax.jit(yolo_box_loss, static_argnames="max_foreground")
_assign = jax.jit(task_aligned_assign, static_argnames=("top_k", "iou_kind"))


def call_boxloss(problem, normalizer, **kw):
    logits, pred_boxes, points, target_boxes, target_scores, foreground, strides = problem
    return _box_loss(
        logits, pred_boxes, points, target_boxes, target_scores, foreground,
        point_strides=strides, normalizer=normalizer, **kw,
    )  # fmt: skip


def test_box_loss_matches_reference():
    for seed in range(3):
        problem = boxloss_problem(seed)
        normalizer = problem[4].sum()
        expected = ref.box_loss(*problem, normalizer)
        with jax.enable_x64(True):
            np.testing.assert_allclose(call_boxloss(problem, normalizer), expected, rtol=1e-10)
        f32 = [x.astype(np.float32) if x.dtype == np.float64 else x for x in problem]
        got = call_boxloss(f32, np.float32(normalizer))
        assert got[0].dtype == jnp.float32 and got[0].shape == ()
        np.testing.assert_allclose(got, expected, rtol=2e-5)
    # Targets at the last bin and beyond: clipped to K - 1 exactly (ultralytics: K - 1.01).
    problem = list(boxloss_problem(3))
    problem[3] = problem[3] * 1.5
    with jax.enable_x64(True):
        np.testing.assert_allclose(call_boxloss(problem, 2.0), ref.box_loss(*problem, 2.0), rtol=1e-10)


def test_box_loss_normalizer_is_clamped_at_one():
    problem = boxloss_problem(4)
    small, one = call_boxloss(problem, 0.25), call_boxloss(problem, 1.0)
    np.testing.assert_allclose(small, one)
    np.testing.assert_allclose(call_boxloss(problem, 4.0), np.asarray(one) / 4, rtol=1e-6)


def test_box_loss_background_nan_has_no_effect_and_zero_gradient():
    problem = [np.asarray(x, np.float32) if x.dtype == np.float64 else x for x in boxloss_problem(5)]
    fg = problem[5]
    clean = call_boxloss(problem, 3.0)
    dirty = [x.copy() for x in problem]
    for i in (0, 1, 2, 3, 4, 6):
        dirty[i][~fg] = np.nan
    np.testing.assert_allclose(call_boxloss(dirty, 3.0), clean, rtol=1e-6)

    def total(logits, boxes):
        d = list(dirty)
        d[0], d[1] = logits, boxes
        iou_l, dfl_l = call_boxloss(d, 3.0)
        return iou_l + dfl_l

    g_logits, g_boxes = jax.grad(total, argnums=(0, 1))(dirty[0], dirty[1])
    assert np.isfinite(g_logits).all() and np.isfinite(g_boxes).all()
    np.testing.assert_array_equal(np.asarray(g_logits)[~fg], 0.0)
    np.testing.assert_array_equal(np.asarray(g_boxes)[~fg], 0.0)
    assert np.abs(np.asarray(g_logits)[fg]).sum() > 0 and np.abs(np.asarray(g_boxes)[fg]).sum() > 0


def test_box_loss_logit_gradient_matches_reference_numerically():
    problem = boxloss_problem(6, n=10)
    with jax.enable_x64(True):
        g = np.asarray(jax.grad(lambda x: call_boxloss([x, *problem[1:]], 2.0)[1])(problem[0]))
    h = 1e-6
    for a in np.flatnonzero(problem[5])[:2]:
        for side in range(4):
            for k in range(0, problem[0].shape[-1], 3):
                up, down = problem[0].copy(), problem[0].copy()
                up[a, side, k] += h
                down[a, side, k] -= h
                numeric = (
                    ref.box_loss(up, *problem[1:], 2.0)[1] - ref.box_loss(down, *problem[1:], 2.0)[1]
                ) / (2 * h)
                assert g[a, side, k] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_box_loss_max_foreground_drops_the_tail_and_can_be_checked():
    problem = boxloss_problem(7)
    fg = problem[5]
    count = int(fg.sum())
    m = count - 2
    kept = fg.copy()
    kept[np.flatnonzero(fg)[m:]] = False
    expected = ref.box_loss(*problem[:5], kept, problem[6], 3.0)
    np.testing.assert_allclose(call_boxloss(problem, 3.0, max_foreground=m), expected, rtol=2e-5)
    np.testing.assert_allclose(
        call_boxloss(problem, 3.0, max_foreground=count), ref.box_loss(*problem, 3.0), rtol=2e-5
    )

    def checked(foreground, limit):
        validate_foreground(foreground, max_foreground=limit)
        return foreground.sum()

    err, _ = checkify.checkify(jax.jit(checked, static_argnums=1))(jnp.asarray(fg), m)
    assert f"{count} foreground points in one image, more than max_foreground={m}" in err.get()
    err, _ = checkify.checkify(jax.jit(checked, static_argnums=1))(jnp.asarray(fg), count)
    assert err.get() is None
    err, _ = checkify.checkify(checked, errors=checkify.user_checks)(jnp.stack([fg, fg]), None)
    assert err.get() is None


def test_box_loss_jit_vmap_with_batch_normalizer():
    problems = [boxloss_problem(seed) for seed in (8, 9, 10)]
    batch = [np.stack([p[i] for p in problems]) for i in range(7)]
    batch = [x.astype(np.float32) if x.dtype == np.float64 else x for x in batch]
    normalizer = batch[4].sum()  # the batch's summed target score

    def per_image(logits, boxes, points, targets, scores, fg, strides, norm):
        return yolo_box_loss(
            logits,
            boxes,
            points,
            targets,
            scores,
            fg,
            point_strides=strides,
            normalizer=norm,
            max_foreground=30,
        )

    iou_l, dfl_l = jax.jit(jax.vmap(per_image, in_axes=(0, 0, 0, 0, 0, 0, 0, None)))(*batch, normalizer)
    assert iou_l.shape == (3,)
    stacked = [np.concatenate([p[i] for p in problems]) for i in range(7)]
    expected = ref.box_loss(*stacked, normalizer)
    np.testing.assert_allclose([iou_l.sum(), dfl_l.sum()], expected, rtol=2e-5)


def test_box_loss_dtypes_and_errors():
    problem = [np.asarray(x, np.float32) if x.dtype == np.float64 else x for x in boxloss_problem(11)]
    half = [x.astype(jnp.bfloat16) if x.dtype == np.float32 else x for x in problem]
    got = call_boxloss(half, 2.0)
    assert got[0].dtype == jnp.float32 and np.isfinite(got).all()

    def call(index, value, **kw):
        p = list(problem)
        p[index] = value
        return call_boxloss(p, kw.pop("normalizer", 2.0), **kw)

    with pytest.raises(TypeError, match="foreground must be a boolean"):
        call(5, problem[5].astype(np.int32))
    with pytest.raises(TypeError, match="pred_boxes must be real"):
        call(1, problem[1].astype(np.complex64))
    with pytest.raises(TypeError, match="target_scores must be floating"):
        call(4, problem[4] > 0)
    with pytest.raises(ValueError, match=r"target_boxes.shape=\(39, 4\) does not match \(A, 4\).*A is 40"):
        call(3, problem[3][:-1])
    with pytest.raises(
        ValueError, match=r"pred_logits.shape=\(40, 3, \d+\) does not match \(A, 4, num_bins\)"
    ):
        call(0, problem[0][:, :3])
    with pytest.raises(ValueError, match=r"point_strides.shape=\(1,\)"):
        call(6, problem[6][:1])
    with pytest.raises(ValueError, match=r"normalizer.shape=\(2,\) does not match \(\)"):
        call(0, problem[0], normalizer=np.ones(2))
    for bad in (0, 41, 2.5):
        with pytest.raises(ValueError, match="max_foreground"):
            call(0, problem[0], max_foreground=bad)
