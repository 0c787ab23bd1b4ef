"""non_max_suppression against an independent float64 greedy NMS written from the textbook."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jax_dfl.nms import non_max_suppression

# One compiled function, reused across cases of the same shapes; thresholds are traced.
jitted_nms = jax.jit(non_max_suppression, static_argnames=("max_detections", "pre_nms_top_k"))

# --- reference: loops, float64, no code shared with the library ---------------------------


def reference_iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def reference_nms(
    boxes, scores, iou_threshold, max_detections, score_threshold=None, labels=None, top_k=None
) -> list[int]:
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    candidates = [
        i
        for i in range(len(scores))
        if np.isfinite(scores[i])
        and np.isfinite(boxes[i]).all()
        and (score_threshold is None or scores[i] > score_threshold)
    ]
    candidates.sort(key=lambda i: -scores[i])  # Python's sort is stable: ties keep index order
    if top_k is not None:
        candidates = candidates[:top_k]
    keep, suppressed = [], set()
    for pos, i in enumerate(candidates):
        if i in suppressed:
            continue
        keep.append(i)
        for j in candidates[pos + 1 :]:
            if labels is not None and labels[j] != labels[i]:
                continue
            if reference_iou(boxes[i], boxes[j]) > iou_threshold:
                suppressed.add(j)
    return keep[:max_detections]


def padded(keep: list[int], max_detections: int) -> np.ndarray:
    return np.array(keep + [-1] * (max_detections - len(keep)), dtype=np.int32)


def assert_matches(result, expected: list[int], max_detections: int) -> None:
    indices, valid = result
    assert indices.shape == (max_detections,) and indices.dtype == jnp.int32
    assert valid.shape == (max_detections,) and valid.dtype == jnp.bool_
    np.testing.assert_array_equal(indices, padded(expected, max_detections))
    np.testing.assert_array_equal(valid, padded(expected, max_detections) >= 0)


def clustered_boxes(rng, n: int, clusters: int = 4, size: float = 20.0) -> np.ndarray:
    """Boxes jittered around a few centres, so that many pairs overlap."""
    centres = rng.uniform(0, 100, size=(clusters, 2))[rng.integers(0, clusters, size=n)]
    centres = centres + rng.normal(scale=size / 4, size=(n, 2))
    wh = size * np.exp(rng.normal(scale=0.3, size=(n, 2)))
    return np.concatenate([centres - wh / 2, centres + wh / 2], axis=1)


def far_from_threshold(boxes, threshold: float, margin: float = 1e-4) -> bool:
    """No pair has an IoU within ``margin`` of the threshold (float32 cannot flip a comparison)."""
    return all(
        abs(reference_iou(a, b) - threshold) > margin for i, a in enumerate(boxes) for b in boxes[i + 1 :]
    )


# --- agreement with the reference -------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_random_clustered_boxes_match_reference(seed, iou_threshold):
    rng = np.random.default_rng(seed)
    boxes = clustered_boxes(rng, 40).astype(np.float32)
    assert far_from_threshold(boxes.astype(np.float64), iou_threshold)
    scores = rng.permutation(40).astype(np.float32) / 40  # distinct: no ties
    classes = rng.integers(0, 3, size=40).astype(np.int32)
    for kwargs in [
        {},
        {"labels": classes},
        {"score_threshold": 0.4125},  # between two scores k / 40: float32 rounding cannot decide it,
        {"labels": classes, "score_threshold": 0.2125},
    ]:
        result = jitted_nms(boxes, scores, iou_threshold=iou_threshold, max_detections=40, **kwargs)
        expected = reference_nms(boxes, scores, iou_threshold, 40, **kwargs)
        assert_matches(result, expected, 40)


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    num_boxes=st.integers(0, 10),
    iou_threshold=st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0, 1)),
    max_detections=st.sampled_from([3, 12]),
    use_classes=st.booleans(),
    proper_boxes=st.booleans(),
)
def test_property_matches_reference_exactly_in_float64(
    data, num_boxes, iou_threshold, max_detections, use_classes, proper_boxes
):
    # Small integer coordinates: identical, nested, touching and zero-area boxes are all common,
    # and IoUs land exactly on thresholds like 0.25 and 0.5. In float64 both sides compute
    # inter / (area_a + area_b - inter) in the same order, so they must agree bit for bit.
    # Always 10 boxes (one compilation), the first num_boxes of them selected by `where`.
    corners = data.draw(st.lists(st.integers(0, 6), min_size=40, max_size=40))
    c = np.array(corners, dtype=np.float64).reshape(10, 2, 2)
    # Either x1 <= x2 and y1 <= y2, or the raw corners (about half of them inverted).
    boxes = np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1) if proper_boxes else c.reshape(-1, 4)
    scores = np.array(data.draw(st.permutations(range(10))), dtype=np.float64)
    classes = np.array(data.draw(st.lists(st.integers(0, 1), min_size=10, max_size=10)))
    classes = classes if use_classes else None
    where = np.arange(10) < num_boxes
    with jax.enable_x64(True):
        result = jitted_nms(
            boxes,
            scores,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            labels=classes,
            where=where,
        )
    n = num_boxes
    expected = reference_nms(
        boxes[:n], scores[:n], iou_threshold, max_detections, labels=None if classes is None else classes[:n]
    )
    assert_matches(result, expected, max_detections)


# --- hand-made cases ----------------------------------------------------------------------


def test_suppression_is_strictly_greater_than_the_threshold():
    boxes = [[0.0, 0, 4, 1], [0, 0, 2, 1]]  # IoU exactly 2/4
    scores = [0.9, 0.8]
    assert_matches(non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=3), [0, 1], 3)
    assert_matches(non_max_suppression(boxes, scores, iou_threshold=0.49, max_detections=3), [0], 3)
    # iou_threshold=1 suppresses nothing, not even identical boxes; 0 suppresses any overlap.
    same = [[0.0, 0, 1, 1]] * 3
    assert_matches(
        non_max_suppression(same, [0.1, 0.3, 0.2], iou_threshold=1.0, max_detections=3), [1, 2, 0], 3
    )
    touching = [[0.0, 0, 1, 1], [1, 0, 2, 1], [0.5, 0, 1.5, 1]]
    assert_matches(
        non_max_suppression(touching, [0.3, 0.2, 0.1], iou_threshold=0.0, max_detections=3), [0, 1], 3
    )


def test_all_suppressed_but_one_and_padding():
    boxes = np.array([[10.0, 10, 50, 50]] * 6) + np.arange(6)[:, None] * 0.5
    scores = np.array([0.1, 0.6, 0.3, 0.9, 0.2, 0.5])
    assert_matches(non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=5), [3], 5)


def test_class_aware_boxes_of_different_classes_never_suppress_each_other():
    boxes = [[0.0, 0, 10, 10]] * 4
    scores = [0.9, 0.8, 0.7, 0.6]
    classes = [0, 1, 0, 2]
    assert_matches(
        non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=4, labels=classes), [0, 1, 3], 4
    )
    assert_matches(non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=4), [0], 4)


def test_score_threshold_is_strict_and_nan_scores_are_never_kept():
    boxes = np.array([[0.0, 0, 1, 1], [2, 0, 3, 1], [4, 0, 5, 1], [6, 0, 7, 1]])
    scores = np.array([0.5, np.nan, 0.25, 0.7])
    keep = non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=4, score_threshold=0.25)
    assert_matches(keep, [3, 0], 4)
    assert_matches(non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=4), [3, 0, 2], 4)


def test_non_finite_scores_and_boxes_are_never_kept_and_where_masks_boxes():
    boxes = np.array([[0.0, 0, 1, 1], [2, 0, 3, 1], [4, 0, 5, 1], [6, 0, 7, 1]])
    scores = np.array([-np.inf, np.nan, np.inf, 0.3])
    assert_matches(non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=4), [3], 4)
    boxes = boxes[:3]
    # A box with a non-finite side is not kept and suppresses nothing, whatever its score.
    for bad in (np.nan, np.inf, -np.inf):
        dirty = np.array([[0.0, 0, bad, 1], [0, 0, 1, 1]])
        keep = non_max_suppression(dirty, [0.9, 0.5], iou_threshold=0.1, max_detections=2)
        assert_matches(keep, [1], 2)
    keep = non_max_suppression(
        boxes, [0.1, 0.9, 0.5], iou_threshold=0.5, max_detections=3, where=[True, False, True]
    )
    assert_matches(keep, [2, 0], 3)


def test_ties_keep_the_lower_index_first():
    boxes = np.array([[0.0, 0, 1, 1], [2, 0, 3, 1], [4, 0, 5, 1], [0, 0, 1, 1]])
    scores = np.array([0.5, 0.7, 0.5, 0.5])
    assert_matches(non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=4), [1, 0, 2], 4)


def test_degenerate_boxes_neither_suppress_nor_are_suppressed():
    boxes = np.array(
        [
            [0.0, 0, 10, 10],
            [5, 5, 5, 5],  # a point inside the first box
            [5, 5, 5, 5],  # the same point: 0/0 IoU, not a suppression
            [3, 0, 3, 10],  # zero width
            [8, 8, 2, 2],  # inverted (x2 < x1)
            [np.nan, 0, 10, 10],  # non-finite coordinates: never kept (the input rules)
            [0, 0, np.inf, np.inf],
            [0, 0, np.inf, np.inf],
        ]
    )
    scores = np.arange(8, 0, -1) / 10
    assert_matches(non_max_suppression(boxes, scores, iou_threshold=0.0, max_detections=8), list(range(5)), 8)


def test_max_detections_cuts_the_greedy_list_and_pre_nms_top_k_drops_the_lowest():
    rng = np.random.default_rng(7)
    boxes = clustered_boxes(rng, 60, clusters=12, size=8.0).astype(np.float32)
    scores = rng.permutation(60).astype(np.float32)
    full = reference_nms(boxes, scores, 0.5, 60)
    assert len(full) > 5
    assert_matches(non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=5), full[:5], 5)
    for top_k in [1, 10, 25, 60, 1000]:
        keep = jitted_nms(boxes, scores, iou_threshold=0.5, max_detections=60, pre_nms_top_k=top_k)
        assert_matches(keep, reference_nms(boxes, scores, 0.5, 60, top_k=top_k), 60)


def test_more_slots_than_boxes_and_no_boxes():
    assert_matches(non_max_suppression([[0.0, 0, 1, 1]], [0.3], iou_threshold=0.5, max_detections=3), [0], 3)
    assert_matches(
        non_max_suppression(np.zeros((0, 4)), np.zeros(0), iou_threshold=0.5, max_detections=2), [], 2
    )
    keep = non_max_suppression(
        [[0.0, 0, 1, 1]], [0.3], iou_threshold=0.5, max_detections=2, score_threshold=0.5
    )
    assert_matches(keep, [], 2)


# --- transformations and dtypes -----------------------------------------------------------


def test_jit_with_traced_thresholds_and_vmap_over_images():
    rng = np.random.default_rng(3)
    batch, n, max_det = 5, 30, 12
    boxes = np.stack([clustered_boxes(rng, n) for _ in range(batch)]).astype(np.float32)
    scores = np.stack([rng.permutation(n) for _ in range(batch)]).astype(np.float32) / n
    classes = rng.integers(0, 2, size=(batch, n)).astype(np.int32)

    @jax.jit
    def batched(b, s, c, iou_threshold, score_threshold):
        nms = functools.partial(
            non_max_suppression,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            max_detections=max_det,
        )
        return jax.vmap(lambda b, s, c: nms(b, s, labels=c))(b, s, c)

    for iou_threshold, score_threshold in [(0.5, 0.105), (0.3, 0.61)]:
        assert all(far_from_threshold(b.astype(np.float64), iou_threshold) for b in boxes)
        indices, valid = batched(boxes, scores, classes, iou_threshold, score_threshold)
        assert indices.shape == valid.shape == (batch, max_det)
        for image in range(batch):
            expected = reference_nms(
                boxes[image], scores[image], iou_threshold, max_det, score_threshold, classes[image]
            )
            assert_matches((indices[image], valid[image]), expected, max_det)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_inputs_are_compared_in_float32(dtype):
    rng = np.random.default_rng(4)
    boxes = jnp.asarray(clustered_boxes(rng, 30), dtype)
    scores = jnp.asarray(rng.permutation(30) / 30, dtype)
    as_f32 = np.asarray(boxes.astype(jnp.float32), np.float64)
    assert far_from_threshold(as_f32, 0.5)
    expected = reference_nms(as_f32, np.asarray(scores.astype(jnp.float32)), 0.5, 30)
    assert_matches(non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=30), expected, 30)


# --- input rules --------------------------------------------------------------------------

BOXES = np.array([[0.0, 0, 1, 1], [0, 0, 2, 2]], dtype=np.float32)
SCORES = np.array([0.5, 0.6], dtype=np.float32)


def call(boxes=BOXES, scores=SCORES, **kwargs):
    kwargs = {"iou_threshold": 0.5, "max_detections": 2} | kwargs
    return non_max_suppression(boxes, scores, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"boxes": BOXES.astype(np.complex64)}, TypeError, "boxes must be real numbers"),
        ({"boxes": BOXES.astype(bool)}, TypeError, "boxes must be real"),
        ({"scores": SCORES.astype(np.complex64)}, TypeError, "scores must be floating"),
        ({"scores": np.array([1, 2])}, TypeError, "scores must be floating"),
        ({"labels": np.array([0.0, 1.0])}, TypeError, "labels must be integer"),
        ({"where": np.array([1, 0])}, TypeError, "where must be a boolean mask"),
        (
            {"boxes": BOXES[:, :3]},
            ValueError,
            r"boxes.shape=\(2, 3\) does not match \(A, 4\): boxes.shape\[1\] is 3, not 4",
        ),
        ({"boxes": BOXES[None]}, ValueError, r"boxes.shape=\(1, 2, 4\)"),
        ({"scores": SCORES[:1]}, ValueError, r"scores.shape=\(1,\).*boxes.shape=\(2, 4\)"),
        ({"scores": SCORES[:, None]}, ValueError, r"scores.shape=\(2, 1\).*boxes.shape=\(2, 4\)"),
        ({"labels": np.zeros(3, np.int32)}, ValueError, r"labels.shape=\(3,\).*boxes.shape=\(2, 4\)"),
        ({"where": np.ones((2, 1), bool)}, ValueError, r"where.shape=\(2, 1\).*boxes.shape=\(2, 4\)"),
        ({"max_detections": 0}, ValueError, "max_detections must be >= 1"),
        ({"max_detections": -3}, ValueError, "max_detections"),
        ({"max_detections": 2.0}, ValueError, "max_detections"),
        ({"max_detections": True}, ValueError, "max_detections"),
        ({"pre_nms_top_k": 0}, ValueError, "pre_nms_top_k must be >= 1"),
        ({"pre_nms_top_k": 1.5}, ValueError, "pre_nms_top_k"),
        ({"iou_threshold": 1.5}, ValueError, r"iou_threshold must be in \[0, 1\]; got 1.5"),
        ({"iou_threshold": -0.1}, ValueError, "iou_threshold must be in"),
        ({"iou_threshold": float("nan")}, ValueError, "iou_threshold must not be NaN"),
        ({"iou_threshold": np.array([0.5])}, ValueError, "iou_threshold must be a scalar"),
        ({"iou_threshold": "0.5"}, (ValueError, TypeError), None),
        ({"score_threshold": float("nan")}, ValueError, "score_threshold must not be NaN"),
        ({"score_threshold": True}, ValueError, "score_threshold must be a real number"),
    ],
)
def test_invalid_inputs_are_rejected_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        call(**kwargs)


def test_lists_and_concrete_jax_thresholds_are_accepted():
    keep, valid = non_max_suppression(
        [[0.0, 0, 1, 1], [0, 0, 2, 2]],
        [0.5, 0.6],
        iou_threshold=jnp.float32(0.2),
        max_detections=2,
        labels=[0, 0],
    )
    assert_matches((keep, valid), [1], 2)
    with pytest.raises(ValueError, match="iou_threshold must be in"):
        call(iou_threshold=jnp.float32(2.0))
