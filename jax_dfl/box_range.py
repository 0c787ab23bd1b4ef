"""Do the bins cover the boxes? The box range of a distribution head, before and during training.

Each side of a box is a distance from an anchor point in units of the point's
stride, predicted over the bins ``0 .. num_bins - 1`` (or ``bin_values``). The
largest side distance a level of stride ``s`` can represent is
``s * (num_bins - 1)`` pixels (``s * bin_values[-1]``); DFL clips farther
targets to the last bin, so boxes stop growing there (and targets below the
first bin to the first). These functions measure how much of a data set (or of
a training batch's targets) lies outside the bins.

Inputs follow the input rules of ``docs/conventions.md``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_dfl import _checks
from jax_dfl.assignment import _widen
from jax_dfl.boxes import bbox2distance

# COCO's size thresholds (32, 96 px), here on sqrt(box area) (COCO compares its annotations' area).
DEFAULT_SIZE_EDGES = (32.0, 96.0)
# Unused rows of clipped_fraction: a well-formed box and point, so no NaN meets a masked branch.
_SAFE_BOX = (0.0, 0.0, 2.0, 2.0)
_SAFE_POINT = (1.0, 1.0)


class BoxRangeCounts(NamedTuple):
    """Counts of foreground side distances from :func:`box_range_counts` (``L`` levels, ``S`` sizes).

    Every field is a sum (or, for ``max_distance``, a maximum) over the images
    and gt boxes given, so the counts of several chunks of a data set add up
    (:func:`box_range_report` does it).
    """

    num_sides: jax.Array
    """``(L, S)`` int32: side distances counted, by level and by gt size bucket (4 per candidate)."""
    num_clipped: jax.Array
    """``(L, S)`` int32: those outside the bins' range, which DFL would clip."""
    num_below_first: jax.Array
    """``(L, S)`` int32: those of ``num_clipped`` below the first bin value (``d < 0``, or
    ``d < bin_values[0]``), which no number of bins fixes: negative distances of points outside a
    small box that ``candidate_min_size`` widened, or distances under a first bin value above 0."""
    max_distance: jax.Array
    """``(L,)`` float: the largest counted side distance, in bin units (pixels / stride); 0 for a
    level with none; NaN if a point, a point stride or a valid gt box is not finite."""
    histogram: jax.Array
    """``(L, max_histogram_distance + 2)`` int32: slot ``j`` counts side distances ``d`` with
    ``j - 1 < d <= j`` (bin units), the last slot those above ``max_histogram_distance``. Slot 0
    holds ``d <= 0``, negative distances (from ``candidate_min_size``) included: read the far end
    from the histogram and the low end from ``num_below_first``."""


def _static_numbers(name: str, values, *, allow_empty: bool) -> tuple[float, ...]:
    """A concrete 1-D sequence of positive, finite numbers, as Python floats (the callers check
    their order); a ValueError naming ``name`` otherwise."""
    if isinstance(values, jax.core.Tracer):
        raise ValueError(f"{name} must be concrete Python numbers (they fix the output's size); got a tracer")
    try:
        numbers = tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1).tolist())
        flat = np.asarray(values).ndim == 1
    except (TypeError, ValueError):
        numbers, flat = (), False
    if not flat or (not numbers and not allow_empty) or isinstance(values, str):
        raise ValueError(
            f"{name} must be a {'' if allow_empty else 'non-empty '}sequence of numbers; got {values!r}"
        )
    if not all(math.isfinite(v) and v > 0 for v in numbers):
        raise ValueError(f"{name} must be positive and finite; got {list(numbers)}")
    return numbers


def _check_strides(strides) -> tuple[float, ...]:
    numbers = _static_numbers("strides", strides, allow_empty=False)
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"strides must be distinct (one per level); got {list(numbers)}")
    return numbers


def _check_size_edges(size_edges) -> tuple[float, ...]:
    numbers = _static_numbers("size_edges", size_edges, allow_empty=True)
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise ValueError(f"size_edges must be strictly increasing; got {list(numbers)}")
    return numbers


def _bin_dims(fn: str, num_bins: int | None, bin_values) -> dict[str, int]:
    """``dims`` for ``_checks.arrays``: ``num_bins`` (checked) fixes the length of ``bin_values``."""
    if num_bins is None and bin_values is None:
        raise ValueError(f"{fn}: give num_bins (bins 0 .. num_bins - 1) or bin_values")
    return {} if num_bins is None else {"num_bins": _checks.check_num_bins(num_bins)}


def _bin_range(num_bins: int | None, bin_values: jax.Array | None, dtype) -> tuple[Any, Any]:
    """``(first, last)`` bin value: ``(0, num_bins - 1)`` or the ends of the checked ``bin_values``."""
    values = _checks.bin_values(bin_values, dtype)
    if values is None:
        assert num_bins is not None  # _bin_dims refused neither
        return jnp.asarray(0, dtype), jnp.asarray(num_bins - 1, dtype)
    return values[0], values[-1]


def representable_range(
    strides: ArrayLike, *, num_bins: int | None = None, bin_values: ArrayLike | None = None
) -> jax.Array:
    r"""The largest side distance each level can represent, in pixels: ``strides * last bin``.

    .. math::
      R_l = s_l \cdot (K - 1) \quad\text{(bins } 0, \dots, K - 1\text{)}, \qquad
      R_l = s_l \cdot v_{K-1} \quad\text{(}\texttt{bin\_values}\ v\text{)}.

    A point of stride :math:`s_l` predicts boxes reaching at most :math:`R_l`
    from it on each side, so at most :math:`2 R_l` across: ultralytics'
    ``reg_max=16`` (16 bins, 0..15) at strides 8/16/32 gives 120/240/480 px.
    Farther targets are clipped to the last bin by DFL.

    .. seealso::
      :func:`box_range_counts` (how much of a data set lies beyond),
      :doc:`/box_range`.

    Args:
      strides: ``(L,)`` per-level strides, pixels per bin (float or int).
      num_bins: the number of uniform bins ``0 .. num_bins - 1`` (a Python int ``>= 2``).
      bin_values: ``(num_bins,)`` strictly increasing bin positions instead (or as well:
        then of length ``num_bins``).

    Returns:
      ``(L,)`` pixels, at least float32.

    Examples:
      >>> print(representable_range([8, 16, 32], num_bins=16))  # YOLOv8's reg_max=16
      [120. 240. 480.]
      >>> print(representable_range([8, 16, 32], bin_values=[0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]))
      [ 256.  512. 1024.]
    """
    dims = _bin_dims("representable_range", num_bins, bin_values)
    strides, bin_values = _checks.arrays(
        "representable_range",
        strides=(strides, "real", "L"),
        bin_values=(bin_values, "real | None", "num_bins"),
        dims=dims,
        minimum={"num_bins": 2},
    )
    dtype = _checks.compute_dtype(strides.dtype)
    _, last = _bin_range(num_bins, bin_values, dtype)
    return strides.astype(dtype) * last


def box_range_counts(
    points: ArrayLike,
    gt_boxes: ArrayLike,
    gt_mask: ArrayLike,
    *,
    point_strides: ArrayLike,
    strides: Sequence[float],
    num_bins: int | None = None,
    bin_values: ArrayLike | None = None,
    size_edges: Sequence[float] = DEFAULT_SIZE_EDGES,
    max_histogram_distance: int = 255,
    candidate_min_size: float | ArrayLike | None = None,
) -> BoxRangeCounts:
    r"""Counts of the candidate side distances of padded ground truth, and of those outside the bins.

    **Which distances.** For each valid gt box :math:`g` (``gt_mask``) and each
    point :math:`a` strictly inside it (all four pixel distances to its sides
    :math:`> 0`), the four side distances in bin units,

    .. math::
      d_{g,a} = \mathrm{bbox2distance}(p_a, b_g) / s_a \in \mathbb{R}^4,

    are counted at the point's level (the ``l`` with ``strides[l] == point_strides[a]``).
    "Strictly inside" is the candidate test of :func:`jax_dfl.task_aligned_assign`
    (and of ultralytics' ``TaskAlignedAssigner``) at a margin of 0. With
    ``candidate_min_size=m``, as the assigner's option of that name, the test
    is against the box widened as the assigner widens it (sides shorter than
    :math:`m` grow to :math:`m` about the centre), while the distances are
    still to the box itself: a point outside a small box can then be counted,
    with negative side distances, which DFL clips at the low end (counted in
    ``num_clipped`` and ``num_below_first``; histogram slot 0).

    **What the counts bound, and when.** *If* ``candidate_min_size`` is the
    one the assigner uses (``None`` for :func:`jax_dfl.task_aligned_assign`'s
    default, as ultralytics up to 8.3; ``16.0`` for ultralytics 8.4's default
    at strides 8, 16, 32), the counted points are a superset of the assigner's
    candidates at any ``candidate_eps > 0``, and its foreground (at most
    ``top_k`` of them per gt) is a subset. Then the counts bound what training
    can meet: if no counted distance is clipped, no DFL target of this data
    will be; the number of clipped targets is at most the number counted here.
    Counted with another candidate rule they bound nothing: counted without
    ``candidate_min_size`` for an assigner that widens, a gt box with a side
    shorter than its ``candidate_min_size`` can get foreground points outside
    it, whose clipped targets are not counted. Which candidates the assigner
    picks depends on the model (it usually prefers the level whose predicted
    boxes fit); :func:`clipped_fraction` measures those during training.

    **What is counted**, by level and by the gt's size bucket (its
    :math:`\sqrt{\text{area}}` in pixels against ``size_edges``: bucket ``i``
    holds ``size_edges[i-1] <= sqrt(area) < size_edges[i]``): the number of
    side distances, the number outside the bins' range ``[first, last]``
    (``[0, num_bins - 1]`` or ``[bin_values[0], bin_values[-1]]``), which
    :func:`jax_dfl.distribution_focal_loss` clips, and of those the number below
    ``first``. A distance exactly on the first or last bin is representable, not
    clipped. Per level also the largest distance and a histogram with unit-wide
    slots, from which :func:`box_range_report` finds the smallest ``num_bins``
    that covers a given fraction at the far end.

    Every leading axis of ``gt_boxes`` (images of a chunk) is summed over,
    and so does :func:`box_range_report` over chunks: scan a data set in
    chunks of padded boxes, under ``jit``, and add the counts on the host. The
    points are shared by every image, as :func:`jax_dfl.anchor_points` returns
    them. Under :func:`jax.vmap` over images the fields get a leading axis,
    which :func:`box_range_report` sums too.

    Padding slots (``gt_mask=False``) are ignored whatever they hold. Points
    whose stride is not one of ``strides`` are not counted (an error when
    ``point_strides`` is concrete). A non-finite point, point stride or valid gt
    box is not counted and makes ``max_distance`` NaN at every level (the input
    rules: a NaN in the data shows in the result).

    .. warning::
      Memory: ``(G, A, 4)`` intermediates for ``G`` gt slots (over all leading
      axes) and ``A`` points, e.g. 13 MB per image at YOLOv8's 8400 points and
      100 slots in float32. Choose the chunk size accordingly.

    .. warning::
      The counts are int32 and one call can overflow them (silently, as JAX
      integers wrap): ``num_sides`` and the histogram grow by up to
      ``4 x G x A`` per image, all of a call's images together. At 1280 px
      (33,600 points at strides 8, 16, 32) and 100 gt slots that is up to
      13.4 million per image, so a call of more than about 150 such images can
      wrap. Rule of thumb: keep ``4 x images x G x A < 2**31`` per call (or
      :func:`jax.vmap` over images, which gives per-image counts);
      :func:`box_range_report` sums calls and images in int64.

    Args:
      points: ``(A, 2)`` point coordinates ``(x, y)`` in pixels.
      gt_boxes: ``(..., G, 4)`` xyxy gt boxes in pixels, padded to ``G`` slots.
      gt_mask: ``(..., G)`` bool, True for real gt boxes.
      point_strides: ``(A,)`` stride of each point (pixels per bin).
      strides: the per-level strides, a static sequence of distinct positive
        numbers (it fixes the number of levels ``L``; level ``l`` is
        ``strides[l]``).
      num_bins: the number of uniform bins ``0 .. num_bins - 1`` (a Python int
        ``>= 2``); YOLOv8's ``reg_max=16`` is 16.
      bin_values: ``(num_bins,)`` strictly increasing bin positions instead
        (may be traced).
      size_edges: increasing :math:`\sqrt{\text{area}}` edges in pixels of the size buckets
        (``S = len(size_edges) + 1``; static). The default, ``(32, 96)``, is
        COCO's thresholds (32, 96 px), on sqrt(box area); ``()`` one bucket.
      max_histogram_distance: the histogram resolves distances up to this many
        bins (a Python int), so recommendations reach ``num_bins =
        max_histogram_distance + 1``.
      candidate_min_size: the assigner's option of that name: for the inside
        test only, gt box sides shorter than this are widened to it about the
        box's centre (``> 0``, pixels; may be traced), with
        :func:`jax_dfl.task_aligned_assign`'s own rule. ``None`` (default): the
        boxes as given. Give the assigner's value, or the counts bound nothing.

    Returns:
      A :class:`BoxRangeCounts`: ``num_sides``, ``num_clipped`` and
      ``num_below_first`` ``(L, S)`` int32, ``max_distance`` ``(L,)`` (at least
      float32), ``histogram``
      ``(L, max_histogram_distance + 2)`` int32.

    Examples:
      One 40 x 40 px box (medium: 32 <= sqrt(area) < 96) on a 4 x 4 grid of
      stride 8 (points at 4, 12, 20, 28 px) and 4 bins (distances up to 3 bins = 24 px):

      >>> import jax.numpy as jnp
      >>> from jax_dfl import anchor_points
      >>> points, point_strides = anchor_points([(4, 4)], [8])
      >>> gt_boxes, gt_mask = jnp.array([[0.0, 0.0, 40.0, 40.0]]), jnp.array([True])
      >>> counts = box_range_counts(
      ...     points, gt_boxes, gt_mask, point_strides=point_strides, strides=(8,), num_bins=4)
      >>> print(counts.num_sides, counts.num_clipped)  # 16 points inside, 4 sides each
      [[ 0 64  0]] [[ 0 24  0]]
      >>> print(counts.max_distance)  # (40 - 4) / 8
      [4.5]

      A 2 x 2 px box between points: no point is inside it, but with
      ``candidate_min_size=16`` (ultralytics 8.4) it is widened to 16 x 16 px for
      the test, and its four nearest points count, each with two negative sides:

      >>> small = jnp.array([[13.0, 13.0, 15.0, 15.0]])
      >>> counts = box_range_counts(points, small, gt_mask, point_strides=point_strides,
      ...                           strides=(8,), num_bins=4, candidate_min_size=16.0)
      >>> print(counts.num_sides, counts.num_clipped, counts.num_below_first)
      [[16  0  0]] [[8 0 0]] [[8 0 0]]

    References:
      Li et al., `Generalized Focal Loss <https://arxiv.org/abs/2006.04388>`_,
      NeurIPS 2020; COCO's size thresholds (`cocodataset.org/#detection-eval
      <https://cocodataset.org/#detection-eval>`_).
    """
    dims = _bin_dims("box_range_counts", num_bins, bin_values)
    strides = _check_strides(strides)
    size_edges = _check_size_edges(size_edges)
    max_histogram_distance = _checks.positive_int("max_histogram_distance", max_histogram_distance)
    if candidate_min_size is not None:
        _checks.positive("candidate_min_size", candidate_min_size)
    points, point_strides, gt_boxes, gt_mask, bin_values = _checks.arrays(
        "box_range_counts",
        points=(points, "real", "A 2"),
        point_strides=(point_strides, "real", "A"),
        gt_boxes=(gt_boxes, "real", "... G 4"),
        gt_mask=(gt_mask, "bool", "... G"),
        bin_values=(bin_values, "real | None", "num_bins"),
        dims=dims,
        minimum={"num_bins": 2},
    )
    dtype = _checks.compute_dtype(points.dtype, point_strides.dtype, gt_boxes.dtype)
    if _checks.is_concrete(point_strides):
        # Compared in the dtype of the maths below, so that a stride such as 6.4 matches itself.
        concrete = np.asarray(point_strides.astype(dtype))
        stray = np.isfinite(concrete) & ~np.isin(concrete, np.asarray(strides, concrete.dtype))
        if stray.any():
            raise ValueError(
                f"box_range_counts: point_strides holds {sorted(set(concrete[stray].tolist()))}, "
                f"not among strides={list(strides)}"
            )
    first, last = _bin_range(num_bins, bin_values, dtype)
    num_levels, num_sizes, num_slots = len(strides), len(size_edges) + 1, max_histogram_distance + 2

    # Every image's boxes against the shared points at once: the counts are sums anyway.
    boxes = gt_boxes.reshape(-1, 4).astype(dtype)
    mask = gt_mask.reshape(-1)
    points, point_strides = points.astype(dtype), point_strides.astype(dtype)
    finite_gt = jnp.all(jnp.isfinite(boxes), axis=-1)
    finite_point = jnp.all(jnp.isfinite(points), axis=-1) & jnp.isfinite(point_strides)
    poisoned = jnp.any(mask & ~finite_gt) | jnp.any(~finite_point)
    # Padding may hold anything: replace it before the maths.
    boxes = jnp.where(mask[:, None], boxes, 0)

    level_match = point_strides[:, None] == jnp.asarray(strides, dtype)[None, :]  # (A, L)
    level = jnp.argmax(level_match, axis=-1)
    on_level = jnp.any(level_match, axis=-1) & finite_point

    # (G, A, 4) pixel distances: the ops of bbox2distance, so they equal yolo_box_loss's targets.
    def distances_to(xyxy):
        return bbox2distance(points, jnp.broadcast_to(xyxy[:, None, :], (xyxy.shape[0], points.shape[0], 4)))

    pixels = distances_to(boxes)
    # The candidate test against the box the assigner tests (widened by its own helper); the
    # distances stay those to the real box, which DFL is given.
    tested = pixels if candidate_min_size is None else distances_to(_widen(boxes, candidate_min_size))
    inside = (jnp.min(tested, axis=-1) > 0) & (mask & finite_gt)[:, None] & on_level[None, :]
    safe_strides = jnp.where(on_level, point_strides, 1)
    distances = pixels / safe_strides[None, :, None]
    below = (distances < first) & inside[..., None]
    clipped = below | ((distances > last) & inside[..., None])

    width = jnp.maximum(boxes[:, 2] - boxes[:, 0], 0)
    height = jnp.maximum(boxes[:, 3] - boxes[:, 1], 0)
    # Areas against squared edges: no square root to round across an edge.
    area = width * height
    edges2 = jnp.asarray([e * e for e in size_edges], dtype)
    size = jnp.sum(area[:, None] >= edges2[None, :], axis=-1)  # (G,)

    cell = level[None, :] * num_sizes + size[:, None]  # (G, A)
    zeros = jnp.zeros((num_levels * num_sizes,), jnp.int32)
    num_sides = zeros.at[cell.reshape(-1)].add(4 * inside.reshape(-1).astype(jnp.int32))
    num_clipped = zeros.at[cell.reshape(-1)].add(jnp.sum(clipped, axis=-1, dtype=jnp.int32).reshape(-1))
    num_below_first = zeros.at[cell.reshape(-1)].add(jnp.sum(below, axis=-1, dtype=jnp.int32).reshape(-1))

    counted = jnp.where(inside[..., None], distances, 0)
    per_point = jnp.max(counted, axis=(0, 2), initial=0)  # (A,)
    max_distance = jnp.zeros((num_levels,), dtype).at[level].max(jnp.where(on_level, per_point, 0))
    max_distance = jnp.where(poisoned, jnp.nan, max_distance)

    # Slot ceil(d): d <= j exactly when ceil(d) <= j, so sums of slots 0..K-1 count d <= K - 1.
    # Negative distances (candidate_min_size) go to slot 0: the far end is read from the histogram.
    slot = jnp.ceil(jnp.clip(counted, 0, num_slots - 1)).astype(jnp.int32)
    histogram = jnp.zeros((num_levels * num_slots,), jnp.int32)
    histogram = histogram.at[(level[None, :, None] * num_slots + slot).reshape(-1)].add(
        jnp.broadcast_to(inside[..., None], slot.shape).reshape(-1).astype(jnp.int32)
    )
    return BoxRangeCounts(
        num_sides=num_sides.reshape(num_levels, num_sizes),
        num_clipped=num_clipped.reshape(num_levels, num_sizes),
        num_below_first=num_below_first.reshape(num_levels, num_sizes),
        max_distance=max_distance,
        histogram=histogram.reshape(num_levels, num_slots),
    )


class BoxRangeReport(NamedTuple):
    """Summed :class:`BoxRangeCounts` with fractions and a ``num_bins`` recommendation.

    From :func:`box_range_report`. NumPy arrays and Python numbers (host-side);
    ``str(report)`` is a Markdown table, :meth:`to_dict` a JSON-ready dict.
    """

    strides: tuple[float, ...]
    """The per-level strides, pixels per bin."""
    size_edges: tuple[float, ...]
    """The size buckets' sqrt-area edges in pixels."""
    num_bins: int
    """The number of bins."""
    bin_values: tuple[float, ...] | None
    """The bin positions, or None for the integers ``0 .. num_bins - 1``."""
    coverage: float
    """The coverage the recommendation is for."""
    representable_range: np.ndarray
    """``(L,)`` pixels: stride x last bin (:func:`representable_range`)."""
    num_sides: np.ndarray
    """``(L, S)`` int64: side distances counted."""
    num_clipped: np.ndarray
    """``(L, S)`` int64: those outside the bins' range."""
    num_below_first: np.ndarray
    """``(L, S)`` int64: those of ``num_clipped`` below the first bin value (see
    :class:`BoxRangeCounts`); clipped whatever the number of bins."""
    max_distance: np.ndarray
    """``(L,)`` float64: the largest side distance, in bin units."""
    histogram: np.ndarray
    """``(L, H + 2)`` int64: the summed histograms (see :class:`BoxRangeCounts`)."""
    recommended_num_bins: tuple[int | None, ...]
    """Per level: the smallest ``num_bins >= 2`` such that at most ``1 - coverage`` of the level's
    counted side distances lie beyond ``num_bins - 1`` (the far end; the low end is
    ``num_below_first``); None if the level has none, or if it would take more bins than the
    histogram resolves. See :func:`box_range_report` for what it guarantees."""
    recommended_num_bins_all: int | None
    """The largest of ``recommended_num_bins``: the ``num_bins`` that covers ``coverage`` of the
    counted (candidate) distances of every level, an upper bound rather than advice (see
    :func:`box_range_report`); None if any level's is None for lack of histogram (not of data)."""

    @property
    def fraction_clipped(self) -> np.ndarray:
        """``(L, S)``: clipped / counted side distances; NaN where none were counted."""
        return _ratio(self.num_clipped, self.num_sides)

    @property
    def level_fraction_clipped(self) -> np.ndarray:
        """``(L,)``: the same over every size."""
        return _ratio(self.num_clipped.sum(-1), self.num_sides.sum(-1))

    @property
    def overall_fraction_clipped(self) -> float:
        """The same over every level and size; NaN if nothing was counted."""
        return float(_ratio(self.num_clipped.sum(), self.num_sides.sum()))

    @property
    def level_fraction_below_first(self) -> np.ndarray:
        """``(L,)``: side distances below the first bin / counted, per level; NaN where none were
        counted. Clipped whatever ``num_bins``: add it to the recommendation's ``1 - coverage``."""
        return _ratio(self.num_below_first.sum(-1), self.num_sides.sum(-1))

    @property
    def overall_fraction_below_first(self) -> float:
        """The same over every level; NaN if nothing was counted."""
        return float(_ratio(self.num_below_first.sum(), self.num_sides.sum()))

    def size_labels(self) -> list[str]:
        """A name for each size bucket, e.g. ``["< 32 px", "32-96 px", ">= 96 px"]``."""
        edges = [f"{e:.4g}" for e in self.size_edges]
        if not edges:
            return ["all sizes"]
        middle = [f"{a}-{b} px" for a, b in itertools.pairwise(edges)]
        return [f"< {edges[0]} px", *middle, f">= {edges[-1]} px"]

    def bins_label(self) -> str:
        """The bins in words, e.g. ``"16 bins 0..15"``."""
        if self.bin_values is None:
            return f"{self.num_bins} bins 0..{self.num_bins - 1}"
        return f"{self.num_bins} bin_values {self.bin_values[0]:g}..{self.bin_values[-1]:g}"

    def to_markdown(self) -> str:
        """The report as a Markdown table, one row per level and one for all levels.

        A column "below first bin" (the share of each level's distances below the first bin value,
        clipped whatever ``num_bins``) stands before the recommendation when any distance is below it.
        """
        # One bucket: its column would repeat "clipped".
        labels = self.size_labels() if self.size_edges else []
        below = [_percent(v) for v in self.level_fraction_below_first] if self.num_below_first.any() else None
        goal = _percent(self.coverage)
        header = [
            "level",
            "stride",
            "range (px)",
            "max distance (px)",
            "sides",
            "clipped",
            *[f"clipped, {label}" for label in labels],
            *(["below first bin"] if below else []),
            f"num_bins for {goal}",
        ]
        rows = []
        for level, stride in enumerate(self.strides):
            rows.append(
                [
                    str(level),
                    f"{stride:g}",
                    f"{self.representable_range[level]:g}",
                    f"{self.max_distance[level] * stride:.4g}",
                    f"{int(self.num_sides[level].sum()):,}",
                    _percent(self.level_fraction_clipped[level]),
                    *[
                        _cell(self.num_clipped[level, s], self.num_sides[level, s])
                        for s in range(len(labels))
                    ],
                    *([below[level]] if below else []),
                    _maybe(self.recommended_num_bins[level]),
                ]
            )
        rows.append(
            [
                "all",
                "",
                "",
                f"{np.max(self.max_distance * np.asarray(self.strides)):.4g}",
                f"{int(self.num_sides.sum()):,}",
                _percent(self.overall_fraction_clipped),
                *[
                    _cell(self.num_clipped[:, s].sum(), self.num_sides[:, s].sum())
                    for s in range(len(labels))
                ],
                *([_percent(self.overall_fraction_below_first)] if below else []),
                _maybe(self.recommended_num_bins_all),
            ]
        )
        lines = [
            f"Bins: {self.bins_label()}; size buckets by sqrt(area).",
            "",
            "| " + " | ".join(header) + " |",
            "| " + " | ".join("---" for _ in header) + " |",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()

    def to_dict(self) -> dict:
        """Everything as JSON-ready Python values (NaN as None)."""
        labels = self.size_labels()
        levels = []
        for level, stride in enumerate(self.strides):
            levels.append(
                {
                    "level": level,
                    "stride": stride,
                    "representable_range_px": _number(self.representable_range[level]),
                    "max_distance_bins": _number(self.max_distance[level]),
                    "max_distance_px": _number(self.max_distance[level] * stride),
                    "num_sides": int(self.num_sides[level].sum()),
                    "num_clipped": int(self.num_clipped[level].sum()),
                    "fraction_clipped": _number(self.level_fraction_clipped[level]),
                    "num_below_first": int(self.num_below_first[level].sum()),
                    "fraction_below_first": _number(self.level_fraction_below_first[level]),
                    "by_size": {
                        label: {
                            "num_sides": int(self.num_sides[level, s]),
                            "num_clipped": int(self.num_clipped[level, s]),
                            "num_below_first": int(self.num_below_first[level, s]),
                            "fraction_clipped": _number(self.fraction_clipped[level, s]),
                        }
                        for s, label in enumerate(labels)
                    },
                    "recommended_num_bins": self.recommended_num_bins[level],
                }
            )
        return {
            "num_bins": self.num_bins,
            "bin_values": None if self.bin_values is None else list(self.bin_values),
            "size_edges": list(self.size_edges),
            "coverage": self.coverage,
            "levels": levels,
            "num_sides": int(self.num_sides.sum()),
            "num_clipped": int(self.num_clipped.sum()),
            "fraction_clipped": _number(self.overall_fraction_clipped),
            "num_below_first": int(self.num_below_first.sum()),
            "fraction_below_first": _number(self.overall_fraction_below_first),
            "recommended_num_bins_all": self.recommended_num_bins_all,
        }


def _ratio(numerator, denominator) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.full(numerator.shape, np.nan), where=denominator > 0)


def _percent(value) -> str:
    return "-" if not np.isfinite(value) else f"{100 * float(value):.3g} %"


def _cell(clipped, sides) -> str:
    return "-" if sides == 0 else f"{_percent(clipped / sides)} of {int(sides):,}"


def _maybe(value) -> str:
    return "-" if value is None else str(value)


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _recommend(histogram: np.ndarray, coverage: float) -> tuple[list[int | None], bool]:
    """Per level the smallest ``num_bins`` covering ``coverage`` (see :class:`BoxRangeReport`), and
    whether some level needed more than the histogram resolves."""
    out: list[int | None] = []
    beyond_histogram = False
    for row in histogram:
        total = int(row.sum())
        if total == 0:
            out.append(None)
            continue
        covered = np.cumsum(row) / total
        # A relative 1e-12 so that a coverage written in decimal (0.9 is 0.9000000000000000222)
        # is met by the counts that meet it in decimal.
        slot = int(np.argmax(covered >= coverage - 1e-12))
        if slot == len(row) - 1:  # only the overflow slot reaches it
            beyond_histogram = True
            out.append(None)
        else:
            out.append(max(slot, 1) + 1)  # slot j: every covered d <= j, so bins 0..j suffice
    return out, beyond_histogram


def box_range_report(
    counts: BoxRangeCounts | Sequence[BoxRangeCounts],
    *,
    strides: Sequence[float],
    num_bins: int | None = None,
    bin_values: ArrayLike | None = None,
    size_edges: Sequence[float] = DEFAULT_SIZE_EDGES,
    coverage: float = 0.999,
) -> BoxRangeReport:
    r"""Sum :class:`BoxRangeCounts` over chunks and images; fractions clipped and ``num_bins`` to use.

    Host-side (NumPy). ``counts`` is one :func:`box_range_counts` result, a
    sequence of them (chunks of a data set), or a result with leading axes
    (from :func:`jax.vmap`): the counts and histograms are summed, the maximum
    distances maximised. Pass the ``strides``, bins and ``size_edges`` the
    counts were made with.

    **The recommendation, and what it guarantees.** From the summed histogram
    (unit-wide slots in bin units, so no interpolation), for each level the
    smallest ``num_bins >= 2`` such that at least ``coverage`` of the level's
    counted side distances :math:`d` satisfy :math:`d \le` ``num_bins - 1``:
    with bins ending at ``num_bins - 1``, at most a ``1 - coverage`` fraction of
    them is clipped at the far end (exactly, for the data counted). For
    ``bin_values``, the same number minus 1 is the last bin value needed.

    The low end is apart: the distances below the first bin value
    (``num_below_first``, the column "below first bin") are clipped whatever
    the number of bins. With bins starting where the counts' start (0 for
    ``num_bins``, else ``bin_values[0]``), the clipped share is at most
    ``1 - coverage`` plus that share, and at most ``1 - coverage`` when it is 0,
    which it is when ``bin_values[0] <= 0`` (or ``num_bins``) and no
    ``candidate_min_size`` widening reaches a point outside its box. With a
    first bin value above 0, the distances in ``(0, bin_values[0])`` clip too.

    ``recommended_num_bins_all``, the largest over levels, is what covers
    ``coverage`` of the candidates of every level: an upper bound, not advice.
    The candidates are every point inside a box at every level (a P3 point
    inside a 1000 px box, say), and the assigner makes few of them foreground,
    mostly at the level whose predicted boxes fit, so a head usually needs far
    fewer bins; read the level that holds the large objects, and measure
    :func:`clipped_fraction` during training. At ``coverage=1`` it is the
    smallest ``num_bins`` under which no target of the counted data is clipped
    at the far end (when the counts' candidate rule is the assigner's, see
    :func:`box_range_counts`); at ``coverage < 1`` it bounds the *number* of
    clipped candidate distances, not their share among the foreground, which
    can be larger. Everything here is about the counted distances: it says
    nothing about data not scanned.

    Sums are int64 (NumPy), whatever the number of chunks; each chunk's int32
    counts must not have wrapped (see :func:`box_range_counts`).

    .. seealso::
      :doc:`/box_range` (how to read the report).

    Args:
      counts: a :class:`BoxRangeCounts`, or a sequence of them.
      strides: the per-level strides given to :func:`box_range_counts`.
      num_bins: the number of bins given to it.
      bin_values: or the bin positions given to it.
      size_edges: the size edges given to it.
      coverage: the fraction of side distances to keep unclipped, in ``(0, 1]``.

    Returns:
      A :class:`BoxRangeReport`; ``print(report)`` shows it as a Markdown table.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jax_dfl import anchor_points, box_range_counts
      >>> points, point_strides = anchor_points([(4, 4)], [8])
      >>> settings = dict(strides=(8,), num_bins=4, size_edges=())
      >>> counts = box_range_counts(points, jnp.array([[0.0, 0.0, 40.0, 40.0]]), jnp.array([True]),
      ...                           point_strides=point_strides, **settings)
      >>> report = box_range_report([counts, counts], coverage=1.0, **settings)  # two chunks
      >>> print(report.num_sides, report.num_clipped, report.recommended_num_bins)
      [[128]] [[48]] (6,)
      >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
      Bins: 4 bins 0..3; size buckets by sqrt(area).
      <BLANKLINE>
      | level | stride | range (px) | max distance (px) | sides | clipped | num_bins for 100 % |
      | --- | --- | --- | --- | --- | --- | --- |
      | 0 | 8 | 24 | 36 | 128 | 37.5 % | 6 |
      | all |  |  | 36 | 128 | 37.5 % | 6 |
    """
    dims = _bin_dims("box_range_report", num_bins, bin_values)
    strides = _check_strides(strides)
    size_edges = _check_size_edges(size_edges)
    if isinstance(coverage, bool) or not isinstance(coverage, int | float) or not 0 < coverage <= 1:
        raise ValueError(f"coverage must be a number in (0, 1]; got {coverage!r}")
    chunks = [counts] if isinstance(counts, BoxRangeCounts) else list(counts)
    if not chunks or not all(isinstance(c, BoxRangeCounts) for c in chunks):
        raise ValueError("counts must be a BoxRangeCounts or a non-empty sequence of them")
    fields = {}
    for field in BoxRangeCounts._fields:
        parts = [np.asarray(getattr(c, field)) for c in chunks]
        if len({p.shape for p in parts}) > 1:
            raise ValueError(
                f"counts: the chunks' {field} differ in size (counted with other strides, "
                "size_edges or max_histogram_distance?)"
            )
        fields[field] = np.stack(parts)
    # The hyper-parameters must be those the counts were made with: say which one disagrees.
    levels, sizes = np.shape(fields["num_sides"])[-2:] if fields["num_sides"].ndim >= 3 else (None, None)
    if levels is not None and levels != len(strides):
        raise ValueError(
            f"box_range_report: the counts have {levels} levels, but strides={list(strides)} gives "
            f"{len(strides)}: pass the strides they were counted with"
        )
    if sizes is not None and sizes != len(size_edges) + 1:
        raise ValueError(
            f"box_range_report: the counts have {sizes} size buckets, but size_edges={list(size_edges)} "
            f"gives {len(size_edges) + 1}: pass the size_edges they were counted with"
        )
    num_sides, num_clipped, num_below_first, max_distance, histogram, bin_values = _checks.arrays(
        "box_range_report",
        num_sides=(fields["num_sides"], "int", "... L S"),
        num_clipped=(fields["num_clipped"], "int", "... L S"),
        num_below_first=(fields["num_below_first"], "int", "... L S"),
        max_distance=(fields["max_distance"], "float", "... L"),
        histogram=(fields["histogram"], "int", "... L H"),
        bin_values=(bin_values, "real | None", "num_bins"),
        dims={"L": len(strides), "S": len(size_edges) + 1, **dims},
        minimum={"num_bins": 2, "H": 2},
        host=True,
    )
    # host=True checked NumPy arrays; say so to the type checker (the checker's return type is Array).
    num_sides, num_clipped, num_below_first, max_distance, histogram = (
        np.asarray(a) for a in (num_sides, num_clipped, num_below_first, max_distance, histogram)
    )
    lead = tuple(range(num_sides.ndim - 2))
    values = None
    if bin_values is not None:
        _checks.bin_values(bin_values, bin_values.dtype)  # finite and increasing, or a ValueError
        values = tuple(float(v) for v in np.asarray(bin_values, np.float64))
    bins = len(values) if values is not None else num_bins
    assert bins is not None
    last = values[-1] if values is not None else bins - 1
    summed_histogram = histogram.sum(axis=lead, dtype=np.int64)
    recommended, beyond_histogram = _recommend(summed_histogram, float(coverage))
    known = [r for r in recommended if r is not None]
    return BoxRangeReport(
        strides=strides,
        size_edges=size_edges,
        num_bins=bins,
        bin_values=values,
        coverage=float(coverage),
        representable_range=np.asarray(strides, np.float64) * last,
        num_sides=num_sides.sum(axis=lead, dtype=np.int64),
        num_clipped=num_clipped.sum(axis=lead, dtype=np.int64),
        num_below_first=num_below_first.sum(axis=lead, dtype=np.int64),
        max_distance=np.max(max_distance.astype(np.float64), axis=lead),
        histogram=summed_histogram,
        recommended_num_bins=tuple(recommended),
        recommended_num_bins_all=None if beyond_histogram or not known else max(known),
    )


def clipped_fraction(
    points: ArrayLike,
    target_boxes: ArrayLike,
    foreground: ArrayLike,
    *,
    point_strides: ArrayLike,
    num_bins: int | None = None,
    bin_values: ArrayLike | None = None,
) -> jax.Array:
    r"""The fraction of the foreground's DFL targets that the bins cannot represent (clipped).

    With :math:`F` the foreground points and
    :math:`d_a = \mathrm{bbox2distance}(p_a, b_a) / s_a` the four side targets
    of point :math:`a` in bin units, exactly as :func:`jax_dfl.yolo_box_loss`
    gives them to DFL:

    .. math::
      \frac{\#\{(a, k) : a \in F,\ d_{a,k} \notin [v_0, v_{K-1}]\}}{4\,|F|}

    with :math:`[v_0, v_{K-1}]` = ``[0, num_bins - 1]`` (or the ends of
    ``bin_values``). A target exactly on the first or last bin is
    representable. Both ends count: without ``candidate_min_size`` the
    assigner's foreground points lie strictly inside their boxes, so only the
    far end clips for them (and the low end for a ``bin_values[0] > 0``); with
    it (ultralytics 8.4's default), a point outside a small box can be
    foreground, and its negative side targets clip at the low end (as
    ultralytics' ``bbox2dist`` clamps them to 0). Log it beside the loss: a growing fraction means boxes are
    being capped (more bins, another level or ``bin_values`` help; see
    :doc:`/box_range`). Takes the arguments of :func:`jax_dfl.yolo_box_loss`
    that define the targets; 0 when there is no foreground.

    Works on one image (vmap it) or on a batch at once (``target_boxes``
    ``(..., A, 4)`` with the points shared): the fraction is then over every
    foreground point of the batch. Background points are ignored whatever they
    hold; a non-finite target of a foreground point (point, box or stride)
    gives NaN.

    Args:
      points: ``(A, 2)`` point coordinates ``(x, y)`` in pixels.
      target_boxes: ``(..., A, 4)`` assigned xyxy gt boxes in pixels.
      foreground: ``(..., A)`` bool foreground mask of the assignment.
      point_strides: ``(A,)`` stride of each point, pixels per bin.
      num_bins: the number of uniform bins ``0 .. num_bins - 1`` (a Python int ``>= 2``).
      bin_values: ``(num_bins,)`` strictly increasing bin positions instead (may be traced).

    Returns:
      A scalar in ``[0, 1]``, at least float32.

    Examples:
      Two foreground points of stride 8 in a 160 px wide box, 16 bins (up to 120 px):

      >>> import jax.numpy as jnp
      >>> points = jnp.array([[20.0, 20.0], [80.0, 20.0], [0.0, 0.0]])
      >>> boxes = jnp.tile(jnp.array([0.0, 0.0, 160.0, 40.0]), (3, 1))
      >>> fraction = clipped_fraction(points, boxes, jnp.array([True, True, False]),
      ...                             point_strides=jnp.full(3, 8.0), num_bins=16)
      >>> print(fraction)  # the first point's right side: 140 px = 17.5 bins > 15
      0.125
    """
    dims = _bin_dims("clipped_fraction", num_bins, bin_values)
    target_boxes, points, foreground, point_strides, bin_values = _checks.arrays(
        "clipped_fraction",
        target_boxes=(target_boxes, "real", "... A 4"),
        points=(points, "real", "A 2"),
        foreground=(foreground, "bool", "... A"),
        point_strides=(point_strides, "real", "A"),
        bin_values=(bin_values, "real | None", "num_bins"),
        dims=dims,
        minimum={"num_bins": 2},
    )
    dtype = _checks.compute_dtype(points.dtype, target_boxes.dtype)
    first, last = _bin_range(num_bins, bin_values, dtype)
    mask = foreground[..., None]
    # Background rows take safe constants before the maths (their garbage never reaches it).
    boxes = jnp.where(mask, target_boxes.astype(dtype), jnp.asarray(_SAFE_BOX, dtype))
    where_points = jnp.where(mask, points.astype(dtype), jnp.asarray(_SAFE_POINT, dtype))
    strides = jnp.where(foreground, point_strides.astype(dtype), 1)
    # A non-finite stride would scale a target to 0 or clip it: NaN instead, as yolo_box_loss.
    strides = jnp.where(jnp.isfinite(strides), strides, jnp.nan)
    targets = bbox2distance(where_points, boxes) / strides[..., None]
    clipped = jnp.sum(((targets < first) | (targets > last)) & mask)
    total = 4 * jnp.sum(foreground)
    fraction = clipped.astype(dtype) / jnp.maximum(total, 1).astype(dtype)
    return jnp.where(jnp.any(~jnp.isfinite(targets) & mask), jnp.nan, fraction)
