"""Box-range coverage (``jax_dfl.box_range``) against a float64 NumPy brute force, written with loops.

The random data lie on a quarter-pixel grid with power-of-two strides, so every distance, its
quotient by the stride and every box area are exact in float32: the library's float32 results must
equal the float64 reference exactly, ties on the last bin and on the size edges included.
"""

from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jax_dfl
from jax_dfl.box_range import DEFAULT_SIZE_EDGES

STRIDES = (4, 8)
FEATURES = [(8, 8), (4, 4)]  # a 32 x 32 px image
POINTS, POINT_STRIDES = jax_dfl.anchor_points(FEATURES, STRIDES)
SIZE_EDGES = (12.0, 24.0)  # small boxes < 12 px, medium, large >= 24 px (sqrt area)
HIST = 15  # max_histogram_distance


# --- the reference ------------------------------------------------------------------------------


def reference_counts(
    points, point_strides, gt_boxes, gt_mask, *, strides, first, last, size_edges, hist, min_size=None
):
    """Loops over every valid gt and every point, in float64. ``min_size``: the candidate test is
    against the box with its sides shorter than it widened to it about the centre (the assigner's
    rule, written out here); the distances stay those to the box itself."""
    points, point_strides = np.asarray(points, np.float64), np.asarray(point_strides, np.float64)
    boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    mask = np.asarray(gt_mask).reshape(-1)
    levels, sizes = len(strides), len(size_edges) + 1
    num_sides = np.zeros((levels, sizes), np.int64)
    num_clipped = np.zeros((levels, sizes), np.int64)
    num_below = np.zeros((levels, sizes), np.int64)
    max_distance = np.zeros(levels)
    histogram = np.zeros((levels, hist + 2), np.int64)
    for g in range(len(boxes)):
        if not mask[g]:
            continue
        x1, y1, x2, y2 = boxes[g]
        area = max(x2 - x1, 0) * max(y2 - y1, 0)
        size = sum(area >= edge * edge for edge in size_edges)
        tx1, tx2 = widened(x1, x2, min_size)
        ty1, ty2 = widened(y1, y2, min_size)
        for a in range(len(points)):
            x, y = points[a]
            level = list(strides).index(point_strides[a])
            if min(x - tx1, y - ty1, tx2 - x, ty2 - y) <= 0:  # strictly inside only
                continue
            for side in [x - x1, y - y1, x2 - x, y2 - y]:
                d = side / point_strides[a]
                num_sides[level, size] += 1
                num_clipped[level, size] += d < first or d > last
                num_below[level, size] += d < first
                max_distance[level] = max(max_distance[level], d)
                histogram[level, min(max(math.ceil(d), 0), hist + 1)] += 1
    return num_sides, num_clipped, num_below, max_distance, histogram


def widened(low, high, min_size):
    """One side of a box, widened to ``min_size`` about its centre if shorter."""
    if min_size is None or high - low >= min_size:
        return low, high
    centre = (low + high) / 2
    return centre - min_size / 2, centre + min_size / 2


def reference_fraction(points, target_boxes, foreground, point_strides, *, first, last):
    points = np.asarray(points, np.float64)
    boxes = np.asarray(target_boxes, np.float64).reshape(-1, len(points), 4)
    fg = np.asarray(foreground).reshape(-1, len(points))
    clipped = total = 0
    for image in range(len(boxes)):
        for a in range(len(points)):
            if not fg[image, a]:
                continue
            x, y = points[a]
            x1, y1, x2, y2 = boxes[image, a]
            for side in (x - x1, y - y1, x2 - x, y2 - y):
                d = side / float(point_strides[a])
                clipped += d < first or d > last
                total += 1
    return clipped / total if total else 0.0


def random_boxes(rng, shape, *, max_side=40.0):
    """xyxy boxes on a quarter-pixel grid inside about 32 px, some larger than the image."""
    xy = rng.integers(-8, 33 * 4, size=(*shape, 2)) / 4
    wh = rng.integers(1, int(max_side * 4), size=(*shape, 2)) / 4
    return np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)


def random_mask(rng, shape):
    return rng.random(shape) < 0.7


def counts_of(gt_boxes, gt_mask, **kw):
    kw = {"strides": STRIDES, "num_bins": 6, "size_edges": SIZE_EDGES, "max_histogram_distance": HIST} | kw
    return jax_dfl.box_range_counts(POINTS, gt_boxes, gt_mask, point_strides=POINT_STRIDES, **kw)


def assert_counts_equal(counts, expected):
    for got, want, name in zip(counts, expected, jax_dfl.BoxRangeCounts._fields, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=name)


# --- box_range_counts --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_counts_match_the_brute_force(seed):
    rng = np.random.default_rng(seed)
    boxes, mask = random_boxes(rng, (3, 5)), random_mask(rng, (3, 5))
    expected = reference_counts(
        POINTS, POINT_STRIDES, boxes, mask, strides=STRIDES, first=0, last=5, size_edges=SIZE_EDGES, hist=HIST
    )
    counts = counts_of(boxes, mask)
    assert_counts_equal(counts, expected)
    assert counts.num_sides.dtype == jnp.int32 and counts.max_distance.dtype == jnp.float32
    assert expected[1].sum() > 0 and expected[0].sum() > expected[1].sum()  # the data clip some, not all
    assert expected[2].sum() == 0  # strictly inside, first bin 0: nothing below it


def test_counts_with_bin_values_use_their_ends():
    rng = np.random.default_rng(7)
    boxes, mask = random_boxes(rng, (2, 6)), random_mask(rng, (2, 6))
    values = np.array([0.5, 1.0, 2.0, 4.0, 7.5], np.float32)  # first bin above 0: short sides clip too
    counts = counts_of(boxes, mask, num_bins=None, bin_values=values)
    expected = reference_counts(
        POINTS,
        POINT_STRIDES,
        boxes,
        mask,
        strides=STRIDES,
        first=0.5,
        last=7.5,
        size_edges=SIZE_EDGES,
        hist=HIST,
    )
    assert_counts_equal(counts, expected)
    assert 0 < expected[2].sum() < expected[1].sum()  # sides under 0.5 bins clip at the low end
    # Traced bin values (under jit) give the same counts.
    jitted = jax.jit(lambda v: counts_of(boxes, mask, num_bins=None, bin_values=v))(values)
    assert_counts_equal(jitted, expected)


def test_jit_vmap_and_leading_axes_agree():
    rng = np.random.default_rng(1)
    boxes, mask = random_boxes(rng, (4, 3)), random_mask(rng, (4, 3))
    whole = counts_of(boxes, mask)
    jitted = jax.jit(functools.partial(counts_of))(boxes, mask)
    assert_counts_equal(jitted, [np.asarray(x) for x in whole])
    per_image = jax.vmap(counts_of)(boxes, mask)
    assert per_image.num_sides.shape == (4, 2, 3)
    np.testing.assert_array_equal(per_image.num_sides.sum(0), whole.num_sides)
    np.testing.assert_array_equal(per_image.num_clipped.sum(0), whole.num_clipped)
    np.testing.assert_array_equal(per_image.histogram.sum(0), whole.histogram)
    np.testing.assert_array_equal(per_image.max_distance.max(0), whole.max_distance)
    for image in range(4):
        expected = reference_counts(
            POINTS, POINT_STRIDES, boxes[image], mask[image], strides=STRIDES, first=0, last=5,
            size_edges=SIZE_EDGES, hist=HIST,
        )  # fmt: skip
        assert_counts_equal([x[image] for x in per_image], expected)


# --- candidate_min_size: the assigner's widening of small boxes ----------------------------------


@pytest.mark.parametrize(("seed", "min_size"), [(0, 6.0), (1, 10.0), (2, 16.0), (3, 13.5)])
def test_candidate_min_size_matches_the_brute_force(seed, min_size):
    """Small boxes widened for the inside test only: points outside them are counted, with negative
    distances (clipped, below the first bin, histogram slot 0), exactly as the float64 loops say."""
    rng = np.random.default_rng(100 + seed)
    boxes, mask = random_boxes(rng, (3, 6), max_side=14.0), random_mask(rng, (3, 6))
    reference = functools.partial(
        reference_counts, POINTS, POINT_STRIDES, boxes, mask, strides=STRIDES, first=0, last=5,
        size_edges=SIZE_EDGES, hist=HIST,
    )  # fmt: skip
    expected = reference(min_size=min_size)
    assert_counts_equal(counts_of(boxes, mask, candidate_min_size=min_size), expected)
    # Traced (the assigner's option may be traced too), and per image under vmap.
    jitted = jax.jit(lambda m: counts_of(boxes, mask, candidate_min_size=m))(jnp.float32(min_size))
    assert_counts_equal(jitted, expected)
    per_image = jax.vmap(lambda b, m: counts_of(b, m, candidate_min_size=min_size))(boxes, mask)
    np.testing.assert_array_equal(per_image.num_below_first.sum(0), expected[2])
    # The data exercise it: more points than without widening, some outside their box.
    plain = reference()
    assert expected[0].sum() > plain[0].sum()
    assert expected[2].sum() > 0 and plain[2].sum() == 0
    assert expected[2].sum() <= expected[1].sum()


def _assign(points, gt_boxes, gt_mask, *, min_size, rng=None):
    """task_aligned_assign with each point predicting a valid gt (the first, or with ``rng`` a
    random one, moved a little, and random scores): the candidate rule and ``top_k`` decide."""
    num = len(points)
    valid = np.flatnonzero(gt_mask) if np.any(gt_mask) else np.array([0])
    if rng is None:
        pred, scores = np.broadcast_to(gt_boxes[valid[0]], (num, 4)), np.full((num, 1), 0.5)
    else:  # boxes near the gts, so that overlaps (and the metric) vary
        pred = gt_boxes[rng.choice(valid, num)] + rng.uniform(-2, 2, (num, 4))
        low, high = np.minimum(pred[:, :2], pred[:, 2:]), np.maximum(pred[:, :2], pred[:, 2:])
        pred, scores = np.concatenate([low, high], -1), rng.uniform(0.05, 1, (num, 1))
    assign = jax.jit(functools.partial(jax_dfl.task_aligned_assign, top_k=10, candidate_min_size=min_size))
    return assign(
        pred_boxes=jnp.asarray(pred, jnp.float32),
        pred_scores=jnp.asarray(scores, jnp.float32),
        points=points,
        gt_boxes=jnp.asarray(gt_boxes),
        gt_labels=jnp.zeros(len(gt_boxes), jnp.int32),
        gt_mask=jnp.asarray(gt_mask),
    )


def test_reviewers_case_a_small_box_between_points():
    """A 2 x 2 px box on a 4 x 4 grid of stride 8 holds no point; ultralytics 8.4's widening to
    16 px gives it 4 foreground points, half of whose side targets are negative (clipped)."""
    points, point_strides = jax_dfl.anchor_points([(4, 4)], [8])
    gt, gt_mask = np.array([[13.0, 13.0, 15.0, 15.0]], np.float32), np.array([True])
    assign = _assign(points, gt, gt_mask, min_size=16.0)
    assert int(assign.foreground.sum()) == 4
    fraction = jax_dfl.clipped_fraction(
        points, assign.boxes, assign.foreground, point_strides=point_strides, num_bins=16
    )
    expected = reference_fraction(points, assign.boxes, assign.foreground, point_strides, first=0, last=15)
    assert float(fraction) == expected == 0.5
    count = functools.partial(
        jax_dfl.box_range_counts, points, gt, gt_mask, point_strides=point_strides, strides=(8,), num_bins=16
    )
    # Counted without the assigner's rule: nothing, although training clips half of the targets.
    assert int(count().num_sides.sum()) == 0
    widened = count(candidate_min_size=16.0)
    assert int(widened.num_sides.sum()) == 16 and int(widened.num_clipped.sum()) == 8
    assert int(widened.num_below_first.sum()) == 8
    assert int(widened.histogram[0, 0]) == 8  # the negative distances: slot 0
    report = jax_dfl.box_range_report(widened, strides=(8,), num_bins=16, size_edges=DEFAULT_SIZE_EDGES)
    assert report.level_fraction_below_first.tolist() == [0.5]
    assert "| below first bin |" in str(report) and "| 50 % |" in str(report)


def _clipped_targets(points, point_strides, assign, *, first, last):
    """(clipped, below first) side targets of the foreground, float64 loops."""
    clipped = below = 0
    for a in np.flatnonzero(np.asarray(assign.foreground)):
        x, y = np.asarray(points, np.float64)[a]
        x1, y1, x2, y2 = np.asarray(assign.boxes, np.float64)[a]
        for side in (x - x1, y - y1, x2 - x, y2 - y):
            d = side / float(point_strides[a])
            clipped += d < first or d > last
            below += d < first
    return clipped, below


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), min_size=st.sampled_from([None, 8.0, 16.0, 24.0]))
def test_the_counts_bound_the_assigners_foreground_with_the_same_rule(seed, min_size):
    """Property: with the assigner's candidate_min_size, every foreground (point, gt) pair is
    counted, so the foreground's clipped targets (and those below the first bin) are at most the
    counts' (per image, any predictions)."""
    rng = np.random.default_rng(seed)
    boxes, mask = random_boxes(rng, (4,), max_side=30.0), random_mask(rng, (4,))
    assign = _assign(POINTS, boxes, mask, min_size=min_size, rng=rng)
    counts = counts_of(boxes, mask, candidate_min_size=min_size)
    clipped, below = _clipped_targets(POINTS, POINT_STRIDES, assign, first=0, last=5)
    assert clipped <= int(counts.num_clipped.sum()) and below <= int(counts.num_below_first.sum())
    # Pair by pair: the foreground point's gt counts it (the brute force's candidates).
    for a in np.flatnonzero(np.asarray(assign.foreground)):
        g = int(assign.gt_index[a])
        one = np.zeros_like(mask)
        one[g] = True
        alone = reference_counts(
            POINTS[a : a + 1], POINT_STRIDES[a : a + 1], boxes, one, strides=STRIDES, first=0, last=5,
            size_edges=SIZE_EDGES, hist=HIST, min_size=min_size,
        )  # fmt: skip
        assert alone[0].sum() == 4, (a, g)
    if min_size is None:
        assert below == 0  # no widening: foreground points lie inside their boxes


def test_padding_is_ignored_whatever_it_holds():
    rng = np.random.default_rng(2)
    boxes, mask = random_boxes(rng, (2, 4)), np.ones((2, 4), bool)
    clean = counts_of(boxes, mask)
    # Extra slots of garbage (NaN, inf, huge boxes) marked as padding change nothing.
    garbage = np.array([[np.nan, 0, 1, 1], [-np.inf, -np.inf, np.inf, np.inf], [0, 0, 1e6, 1e6]], np.float32)
    padded = np.concatenate([boxes, np.broadcast_to(garbage, (2, 3, 4))], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((2, 3), bool)], axis=1)
    assert_counts_equal(counts_of(padded, padded_mask), [np.asarray(x) for x in clean])
    assert np.isfinite(clean.max_distance).all()


def test_a_distance_exactly_on_the_last_bin_is_representable():
    points, point_strides = jax_dfl.anchor_points([(1, 1)], [8])  # one point at (4, 4)
    # Sides 4, 4, 120, 4 px: 120 / 8 = 15 bins, the last of 16; then 120.25 px is beyond it.
    for right, clipped in [(124.0, 0), (124.25, 1), (123.75, 0)]:
        counts = jax_dfl.box_range_counts(
            points, jnp.array([[0.0, 0.0, right, 8.0]]), jnp.array([True]),
            point_strides=point_strides, strides=(8,), num_bins=16, size_edges=(),
        )  # fmt: skip
        assert int(counts.num_sides[0, 0]) == 4
        assert int(counts.num_clipped[0, 0]) == clipped, right
        assert float(counts.max_distance[0]) == (right - 4) / 8
    # And the same target through clipped_fraction: exactly the last bin is not clipped.
    fraction = jax_dfl.clipped_fraction(
        points,
        jnp.array([[0.0, 0.0, 124.0, 8.0]]),
        jnp.array([True]),
        point_strides=point_strides,
        num_bins=16,
    )
    assert float(fraction) == 0.0


def test_points_on_an_edge_are_not_counted_and_size_edges_are_inclusive_above():
    points, point_strides = jax_dfl.anchor_points([(1, 1)], [8])  # (4, 4)
    boxes = jnp.array(
        [
            [4.0, 0.0, 12.0, 8.0],  # the point on the left edge: not strictly inside
            [0.0, 0.0, 8.0, 8.0],  # sqrt(area) = 8: exactly on the edge, in the upper bucket
            [0.0, 0.0, 8.0, 7.75],  # just below it
        ]
    )
    counts = jax_dfl.box_range_counts(
        points, boxes, jnp.array([True, True, True]), point_strides=point_strides, strides=(8,),
        num_bins=16, size_edges=(8.0,),
    )  # fmt: skip
    np.testing.assert_array_equal(counts.num_sides, [[4, 4]])


def test_non_finite_data_make_max_distance_nan_and_are_not_counted():
    rng = np.random.default_rng(3)
    boxes, mask = random_boxes(rng, (5,)), np.ones(5, bool)
    clean = counts_of(boxes, mask)
    bad_box = boxes.copy()
    bad_box[0, 2] = np.nan
    got = counts_of(bad_box, mask)
    assert np.isnan(got.max_distance).all()
    without = counts_of(boxes, mask & (np.arange(5) != 0))
    np.testing.assert_array_equal(got.num_sides, without.num_sides)
    bad_points = np.asarray(POINTS).copy()
    bad_points[3, 0] = np.inf
    got = jax_dfl.box_range_counts(
        bad_points, boxes, mask, point_strides=POINT_STRIDES, strides=STRIDES, num_bins=6,
        size_edges=SIZE_EDGES, max_histogram_distance=HIST,
    )  # fmt: skip
    assert np.isnan(got.max_distance).all()
    assert int(got.num_sides.sum()) <= int(clean.num_sides.sum())


def test_errors_name_the_argument():
    boxes, mask = np.zeros((3, 4), np.float32), np.ones(3, bool)
    call = functools.partial(jax_dfl.box_range_counts, POINTS, boxes, mask, point_strides=POINT_STRIDES)
    with pytest.raises(ValueError, match=r"num_bins.*bin_values"):
        call(strides=STRIDES)
    with pytest.raises(ValueError, match=r"point_strides holds \[8.0\], not among strides"):
        call(strides=(4,), num_bins=16)
    with pytest.raises(ValueError, match="strides must be distinct"):
        call(strides=(4, 8, 4), num_bins=16)
    with pytest.raises(ValueError, match="strides must be concrete"):
        jax.jit(lambda s: call(strides=s, num_bins=16))(jnp.array([4.0, 8.0]))
    with pytest.raises(ValueError, match="size_edges must be strictly increasing"):
        call(strides=STRIDES, num_bins=16, size_edges=(96, 32))
    with pytest.raises(ValueError, match=r"bin_values\.shape"):
        call(strides=STRIDES, num_bins=16, bin_values=np.arange(8.0))
    with pytest.raises(ValueError, match="bin_values must be strictly increasing"):
        call(strides=STRIDES, bin_values=[0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"gt_mask\.shape"):
        jax_dfl.box_range_counts(
            POINTS, boxes, np.ones(4, bool), point_strides=POINT_STRIDES, strides=STRIDES, num_bins=16
        )
    with pytest.raises(TypeError, match="gt_mask"):
        jax_dfl.box_range_counts(
            POINTS, boxes, np.ones(3, np.float32), point_strides=POINT_STRIDES, strides=STRIDES, num_bins=16
        )


# --- the report and its recommendation ----------------------------------------------------------


def test_chunked_scanning_equals_one_pass():
    rng = np.random.default_rng(4)
    boxes, mask = random_boxes(rng, (6, 4)), random_mask(rng, (6, 4))
    settings_ = dict(strides=STRIDES, num_bins=6, size_edges=SIZE_EDGES)
    scan = jax.jit(functools.partial(counts_of))
    chunks = [scan(boxes[i : i + 2], mask[i : i + 2]) for i in range(0, 6, 2)]
    chunked = jax_dfl.box_range_report(chunks, **settings_)
    whole = jax_dfl.box_range_report(counts_of(boxes, mask), **settings_)
    vmapped = jax_dfl.box_range_report(jax.vmap(counts_of)(boxes, mask), **settings_)
    for report in (chunked, vmapped):
        for field in ("num_sides", "num_clipped", "max_distance", "histogram"):
            np.testing.assert_array_equal(getattr(report, field), getattr(whole, field), err_msg=field)
        assert report.recommended_num_bins == whole.recommended_num_bins
    assert whole.num_sides.dtype == np.int64


def test_report_fractions_ranges_and_recommendation_against_the_reference():
    rng = np.random.default_rng(5)
    boxes, mask = random_boxes(rng, (8, 4)), random_mask(rng, (8, 4))
    report = jax_dfl.box_range_report(
        counts_of(boxes, mask), strides=STRIDES, num_bins=6, size_edges=SIZE_EDGES, coverage=0.9
    )
    sides, clipped, _, max_distance, _ = reference_counts(
        POINTS, POINT_STRIDES, boxes, mask, strides=STRIDES, first=0, last=5, size_edges=SIZE_EDGES, hist=HIST
    )
    np.testing.assert_array_equal(report.representable_range, [20.0, 40.0])
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_array_equal(report.fraction_clipped, clipped / sides)
    np.testing.assert_array_equal(report.level_fraction_clipped, clipped.sum(1) / sides.sum(1))
    assert report.overall_fraction_clipped == clipped.sum() / sides.sum()
    # The recommendation from the distances themselves: the smallest K with a share >= 0.9 of
    # each level's distances at most K - 1.
    for level in range(2):
        distances = _reference_distances(boxes, mask, level)
        expected = next(k for k in range(2, 100) if np.mean(distances <= k - 1) >= 0.9)
        assert report.recommended_num_bins[level] == expected
    assert report.recommended_num_bins_all == max(report.recommended_num_bins)
    np.testing.assert_array_equal(report.max_distance, max_distance)


def _reference_distances(boxes, mask, level):
    out = []
    for (x1, y1, x2, y2), valid in zip(boxes.reshape(-1, 4), mask.reshape(-1), strict=True):
        for (x, y), stride in zip(np.asarray(POINTS), np.asarray(POINT_STRIDES), strict=True):
            sides = np.array([x - x1, y - y1, x2 - x, y2 - y], np.float64)
            if valid and stride == STRIDES[level] and sides.min() > 0:
                out.extend(sides / stride)
    return np.array(out)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    num_bins=st.integers(2, 12),
    coverage=st.sampled_from([0.5, 0.9, 0.99, 0.999, 1.0]),
    min_size=st.sampled_from([None, 10.0]),
)
def test_the_recommendation_is_the_smallest_that_covers(seed, num_bins, coverage, min_size):
    """Property: with the recommended K, at most 1 - coverage of each level's distances clip at the
    far end, and with K - 1 more do; below the first bin is apart (clipped at any K, reported as
    level_fraction_below_first); the far end's count at any K is the histogram's tail beyond slot
    K - 1. The "all" recommendation covers every level."""
    rng = np.random.default_rng(seed)
    boxes, mask = random_boxes(rng, (2, 3), max_side=24.0), random_mask(rng, (2, 3))
    count = functools.partial(counts_of, boxes, mask, candidate_min_size=min_size)
    counts = count(num_bins=num_bins)
    report = jax_dfl.box_range_report(
        counts, strides=STRIDES, num_bins=num_bins, size_edges=SIZE_EDGES, coverage=coverage
    )
    sides = np.asarray(counts.num_sides).sum(1)

    def far(c):  # (L,) clipped beyond the last bin
        return np.asarray(c.num_clipped).sum(1) - np.asarray(c.num_below_first).sum(1)

    np.testing.assert_array_equal(far(counts), sides - np.asarray(counts.histogram)[:, :num_bins].sum(1))
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(
            report.level_fraction_below_first, np.asarray(counts.num_below_first).sum(1) / sides
        )
    for level, k in enumerate(report.recommended_num_bins):
        if sides[level] == 0:
            assert k is None
            continue
        assert k is not None and k >= 2
        at_k = count(num_bins=k)
        assert far(at_k)[level] / sides[level] <= 1 - coverage + 1e-12
        below_first = np.asarray(at_k.num_below_first)[level].sum()
        assert below_first == np.asarray(counts.num_below_first)[level].sum()  # whatever K
        total = np.asarray(at_k.num_clipped)[level].sum() / sides[level]
        assert total <= 1 - coverage + below_first / sides[level] + 1e-12
        if k > 2:
            assert far(count(num_bins=k - 1))[level] / sides[level] > 1 - coverage + 1e-12
    if report.recommended_num_bins_all is not None:
        k_all = report.recommended_num_bins_all
        assert np.all(far(count(num_bins=k_all)) <= (1 - coverage) * sides + 1e-9)
        if coverage == 1.0 and k_all > 2:  # the smallest under which no level clips at the far end
            assert far(count(num_bins=k_all - 1)).sum() > 0


def test_the_report_shows_the_share_below_a_first_bin_above_zero():
    """bin_values[0] > 0: sides in (0, bin_values[0]) clip at any number of bins; the report gives
    their share per level beside the recommendation (float64 brute force), and no such column when
    none are below."""
    rng = np.random.default_rng(11)
    boxes, mask = random_boxes(rng, (6, 4)), random_mask(rng, (6, 4))
    values = np.array([0.5, 1.0, 2.0, 4.0, 7.5], np.float32)
    settings_ = dict(strides=STRIDES, num_bins=None, bin_values=values, size_edges=SIZE_EDGES)
    report = jax_dfl.box_range_report(counts_of(boxes, mask, **settings_), **settings_, coverage=0.9)
    for level in range(2):
        distances = _reference_distances(boxes, mask, level)
        assert report.level_fraction_below_first[level] == np.mean(distances < 0.5) > 0
        # The recommendation is about the far end only.
        expected = next(k for k in range(2, 100) if np.mean(distances <= k - 1) >= 0.9)
        assert report.recommended_num_bins[level] == expected
    header, _, first_row, *_ = [line for line in str(report).splitlines() if line.startswith("|")]
    assert header.endswith("| below first bin | num_bins for 90 % |")
    assert f"| {100 * report.level_fraction_below_first[0]:.3g} % | " in first_row
    as_dict = report.to_dict()
    assert as_dict["num_below_first"] == int(report.num_below_first.sum()) > 0
    assert as_dict["levels"][1]["fraction_below_first"] == report.level_fraction_below_first[1]
    # Uniform bins (first 0), no widening: nothing below, no column.
    plain = jax_dfl.box_range_report(
        counts_of(boxes, mask), strides=STRIDES, num_bins=6, size_edges=SIZE_EDGES
    )
    assert plain.num_below_first.sum() == 0 and "below first bin" not in str(plain)
    assert plain.level_fraction_below_first.tolist() == [0.0, 0.0]


def test_the_report_sums_in_int64_past_int32():
    """Chunks each near int32's limit add up exactly (NumPy int64 on the host), vmapped ones too."""
    big = np.int32(2**31 - 1000)
    one = jax_dfl.BoxRangeCounts(
        num_sides=jnp.full((1, 1), big, jnp.int32),
        num_clipped=jnp.full((1, 1), big // 2, jnp.int32),
        num_below_first=jnp.zeros((1, 1), jnp.int32),
        max_distance=jnp.array([3.5], jnp.float32),
        histogram=jnp.array([[0, 0, big - big // 2, big // 2, 0]], jnp.int32),
    )
    settings_ = dict(strides=(8,), num_bins=3, size_edges=())
    for counts in ([one, one, one], jax.tree.map(lambda x: jnp.stack([x, x, x]), one)):
        report = jax_dfl.box_range_report(counts, **settings_, coverage=1.0)
        assert report.num_sides.dtype == np.int64 and report.histogram.dtype == np.int64
        assert int(report.num_sides[0, 0]) == 3 * int(big)
        assert int(report.num_clipped[0, 0]) == 3 * (int(big) // 2)
        assert int(report.histogram.sum()) == 3 * int(big)
        assert report.recommended_num_bins == (4,)  # slot 3 holds the farthest
        assert report.overall_fraction_clipped == (int(big) // 2) / int(big)


def test_recommendation_beyond_the_histogram_is_none():
    points, point_strides = jax_dfl.anchor_points([(1, 1)], [4])  # (2, 2)
    counts = jax_dfl.box_range_counts(
        points, jnp.array([[0.0, 0.0, 400.0, 400.0]]), jnp.array([True]), point_strides=point_strides,
        strides=(4,), num_bins=16, max_histogram_distance=20,
    )  # fmt: skip
    report = jax_dfl.box_range_report(counts, strides=(4,), num_bins=16, coverage=1.0)
    assert report.recommended_num_bins == (None,) and report.recommended_num_bins_all is None
    assert int(report.histogram[0, -1]) == 2  # the right and bottom sides: 99.5 bins
    assert "| - |" in str(report)


def test_report_text_and_dict():
    rng = np.random.default_rng(6)
    boxes, mask = random_boxes(rng, (3, 4)), random_mask(rng, (3, 4))
    report = jax_dfl.box_range_report(
        counts_of(boxes, mask), strides=STRIDES, num_bins=6, size_edges=SIZE_EDGES, coverage=0.99
    )
    text = str(report)
    assert text == report.to_markdown()
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 2 + 1  # header, rule, two levels, all
    assert "num_bins for 99 %" in lines[0] and "< 12 px" in lines[0] and ">= 24 px" in lines[0]
    assert lines[2].startswith("| 0 | 4 | 20 |")
    as_dict = json.loads(json.dumps(report.to_dict()))  # JSON-ready
    assert as_dict["num_sides"] == int(report.num_sides.sum())
    assert [lv["representable_range_px"] for lv in as_dict["levels"]] == [20.0, 40.0]
    assert list(as_dict["levels"][0]["by_size"]) == report.size_labels()
    assert report.size_labels() == ["< 12 px", "12-24 px", ">= 24 px"]
    # The default buckets are COCO's thresholds (on sqrt(box area) here).
    assert DEFAULT_SIZE_EDGES == (32.0, 96.0)


def test_report_errors_name_the_argument():
    counts = counts_of(np.zeros((2, 4), np.float32), np.ones(2, bool))
    ok = dict(strides=STRIDES, num_bins=6, size_edges=SIZE_EDGES)
    with pytest.raises(ValueError, match="strides"):
        jax_dfl.box_range_report(counts, **(ok | {"strides": (4, 8, 16)}))
    with pytest.raises(ValueError, match="size_edges"):
        jax_dfl.box_range_report(counts, **(ok | {"size_edges": (32.0,)}))
    for bad in (0.0, 1.5, "0.9", True):
        with pytest.raises(ValueError, match="coverage"):
            jax_dfl.box_range_report(counts, **ok, coverage=bad)
    with pytest.raises(ValueError, match="counts"):
        jax_dfl.box_range_report([], **ok)
    with pytest.raises(ValueError, match="num_bins"):
        jax_dfl.box_range_report(counts, strides=STRIDES, size_edges=SIZE_EDGES)
    with pytest.raises(TypeError, match="num_sides"):
        jax_dfl.box_range_report(counts._replace(num_sides=counts.num_sides.astype(jnp.float32)), **ok)
    with pytest.raises(ValueError, match="counts"):
        jax_dfl.box_range_report(
            [counts, counts_of(np.zeros((2, 4)), np.ones(2, bool), max_histogram_distance=3)], **ok
        )


# --- representable_range ---------------------------------------------------------------------


def test_representable_range_closed_form():
    np.testing.assert_array_equal(jax_dfl.representable_range([8, 16, 32], num_bins=16), [120, 240, 480])
    np.testing.assert_array_equal(jax_dfl.representable_range([8, 16, 32], num_bins=17), [128, 256, 512])
    log_bins = np.concatenate([[0.0], np.geomspace(0.25, 15, 15)]).astype(np.float32)
    np.testing.assert_allclose(jax_dfl.representable_range([4, 8], bin_values=log_bins), [60, 120], rtol=1e-6)
    np.testing.assert_array_equal(
        jax.jit(lambda s: jax_dfl.representable_range(s, num_bins=16))(jnp.array([8.0])), [120.0]
    )
    with pytest.raises(ValueError, match="num_bins"):
        jax_dfl.representable_range([8])


# --- clipped_fraction --------------------------------------------------------------------------


def _assigned(rng, shape):
    """Random per-point target boxes (each point's own box, sometimes not containing it)."""
    return random_boxes(rng, (*shape, len(POINTS))), random_mask(rng, (*shape, len(POINTS)))


@pytest.mark.parametrize("seed", range(3))
def test_clipped_fraction_matches_the_brute_force_one_image_and_batched(seed):
    rng = np.random.default_rng(seed)
    boxes, fg = _assigned(rng, (3,))
    call = functools.partial(jax_dfl.clipped_fraction, point_strides=POINT_STRIDES, num_bins=6)
    for image in range(3):
        expected = reference_fraction(POINTS, boxes[image], fg[image], POINT_STRIDES, first=0, last=5)
        assert float(call(POINTS, boxes[image], fg[image])) == pytest.approx(expected, rel=1e-6)
    per_image = jax.jit(jax.vmap(call, in_axes=(None, 0, 0)))(POINTS, boxes, fg)
    assert per_image.shape == (3,) and per_image.dtype == jnp.float32
    batch = reference_fraction(POINTS, boxes, fg, POINT_STRIDES, first=0, last=5)
    assert float(jax.jit(call)(POINTS, boxes, fg)) == pytest.approx(batch, rel=1e-6)
    values = np.array([0.25, 1.0, 3.0, 6.0], np.float32)
    expected = reference_fraction(POINTS, boxes, fg, POINT_STRIDES, first=0.25, last=6.0)
    got = jax.jit(
        lambda v: jax_dfl.clipped_fraction(POINTS, boxes, fg, point_strides=POINT_STRIDES, bin_values=v)
    )(values)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_clipped_fraction_ignores_background_and_flags_non_finite_foreground():
    rng = np.random.default_rng(8)
    boxes, fg = _assigned(rng, ())
    call = functools.partial(jax_dfl.clipped_fraction, point_strides=POINT_STRIDES, num_bins=6)
    clean = float(call(POINTS, boxes, fg))
    dirty = boxes.copy()
    dirty[~fg] = np.nan
    assert float(call(POINTS, dirty, fg)) == clean
    assert float(call(POINTS, boxes, np.zeros_like(fg))) == 0.0  # no foreground: nothing clipped
    first = int(np.argmax(fg))
    dirty = boxes.copy()
    dirty[first, 0] = -np.inf
    assert np.isnan(float(call(POINTS, dirty, fg)))


def test_clipped_fraction_of_the_candidates_equals_the_counts():
    """Each gt's candidates as foreground (its box at every point) give the counts' fraction."""
    rng = np.random.default_rng(9)
    boxes = random_boxes(rng, (6,))
    targets = np.broadcast_to(boxes[:, None, :], (6, len(POINTS), 4))
    distances = np.asarray(jax_dfl.bbox2distance(POINTS, targets))
    candidates = distances.min(-1) > 0
    fraction = jax_dfl.clipped_fraction(POINTS, targets, candidates, point_strides=POINT_STRIDES, num_bins=6)
    counts = counts_of(boxes, np.ones(6, bool))
    assert float(fraction) == pytest.approx(
        int(counts.num_clipped.sum()) / int(counts.num_sides.sum()), rel=1e-6
    )


def test_clipped_fraction_is_where_dfl_clips_the_target():
    """Independent of the comparisons above: DFL's gradient in its target is 0 exactly where the
    target was clipped (outside [0, num_bins - 1]); the last bin itself is inside."""
    rng = np.random.default_rng(10)
    boxes, fg = _assigned(rng, ())
    fg[0], boxes[0] = (
        True,
        [POINTS[0, 0] - 4, POINTS[0, 1] - 4, POINTS[0, 0] + 20, POINTS[0, 1] + 4],
    )  # 5 bins
    targets = jax_dfl.bbox2distance(POINTS, boxes) / POINT_STRIDES[:, None]  # as yolo_box_loss makes them
    logits = jax.random.normal(jax.random.PRNGKey(0), (len(POINTS), 4, 6))
    slope = jax.grad(lambda t: jax_dfl.distribution_focal_loss(logits, t).sum())(targets)
    flat = np.asarray(slope == 0) & fg[:, None]
    assert float(targets[0, 2]) == 5.0 and not flat[0, 2]  # on the last bin: not clipped
    fraction = jax_dfl.clipped_fraction(POINTS, boxes, fg, point_strides=POINT_STRIDES, num_bins=6)
    assert 0 < float(fraction) < 1
    assert float(fraction) == pytest.approx(flat.sum() / (4 * fg.sum()), rel=1e-6)
