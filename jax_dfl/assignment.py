"""Task-aligned label assignment (TOOD), as YOLOv8/v11 and PP-YOLOE use it, for one image.

Fixed shapes: ground truth padded to ``G`` slots with a boolean ``gt_mask``;
batch with :func:`jax.vmap`. Inputs follow the input rules of ``docs/conventions.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import checkify
from jax.typing import ArrayLike

from jax_dfl import _checks, _deprecation
from jax_dfl.boxes import iou_family

ASSIGN_IOU_KINDS = ("iou", "ciou")


class Assignment(NamedTuple):
    """Per-point training targets from :func:`task_aligned_assign` (``A`` points, ``C`` classes)."""

    labels: jax.Array
    """``(A,)`` class of the assigned gt; background points hold gt slot 0's label (see below)."""
    boxes: jax.Array
    """``(A, 4)`` xyxy box of the assigned gt; background points hold gt slot 0's box."""
    scores: jax.Array
    """``(A, C)`` soft class targets: the normalised alignment on the gt's class, 0 elsewhere and on
    background."""
    foreground: jax.Array
    """``(A,)`` bool: the point was assigned a gt."""
    gt_index: jax.Array
    """``(A,)`` int32 gt slot of each point; 0 on background."""


@_deprecation.renamed(
    {"scores": "pred_scores", "iou": "iou_kind"},
    # The order of ultralytics' TaskAlignedAssigner, accepted by position until 0.4.0.
    positional=("pred_scores", "pred_boxes", "points", "gt_labels", "gt_boxes", "gt_mask"),
    split={"eps": ("candidate_eps", "metric_eps", "iou_eps", "norm_eps")},
)
def task_aligned_assign(
    *,
    pred_boxes: ArrayLike,
    pred_scores: ArrayLike,
    points: ArrayLike,
    gt_boxes: ArrayLike,
    gt_labels: ArrayLike,
    gt_mask: ArrayLike,
    top_k: int = 13,
    top_k2: int | None = None,
    alpha: float | ArrayLike = 1.0,
    beta: float | ArrayLike = 6.0,
    iou_kind: str = "ciou",
    candidate_min_size: float | ArrayLike | None = None,
    candidate_eps: float | ArrayLike = 1e-9,
    metric_eps: float | ArrayLike = 1e-9,
    iou_eps: float | ArrayLike = 1e-9,
    norm_eps: float | ArrayLike = 1e-9,
    eps: float | ArrayLike | None = None,
    iou: str | None = None,
) -> Assignment:
    r"""Task-aligned assignment of ground-truth boxes to points (TOOD's TAL), one image.

    For every valid gt :math:`g` and point :math:`a`:

    1. **Candidates**: points strictly inside the gt box, every side distance
       ``> candidate_eps`` (a point on an edge is not a candidate). With
       ``candidate_min_size=s``, a side of a valid gt box shorter than ``s`` is
       widened to ``s`` about the box's centre for this test only (the overlap,
       the metric and the assigned box use the gt box as given), so that small
       objects get candidates.
    2. **Alignment metric** :math:`t_{ga} = s_{ga}^{\alpha}\, u_{ga}^{\beta}` on
       candidates (0 elsewhere), with :math:`s_{ga}` the predicted score of the
       gt's class at the point and :math:`u_{ga}` the overlap of the point's
       predicted box with the gt box: the CIoU clipped at 0 (``iou_kind="ciou"``,
       ultralytics YOLOv8/v11) or the IoU (``iou_kind="iou"``, PP-YOLOE), with
       denominators floored at ``iou_eps``.
    3. **Top-k**: each gt keeps its ``top_k`` points of highest metric, counting
       only those with :math:`t_{ga} >` ``metric_eps``; a gt with fewer such
       candidates keeps fewer (a zero-metric point never becomes foreground).
       Equal metrics are taken in point order (``lax.top_k``).
    4. **Conflicts**: a point kept by several gts goes to the gt of highest
       overlap :math:`u_{ga}` at that point over *all* gts containing it (first
       slot on ties), as ultralytics does. With ``top_k2=k2``, each gt then
       keeps only the ``k2`` of its points of highest metric (equal metrics in
       point order).
    5. **Soft scores**: with :math:`m_g` the gt's largest metric and :math:`o_g`
       its largest overlap over its final points, a foreground point assigned
       to :math:`g` gets the score
       :math:`t_{ga}\, o_g / (m_g + \epsilon_{\mathrm{norm}})` on class ``gt_labels[g]``
       and 0 on every other class.

    Background points: ``foreground=False``, ``scores`` 0, ``gt_index`` 0, and
    ``labels``/``boxes`` those of gt slot 0 (zeros if slot 0 is padding), as
    ultralytics returns them, so that numbers match; use ``foreground`` to
    tell them apart. With ``G = 0`` gt slots the labels are ``C`` (ultralytics'
    background index) and boxes zeros.

    No gradient flows through the assignment (``stop_gradient`` on the inputs,
    as ultralytics runs it under ``torch.no_grad``). Padding slots
    (``gt_mask=False``) are ignored whatever they hold. Memory: ``(G, A)``
    intermediates only; the class score is gathered per gt, never an
    ``(G, A, C)`` array.

    .. warning::
      Two misuses give a plausible but wrong assignment without an error:
      **raw class logits** passed as ``pred_scores`` (the metric expects
      probabilities in ``[0, 1]``, after the sigmoid), and ``pred_boxes`` and
      ``pred_scores`` **swapped**, which the shapes cannot reveal when there are
      4 classes. :func:`validate_assignment_inputs` under ``checkify`` reports
      both.

    .. warning::
      Non-finite inputs give a finite, documented result here (the exception
      the input rules name): a point whose class score, predicted box or
      coordinates are NaN or infinite is never a candidate (it is background),
      and a valid gt box with a non-finite coordinate claims no point (its
      box is what background points copy when it is slot 0). The labels of
      valid gts must be in ``[0, C)``: out-of-range labels are clipped by
      JAX's gather, not reported.

    .. seealso::
      How this compares with ultralytics' ``TaskAlignedAssigner`` across its
      versions: :doc:`/conventions`, "The assigner and ultralytics". With
      ``candidate_min_size=16.0`` (ultralytics' ``stride_val``: the second of
      its strides 8, 16, 32) and ``top_k2`` set as ultralytics' ``topk2``, it
      follows ultralytics 8.4.190 (``ultralytics/utils/tal.py``) up to the one
      difference that page names; both options are off by default, which is
      the assigner of 8.3 and earlier.

    .. versionchanged:: 0.3.0
      Every argument is keyword-only (the positional order of ultralytics,
      ``scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask``, still works
      with a ``DeprecationWarning`` until 0.4.0); ``scores`` is ``pred_scores``,
      ``iou`` is ``iou_kind``, and ``eps``'s four roles are ``candidate_eps``,
      ``metric_eps``, ``iou_eps`` and ``norm_eps``. New options ``top_k2`` and
      ``candidate_min_size`` (ultralytics 8.4's ``topk2`` and small-box
      enlargement), off by default.

    Args:
      pred_boxes: ``(A, 4)`` predicted xyxy boxes, in the units of ``gt_boxes``.
      pred_scores: ``(A, C)`` predicted class probabilities (after the sigmoid).
      points: ``(A, 2)`` point coordinates ``(x, y)``, same units.
      gt_boxes: ``(G, 4)`` xyxy gt boxes.
      gt_labels: ``(G,)`` integer classes.
      gt_mask: ``(G,)`` bool, True for real gts, False for padding.
      top_k: points kept per gt (a Python int, ``1 <= top_k <= A``).
      top_k2: after conflicts are resolved, points each gt keeps at most (a
        Python int, ``1 <= top_k2 <= A``; ultralytics' ``topk2``). ``None``
        (default) or ``top_k`` skip this step, as ultralytics does when
        ``topk2 == topk``.
      alpha: exponent of the score in the metric (``>= 0``; may be traced).
      beta: exponent of the overlap in the metric (``>= 0``; may be traced).
      iou_kind: ``"ciou"`` (CIoU clipped at 0, ultralytics) or ``"iou"`` (PP-YOLOE).
      candidate_min_size: for the candidate test only, gt box sides shorter
        than this are widened to it about the box's centre (``> 0``, in the
        units of ``gt_boxes``; may be traced). ultralytics 8.4 uses its second
        stride (``stride_val``, 16 px for strides 8, 16, 32). ``None``
        (default): the boxes as given.
      candidate_eps: margin of the candidate test (``> 0``; may be traced).
      metric_eps: a kept point's metric must exceed it (``> 0``; may be traced).
      iou_eps: floor of the overlap's denominators (``> 0``; may be traced).
      norm_eps: guard of the score normalisation (``> 0``; may be traced).
      eps: deprecated; sets all four of the above.
      iou: deprecated; write ``iou_kind``.

    Returns:
      An :class:`Assignment` of ``labels (A,)`` (``gt_labels``' dtype),
      ``boxes (A, 4)``, ``scores (A, C)`` (at least float32), ``foreground
      (A,)`` bool and ``gt_index (A,)`` int32.

    Examples:
      One gt over a 4 x 4 grid of stride 8; the predicted box at every point
      is the gt box itself, so the four points inside it share the metric:

      >>> import jax.numpy as jnp
      >>> from jax_dfl.boxes import anchor_points
      >>> points, _ = anchor_points([(4, 4)], [8])
      >>> gt = jnp.array([[0.0, 0.0, 16.0, 16.0]])
      >>> a = task_aligned_assign(
      ...     pred_boxes=jnp.tile(gt, (16, 1)), pred_scores=jnp.full((16, 2), 0.5), points=points,
      ...     gt_boxes=gt, gt_labels=jnp.array([1]), gt_mask=jnp.array([True]), top_k=3)
      >>> print(a.foreground.reshape(4, 4).astype(int))
      [[1 1 0 0]
       [1 0 0 0]
       [0 0 0 0]
       [0 0 0 0]]
      >>> print(a.scores[0])
      [0. 1.]

    References:
      Feng et al., `TOOD: Task-aligned One-stage Object Detection
      <https://arxiv.org/abs/2108.07755>`_, ICCV 2021; Xu et al., `PP-YOLOE
      <https://arxiv.org/abs/2203.16250>`_, 2022; ultralytics
      ``TaskAlignedAssigner`` (YOLOv8/v11).
    """
    del eps, iou  # the 0.2 spellings: the wrapper has turned them into the new keywords
    scores, pred_boxes, points, gt_boxes, gt_labels, gt_mask = _checks.arrays(
        "task_aligned_assign",
        pred_scores=(pred_scores, "float", "A C"),
        pred_boxes=(pred_boxes, "real", "A 4"),
        points=(points, "real", "A 2"),
        gt_boxes=(gt_boxes, "real", "G 4"),
        gt_labels=(gt_labels, "int", "G"),
        gt_mask=(gt_mask, "bool", "G"),
    )
    num_points, num_classes = scores.shape
    num_gt = gt_boxes.shape[0]
    top_k = _checks.positive_int("top_k", top_k)
    if top_k > num_points:
        raise ValueError(f"top_k must be in [1, number of points = {num_points}]; got {top_k}")
    if top_k2 is not None:
        top_k2 = _checks.positive_int("top_k2", top_k2)
        if top_k2 > num_points:
            raise ValueError(f"top_k2 must be in [1, number of points = {num_points}]; got {top_k2}")
    if candidate_min_size is not None:
        _checks.positive("candidate_min_size", candidate_min_size)
    if iou_kind not in ASSIGN_IOU_KINDS:
        raise ValueError(f"iou_kind must be one of {ASSIGN_IOU_KINDS}; got {iou_kind!r}")
    _checks.positive("alpha", alpha, allow_zero=True)
    _checks.positive("beta", beta, allow_zero=True)
    for name, value in [
        ("candidate_eps", candidate_eps),
        ("metric_eps", metric_eps),
        ("iou_eps", iou_eps),
        ("norm_eps", norm_eps),
    ]:
        _checks.positive(name, value)

    dtype = _checks.compute_dtype(scores.dtype, pred_boxes.dtype, points.dtype, gt_boxes.dtype)
    if num_gt == 0:
        return Assignment(
            labels=jnp.full((num_points,), num_classes, gt_labels.dtype),
            boxes=jnp.zeros((num_points, 4), dtype),
            scores=jnp.zeros((num_points, num_classes), dtype),
            foreground=jnp.zeros((num_points,), bool),
            gt_index=jnp.zeros((num_points,), jnp.int32),
        )
    # The assignment is a target, not part of the model: no gradient through it.
    scores, pred_boxes, points, gt_boxes = (
        lax.stop_gradient(x.astype(dtype)) for x in (scores, pred_boxes, points, gt_boxes)
    )
    # Padding slots may hold anything (NaN would poison the argmax over gts): zero them.
    gt_boxes = jnp.where(gt_mask[:, None], gt_boxes, 0)
    gt_labels = jnp.where(gt_mask, gt_labels, 0)

    # 1. Candidates (G, A): strictly inside a valid gt box (widened to candidate_min_size).
    test_boxes = gt_boxes if candidate_min_size is None else _widen(gt_boxes, candidate_min_size)
    # The four side distances as (G, A) arrays, never one (G, A, 4) array.
    x, y = points[None, :, 0], points[None, :, 1]
    nearest_side = jnp.minimum(
        jnp.minimum(x - test_boxes[:, None, 0], y - test_boxes[:, None, 1]),
        jnp.minimum(test_boxes[:, None, 2] - x, test_boxes[:, None, 3] - y),
    )
    # A point whose coordinates, predicted box or class score are not finite (NaN, +-inf) is never a
    # candidate: lax.top_k ranks a NaN or +inf metric first, where it would take a real positive's
    # slot. A valid gt with a non-finite box claims no point.
    finite_point = jnp.all(jnp.isfinite(points), axis=-1) & jnp.all(jnp.isfinite(pred_boxes), axis=-1)
    finite_gt = jnp.all(jnp.isfinite(gt_boxes), axis=-1)
    class_scores = jnp.take(scores, gt_labels, axis=1, mode="clip").T
    candidate = (
        (nearest_side > candidate_eps)
        & (gt_mask & finite_gt)[:, None]
        & finite_point[None, :]
        & jnp.isfinite(class_scores)
    )

    # 2. Metric (G, A). The class score of each gt at each point by a gather: (A, G), never (G, A, C).
    overlap = iou_family(gt_boxes[:, None, :], pred_boxes[None, :, :], iou_kind, iou_eps)
    overlap = jnp.where(candidate, jnp.maximum(overlap, 0), 0)
    class_scores = jnp.where(candidate, class_scores, 0)
    metric = class_scores**alpha * overlap**beta

    # 3. Top-k per gt, only points of positive metric.
    top_metric, top_index = lax.top_k(metric, top_k)
    keep = (top_metric > metric_eps) & gt_mask[:, None]
    rows = jnp.arange(num_gt)[:, None]
    positive = jnp.zeros((num_gt, num_points), bool).at[rows, top_index].set(keep) & candidate

    # 4. A point kept by several gts goes to the gt of highest overlap there.
    claimed_by_several = jnp.sum(positive, axis=0) > 1
    best_overlap_gt = jnp.argmax(overlap, axis=0)
    is_best = jnp.arange(num_gt)[:, None] == best_overlap_gt[None, :]
    positive = jnp.where(claimed_by_several[None, :], is_best, positive)
    if top_k2 is not None and top_k2 != top_k:
        # 4b. ultralytics' topk2: each gt keeps its top_k2 final points of highest metric. Points
        # not its own rank at metric 0; whichever of them top_k picks, the `&` drops them.
        _, second_index = lax.top_k(jnp.where(positive, metric, 0), top_k2)
        positive &= jnp.zeros((num_gt, num_points), bool).at[rows, second_index].set(True)
    foreground = jnp.any(positive, axis=0)
    gt_index = jnp.argmax(positive, axis=0).astype(jnp.int32)  # first True; 0 on background

    # 5. Soft scores: metric / (gt's max metric + eps) * gt's max overlap, on the gt's class.
    metric = jnp.where(positive, metric, 0)
    max_metric = jnp.max(metric, axis=1, keepdims=True)
    max_overlap = jnp.max(jnp.where(positive, overlap, 0), axis=1, keepdims=True)
    point_score = jnp.max(metric * max_overlap / (max_metric + norm_eps), axis=0)
    labels = gt_labels[gt_index]
    one_hot = jnp.arange(num_classes)[None, :] == labels[:, None]
    target_scores = jnp.where(one_hot & foreground[:, None], point_score[:, None], 0).astype(dtype)
    return Assignment(
        labels=labels,
        boxes=gt_boxes[gt_index],
        scores=target_scores,
        foreground=foreground,
        gt_index=gt_index,
    )


def _widen(boxes: jax.Array, min_size) -> jax.Array:
    """``(G, 4)`` xyxy boxes whose sides shorter than ``min_size`` are ``min_size``, same centre.

    Sides of at least ``min_size`` are kept as given (not recomputed from the centre, which could
    move an edge by a rounding error onto a point). A NaN side is not shorter: it stays NaN.
    """
    size = jnp.asarray(min_size, boxes.dtype)
    low, high = boxes[:, :2], boxes[:, 2:]
    centre = (low + high) / 2
    short = (high - low) < size
    return jnp.concatenate(
        [jnp.where(short, centre - size / 2, low), jnp.where(short, centre + size / 2, high)], -1
    )


def validate_assignment_inputs(pred_boxes: ArrayLike, pred_scores: ArrayLike) -> None:
    """Opt-in ``checkify`` check of two silent misuses of :func:`task_aligned_assign`.

    The assigner cannot tell these from a valid call, and both give a wrong
    assignment that trains without an error:

    * **Raw class logits as scores.** The alignment metric
      ``score ** alpha * overlap ** beta`` expects probabilities (after the
      sigmoid): logits make negative scores (NaN metrics under a fractional
      ``alpha``) and rank points by the wrong quantity. Reported when any
      ``pred_scores`` element is below 0 or above 1.
    * **Boxes and scores swapped.** With 4 classes both arrays are ``(A, 4)``.
      Pixel boxes given as scores have elements above 1 (the first check);
      class probabilities given as boxes are almost never ordered like a box:
      reported when any ``pred_boxes`` row has ``x2 < x1`` or ``y2 < y1``,
      which no xyxy box has (every box decoded from non-negative side
      distances, e.g. by :func:`jax_dfl.decode_boxes`, has ``x1 <= x2`` and
      ``y1 <= y2``). The same check catches boxes in another format, such as
      ``(cx, cy, w, h)``.

    NaN elements are not reported: the assigner's rule for non-finite inputs
    covers them (such a point is background). Swapped inputs in normalised
    coordinates whose class probabilities happen to be ordered like boxes at
    every point are not detected.

    Call it inside the function you jit and wrap that function with
    :func:`jax.experimental.checkify.checkify` to turn either misuse into an
    error. Outside ``checkify`` it does nothing (it uses
    :func:`jax.experimental.checkify.debug_check`), so it may stay in a
    training step. Works on one image's arrays or a batch's (any leading axes,
    the same for both).

    Args:
      pred_boxes: ``(..., A, 4)`` predicted xyxy boxes, as given to
        :func:`task_aligned_assign`.
      pred_scores: ``(..., A, C)`` predicted class scores, as given to it.

    Returns:
      ``None``; the checks are recorded for ``checkify``.

    Examples:
      Logits passed where probabilities are expected:

      >>> import jax, jax.numpy as jnp
      >>> from jax.experimental import checkify
      >>> boxes = jnp.array([[0.0, 0.0, 8.0, 8.0], [4.0, 4.0, 12.0, 16.0]])
      >>> logits = jnp.array([[-3.0, 1.5, 0.2, -0.7], [2.0, -1.0, 0.0, 0.5]])
      >>> err, _ = checkify.checkify(jax.jit(validate_assignment_inputs))(boxes, logits)
      >>> print(err.get())  # doctest: +ELLIPSIS
      pred_scores must be class probabilities in [0, 1] (after the sigmoid); got min=-3.0, max=2.0...

      The same two arrays swapped (4 classes: the shapes agree):

      >>> err, _ = checkify.checkify(jax.jit(validate_assignment_inputs))(jax.nn.sigmoid(logits), boxes)
      >>> print(err.get())  # doctest: +ELLIPSIS
      pred_scores must be class probabilities in [0, 1] (after the sigmoid); got min=0.0, max=16.0...
      >>> err, _ = checkify.checkify(jax.jit(validate_assignment_inputs))(jax.nn.sigmoid(logits), boxes / 16)
      >>> print(err.get())  # doctest: +ELLIPSIS
      pred_boxes must be xyxy boxes (x1 <= x2, y1 <= y2); 2 of 2 are not...
    """
    pred_boxes, pred_scores = _checks.arrays(
        "validate_assignment_inputs",
        pred_boxes=(pred_boxes, "real", "... A 4"),
        pred_scores=(pred_scores, "float", "... A C"),
    )
    scores = pred_scores.astype(_checks.compute_dtype(pred_scores.dtype))
    # `< 0` and `> 1` (not `not in [0, 1]`): NaN is left to the assigner's non-finite rule.
    outside = (scores < 0) | (scores > 1)
    checkify.debug_check(
        ~jnp.any(outside),
        "pred_scores must be class probabilities in [0, 1] (after the sigmoid); got min={lo}, max={hi}: "
        "raw class logits, or pred_boxes passed as pred_scores?",
        lo=jnp.min(scores, initial=jnp.inf),
        hi=jnp.max(scores, initial=-jnp.inf),
    )
    boxes = pred_boxes.reshape(-1, 4)
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    checkify.debug_check(
        ~jnp.any(inverted),
        "pred_boxes must be xyxy boxes (x1 <= x2, y1 <= y2); {count} of {total} are not, the first at "
        "pred_boxes.reshape(-1, 4)[{index}]: pred_scores passed as pred_boxes, or boxes in another "
        "format (cx, cy, w, h)?",
        count=jnp.sum(inverted),
        total=jnp.asarray(boxes.shape[0]),
        index=jnp.argmax(inverted),
    )
