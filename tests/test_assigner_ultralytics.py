"""``task_aligned_assign``'s ultralytics 8.4 options (``top_k2``, ``candidate_min_size``) against a
float64 NumPy transcription of ultralytics 8.4.190's ``TaskAlignedAssigner``
(``tests/reference_detection.py``, ``tal_ultralytics``), under ``jit`` and ``vmap``, and the
default path unchanged."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_dfl
from tests import reference_detection as ref

IMAGE = 64
STRIDES = (8, 16, 32)
# YOLOv8/v11's training settings; ultralytics 8.4's stride_val for strides 8, 16, 32 is 16.
TRAINING = dict(top_k=10, alpha=0.5, beta=6.0)
STRIDE_VAL = 16.0


def problem(seed, *, num_gt=6, valid=5, classes=4, tiny=3):
    """One image: points of a 64 px image at strides 8, 16, 32 (84 points), ``tiny`` of the valid
    gts with a side below 16 px (the ones the enlargement widens), the others up to 40 px, placed
    near the centre so that several gts claim the same points."""
    rng = np.random.default_rng(seed)
    points, _ = jax_dfl.anchor_points([(IMAGE // s, IMAGE // s) for s in STRIDES], list(STRIDES))
    points = np.asarray(points, np.float64)
    n = len(points)
    centre = rng.uniform(IMAGE / 4, IMAGE * 3 / 4, size=(num_gt, 2))
    size = rng.uniform(12.0, 40.0, size=(num_gt, 2))
    size[:tiny] = rng.uniform(1.0, 14.0, size=(tiny, 2))  # at least one side below 16 px
    gt_boxes = np.concatenate([centre - size / 2, centre + size / 2], -1)
    gt_labels = rng.integers(0, classes, size=num_gt)
    gt_mask = np.arange(num_gt) < valid
    pred_boxes = np.concatenate(
        [points - rng.uniform(2, 20, size=(n, 2)), points + rng.uniform(2, 20, size=(n, 2))], -1
    )
    scores = rng.uniform(0.01, 1, size=(n, classes))
    return scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask


def assign(scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask, **kw):
    """The assigner in the references' (ultralytics') argument order."""
    return jax_dfl.task_aligned_assign(
        pred_boxes=pred_boxes, pred_scores=scores, points=points,
        gt_boxes=gt_boxes, gt_labels=gt_labels, gt_mask=gt_mask, **kw,
    )  # fmt: skip


def reference(p, *, top_k2=None, candidate_min_size=None, zero_metric_fill=False, **kw):
    return ref.tal_ultralytics(
        *p, topk2=top_k2, stride_val=candidate_min_size, zero_metric_fill=zero_metric_fill, **(TRAINING | kw)
    )


def f32(p):
    return [np.asarray(x, np.float32) if np.asarray(x).dtype == np.float64 else np.asarray(x) for x in p]


def assert_assignment(got, expected, rtol=2e-5, atol=1e-7):
    labels, boxes, scores, foreground, gt_index = expected
    np.testing.assert_array_equal(got.foreground, foreground)
    np.testing.assert_array_equal(got.gt_index, gt_index)
    np.testing.assert_array_equal(got.labels, labels)
    np.testing.assert_allclose(got.boxes, boxes, rtol=1e-6)
    np.testing.assert_allclose(got.scores, scores, rtol=rtol, atol=atol)


OPTIONS = [
    pytest.param(dict(candidate_min_size=STRIDE_VAL), id="enlarge"),
    pytest.param(dict(top_k2=3), id="topk2=3"),
    pytest.param(dict(candidate_min_size=STRIDE_VAL, top_k2=1), id="enlarge+topk2=1"),
    pytest.param(dict(candidate_min_size=STRIDE_VAL, top_k2=7), id="enlarge+topk2=7"),
]
SEEDS = range(12)


@pytest.mark.parametrize("options", OPTIONS)
def test_options_match_the_ultralytics_transcription(options):
    changed = 0
    for seed in SEEDS:
        p = problem(seed)
        expected = reference(p, **options)
        assert_assignment(assign(*f32(p), **TRAINING, **options), expected)
        with jax.enable_x64(True):
            assert_assignment(assign(*p, **TRAINING, **options), expected, rtol=1e-6, atol=1e-12)
        # Not vacuous: the options change the assignment of most images.
        default = reference(p)
        changed += not (np.array_equal(default[3], expected[3]) and np.array_equal(default[4], expected[4]))
    assert changed >= len(SEEDS) // 2, changed


def test_enlargement_gives_small_gts_points_and_top_k2_caps_them():
    grew = capped = 0
    for seed in SEEDS:
        p = problem(seed)
        plain = assign(*f32(p), **TRAINING)
        enlarged = assign(*f32(p), **TRAINING, candidate_min_size=STRIDE_VAL)
        per_gt = np.bincount(np.asarray(enlarged.gt_index)[np.asarray(enlarged.foreground)], minlength=6)
        per_gt_plain = np.bincount(np.asarray(plain.gt_index)[np.asarray(plain.foreground)], minlength=6)
        grew += int(per_gt[:3].sum() > per_gt_plain[:3].sum())  # the three tiny gts
        second = assign(*f32(p), **TRAINING, candidate_min_size=STRIDE_VAL, top_k2=2)
        counts = np.bincount(np.asarray(second.gt_index)[np.asarray(second.foreground)], minlength=6)
        assert counts.max() <= 2
        capped += int(per_gt.max() > 2)
        # The enlargement is for the candidate test only: assigned boxes are the gts as given.
        fg = np.asarray(enlarged.foreground)
        np.testing.assert_allclose(
            np.asarray(enlarged.boxes)[fg], p[4][np.asarray(enlarged.gt_index)[fg]], rtol=1e-6
        )
    assert grew >= len(SEEDS) // 2 and capped >= len(SEEDS) // 2, (grew, capped)


def test_options_under_jit_and_vmap():
    seeds = (20, 21, 22, 23)
    problems = [f32(problem(seed)) for seed in seeds]
    batch = [np.stack(x) for x in zip(*problems, strict=True)]
    batch[2] = batch[2][0]  # the points are shared

    @functools.partial(jax.jit, static_argnames="top_k2")
    def run(size, *arrays, top_k2):
        one = lambda *a: assign(*a, **TRAINING, top_k2=top_k2, candidate_min_size=size)
        return jax.vmap(one, in_axes=(0, 0, None, 0, 0, 0))(*arrays)

    for top_k2 in (None, 4):
        got = run(jnp.float32(STRIDE_VAL), *batch, top_k2=top_k2)  # the size traced
        for i, seed in enumerate(seeds):
            expected = reference(problem(seed), top_k2=top_k2, candidate_min_size=STRIDE_VAL)
            assert_assignment(jax.tree.map(lambda x, i=i: x[i], got), expected)


def test_default_path_is_unchanged():
    for seed in SEEDS:
        p = problem(seed)
        default = assign(*f32(p), **TRAINING)
        # The pre-0.3 reference (options off), and the explicit spellings of "off".
        assert_assignment(default, reference(p))
        assert_assignment(default, ref.tal(*p, iou="ciou", **TRAINING))
        for off in (dict(top_k2=None, candidate_min_size=None), dict(top_k2=TRAINING["top_k"])):
            for a, b in zip(assign(*f32(p), **TRAINING, **off), default, strict=True):
                np.testing.assert_array_equal(a, b)


def widened(box, size):
    """A box's sides shorter than ``size`` set to it, about its centre (ultralytics' stride_val)."""
    centre, half = (box[:2] + box[2:]) / 2, np.maximum(box[2:] - box[:2], size) / 2
    return np.concatenate([centre - half, centre + half])


def test_zero_metric_fill_is_the_one_difference_from_ultralytics():
    """ultralytics fills a gt's top-k with zero-metric candidates; here they are background. Where
    every valid gt has at least top_k candidates of positive metric, nothing is filled and the
    transcription of ultralytics without the deviation equals the assigner."""
    checked = 0
    for seed in range(30):
        p = problem(seed, tiny=0, valid=3)
        scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask = p
        enough = True
        for g in np.flatnonzero(gt_mask):
            x1, y1, x2, y2 = widened(gt_boxes[g], STRIDE_VAL)
            inside = (points[:, 0] > x1) & (points[:, 0] < x2) & (points[:, 1] > y1) & (points[:, 1] < y2)
            metrics = [
                scores[a, gt_labels[g]] ** 0.5 * max(ref.ultralytics_ciou(gt_boxes[g], pred_boxes[a]), 0) ** 6
                for a in np.flatnonzero(inside)
            ]
            enough &= sum(m > 1e-9 for m in metrics) >= TRAINING["top_k"]
        if not enough:
            continue
        checked += 1
        for options in (dict(candidate_min_size=STRIDE_VAL), dict(candidate_min_size=STRIDE_VAL, top_k2=4)):
            faithful = reference(p, zero_metric_fill=True, **options)
            assert_assignment(assign(*f32(p), **TRAINING, **options), faithful)
    assert checked >= 5, checked

    # Where a gt has fewer: the zero-metric candidate is foreground of score 0 in ultralytics only.
    points, _ = jax_dfl.anchor_points([(4, 4)], [8])
    gt = np.array([[0.0, 0.0, 20.0, 20.0]])  # candidates: points 0, 1, 4, 5
    scores = np.full((16, 1), 0.5)
    scores[5, 0] = 0.0  # point 5 is a candidate of zero metric
    args = (scores, np.tile(gt, (16, 1)), np.asarray(points, np.float64), np.array([0]), gt, np.array([True]))
    got = assign(*f32(args), top_k=13)
    faithful = ref.tal_ultralytics(*args, top_k=13, alpha=1.0, beta=6.0, zero_metric_fill=True)
    np.testing.assert_array_equal(np.flatnonzero(got.foreground), [0, 1, 4])
    np.testing.assert_array_equal(np.flatnonzero(faithful[3]), [0, 1, 4, 5])
    assert faithful[2][5].sum() == 0  # its target score: 0
    assert_assignment(got, ref.tal_ultralytics(*args, top_k=13, alpha=1.0, beta=6.0))


def test_option_errors():
    p = f32(problem(0))
    for bad, match in [
        (dict(top_k2=0), "top_k2"),
        (dict(top_k2=85), "top_k2"),
        (dict(top_k2=2.5), "top_k2"),
        (dict(candidate_min_size=0.0), "candidate_min_size"),
        (dict(candidate_min_size=-16.0), "candidate_min_size"),
        (dict(candidate_min_size=float("nan")), "candidate_min_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            assign(*p, **bad)
