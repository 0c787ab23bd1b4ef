"""Box helpers for anchor-free heads: point-to-side distances, the IoU family, anchor points, decoding.

Boxes are ``(x1, y1, x2, y2)`` ("xyxy") on the last axis; distances are
``(left, top, right, bottom)`` from a point to the box's sides. Inputs
follow the input rules of ``docs/conventions.md`` (which also name the one
broadcast allowed: points shared across a batch of boxes).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jax_dfl import _checks, _deprecation
from jax_dfl.decoding import decode


def bbox2distance(points: ArrayLike, boxes: ArrayLike) -> jax.Array:
    r"""Distances ``(left, top, right, bottom)`` from ``points`` (x, y) to the sides of ``boxes``.

    .. math::
      (l, t, r, b) = (x - x_1,\ y - y_1,\ x_2 - x,\ y_2 - y),

    negative where a point lies outside its box. Divide by the stride to get
    DFL targets in bin units; out-of-range values are clipped by the loss.

    .. seealso::
      :func:`distance2bbox`, its inverse.

    Args:
      points: ``(..., 2)`` point coordinates ``(x, y)`` (float or int).
      boxes: ``(..., 4)`` xyxy boxes; ``points.shape[:-1]`` equals
        ``boxes.shape[:-1]`` or its trailing axes (points shared by a batch).

    Returns:
      ``boxes.shape[:-1] + (4,)`` distances, at least float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(bbox2distance(jnp.array([5.0, 5.0]), jnp.array([2.0, 1.0, 9.0, 6.0])))
      [3. 4. 4. 1.]
    """
    # Points (A, 2) may be shared by a batch of boxes (B, A, 4): the boxes' axes end with *P.
    points, boxes = _checks.arrays(
        "bbox2distance", points=(points, "real", "*P 2"), boxes=(boxes, "real", "... *P 4")
    )
    points, boxes = _checks.in_compute_dtype(points, boxes)
    return jnp.concatenate([points - boxes[..., :2], boxes[..., 2:] - points], axis=-1)


def distance2bbox(points: ArrayLike, distances: ArrayLike) -> jax.Array:
    r"""Boxes (xyxy) from ``points`` (x, y) and distances ``(left, top, right, bottom)``.

    .. math::
      (x_1, y_1, x_2, y_2) = (x - l,\ y - t,\ x + r,\ y + b).

    .. seealso::
      :func:`bbox2distance`, its inverse; :func:`decode_boxes`, from side logits.

    Args:
      points: ``(..., 2)`` point coordinates ``(x, y)`` (float or int).
      distances: ``(..., 4)`` distances; ``points.shape[:-1]`` equals
        ``distances.shape[:-1]`` or its trailing axes (points shared by a batch).

    Returns:
      ``distances.shape[:-1] + (4,)`` xyxy boxes, at least float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(distance2bbox(jnp.array([5.0, 5.0]), jnp.array([3.0, 4.0, 4.0, 1.0])))
      [2. 1. 9. 6.]
    """
    points, distances = _checks.arrays(
        "distance2bbox", points=(points, "real", "*P 2"), distances=(distances, "real", "... *P 4")
    )
    points, distances = _checks.in_compute_dtype(points, distances)
    return jnp.concatenate([points - distances[..., :2], points + distances[..., 2:]], axis=-1)


@_deprecation.renamed({"pred": "boxes1", "target": "boxes2"})
def box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, eps: float | ArrayLike = 1e-9) -> jax.Array:
    r"""IoU of paired xyxy boxes, element-wise over leading axes.

    .. math::
      \mathrm{IoU}(A, B) = \frac{|A \cap B|}{\max(|A \cup B|, \epsilon)}

    The union is floored at ``eps > 0`` (not increased by it): exact whenever
    the union is at least ``eps``, 0 rather than NaN for two zero-area boxes.
    Sides with ``x2 < x1`` count as zero width.

    .. seealso::
      :func:`pairwise_iou` for every pair of two sets of boxes.

    .. versionchanged:: 0.3.0
      ``pred, target`` are ``boxes1, boxes2`` (the IoU is symmetric).

    Args:
      boxes1: ``(..., 4)`` xyxy boxes (float or int).
      boxes2: boxes of exactly ``boxes1``'s shape.
      eps: positive floor for the union (may be traced under ``jit``).

    Returns:
      ``boxes1.shape[:-1]``, at least float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(f"{box_iou(jnp.array([0.0, 0.0, 2.0, 2.0]), jnp.array([1.0, 0.0, 3.0, 2.0])):.4f}")
      0.3333
    """
    _checks.positive("eps", eps)
    boxes1, boxes2 = _checks.arrays(
        "box_iou", boxes1=(boxes1, "real", "... 4"), boxes2=(boxes2, "real", "... 4")
    )
    boxes1, boxes2 = _checks.in_compute_dtype(boxes1, boxes2)
    return iou_family(boxes1, boxes2, "iou", eps)


def giou_loss(pred: ArrayLike, target: ArrayLike, *, eps: float | ArrayLike = 1e-9) -> jax.Array:
    r"""Generalized IoU loss ``1 - GIoU`` of paired xyxy boxes, element-wise over leading axes.

    .. math::
      \mathrm{GIoU} = \mathrm{IoU} - \frac{|C| - |A \cup B|}{|C|}

    with :math:`C` the smallest box enclosing both. In ``[0, 2]``: 0 for
    identical boxes, approaching 2 for far-apart ones. The union and the
    enclosing area are floored at ``eps`` (as in :func:`diou_loss`): exact
    above it, finite values and gradients for zero-area (degenerate) boxes;
    sides with ``x2 < x1`` count as zero width.

    Args:
      pred: ``(..., 4)`` xyxy boxes (float or int).
      target: boxes of exactly ``pred``'s shape.
      eps: positive floor for the denominators (may be traced under ``jit``).

    Returns:
      ``pred.shape[:-1]``, at least float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> a = jnp.array([0.0, 0.0, 2.0, 2.0])
      >>> print(f"{giou_loss(a, a):.4f} {giou_loss(a, jnp.array([1.0, 0.0, 3.0, 2.0])):.4f}")
      0.0000 0.6667

    References:
      Rezatofighi et al., `Generalized Intersection over Union: A Metric and a
      Loss for Bounding Box Regression <https://arxiv.org/abs/1902.09630>`_, CVPR 2019.
    """
    _checks.positive("eps", eps)
    pred, target = _checks.arrays("giou_loss", pred=(pred, "real", "... 4"), target=(target, "real", "... 4"))
    pred, target = _checks.in_compute_dtype(pred, target)
    return 1 - iou_family(pred, target, "giou", eps)


@_deprecation.renamed({"strides": "point_strides"})
def decode_boxes(
    logits: ArrayLike,
    points: ArrayLike,
    point_strides: ArrayLike,
    *,
    bin_values: ArrayLike | None = None,
) -> jax.Array:
    r"""Boxes (xyxy, pixels) from per-point side logits in one call.

    ``logits`` of shape ``(..., 4, num_bins)`` (left, top, right, bottom) are
    decoded to distances in bins (:func:`jax_dfl.decode`), scaled by each
    point's stride and turned into boxes around ``points``:

    .. math::
      d_s = \text{stride} \cdot \sum_i v_i\, \mathrm{softmax}(\text{logits}_s)_i, \qquad
      \text{box} = \mathrm{distance2bbox}(\text{point}, d).

    .. seealso::
      :func:`anchor_points` (the points and their strides).

    .. versionchanged:: 0.3.0
      ``strides`` is ``point_strides`` (the name :func:`jax_dfl.yolo_box_loss` uses).

    Args:
      logits: ``(..., 4, num_bins)`` floating side logits.
      points: ``(..., 2)`` point coordinates in pixels; ``points.shape[:-1]``
        equals ``logits.shape[:-2]`` or its trailing axes (points shared by a batch).
      point_strides: a scalar, or one stride per point (shape ``points.shape[:-1]``),
        e.g. the second output of :func:`anchor_points`.
      bin_values: optional bin positions, as for :func:`jax_dfl.decode`.

    Returns:
      xyxy boxes, shape ``logits.shape[:-2] + (4,)``, at least float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> logits = jnp.log(jnp.eye(8)[jnp.array([1, 2, 3, 4])])  # sides at bins 1, 2, 3, 4
      >>> print(decode_boxes(logits, jnp.array([16.0, 16.0]), 8.0))
      [ 8.  0. 40. 48.]
    """
    # Points may be shared by a batch (as in distance2bbox); one stride per point, or one for all:
    # a (N, 1) stride column against (N, 2) points would broadcast to (N, N, 4) boxes.
    # bin_values is declared here too, so that a wrong length is reported as decode_boxes'.
    points, logits, strides, bin_values = _checks.arrays(
        "decode_boxes",
        points=(points, "real", "*P 2"),
        logits=(logits, "float", "... *P 4 num_bins"),
        point_strides=(point_strides, "real", ("", "*P")),
        bin_values=(bin_values, "real | None", "num_bins"),
        minimum={"num_bins": 2},
    )
    (points,) = _checks.in_compute_dtype(points)
    distances = decode(logits, bin_values=bin_values) * strides.astype(points.dtype)[..., None]
    return distance2bbox(points, distances)


# --- DIoU / CIoU / pairwise IoU ---------------------------------------------------------------

IOU_KINDS = ("iou", "giou", "diou", "ciou")


def _aspect_angle(w: jax.Array, h: jax.Array) -> jax.Array:
    """``atan(w / h)`` as ``atan2(w, h)``: exact for ``h > 0``, pi/2 for ``h = 0`` and 0 for a point box.

    The double ``where`` keeps the gradient finite at ``w = h = 0`` (atan2's is 0/0 there).
    """
    nonzero = (w > 0) | (h > 0)
    angle = jnp.arctan2(jnp.where(nonzero, w, 1), jnp.where(nonzero, h, 1))
    return jnp.where(nonzero, angle, 0)


def iou_family(b1: jax.Array, b2: jax.Array, kind: str, eps) -> jax.Array:
    """IoU, GIoU, DIoU or CIoU of xyxy boxes ``b1``, ``b2`` (leading axes broadcast), unchecked.

    Sides with ``x2 < x1`` count as zero width. Every denominator (union,
    enclosing area, enclosing diagonal squared) is ``max(denominator, eps)``:
    exact whenever it is at least ``eps``, finite (value and gradient) when it
    is 0. CIoU's trade-off weight ``alpha`` is held constant in the gradient.
    A pair with a non-finite coordinate gives NaN (the input rules): the
    clipped widths would otherwise turn an infinite box into a confident 0.
    """
    finite = jnp.all(jnp.isfinite(b1), axis=-1) & jnp.all(jnp.isfinite(b2), axis=-1)
    return jnp.where(finite, _iou_family(b1, b2, kind, eps), jnp.nan)


def _iou_family(b1: jax.Array, b2: jax.Array, kind: str, eps) -> jax.Array:
    w1 = jnp.maximum(b1[..., 2] - b1[..., 0], 0)
    h1 = jnp.maximum(b1[..., 3] - b1[..., 1], 0)
    w2 = jnp.maximum(b2[..., 2] - b2[..., 0], 0)
    h2 = jnp.maximum(b2[..., 3] - b2[..., 1], 0)
    inter_w = jnp.maximum(jnp.minimum(b1[..., 2], b2[..., 2]) - jnp.maximum(b1[..., 0], b2[..., 0]), 0)
    inter_h = jnp.maximum(jnp.minimum(b1[..., 3], b2[..., 3]) - jnp.maximum(b1[..., 1], b2[..., 1]), 0)
    inter = inter_w * inter_h
    union = w1 * h1 + w2 * h2 - inter
    iou = inter / jnp.maximum(union, eps)
    if kind == "iou":
        return iou
    enclosing_w = jnp.maximum(jnp.maximum(b1[..., 2], b2[..., 2]) - jnp.minimum(b1[..., 0], b2[..., 0]), 0)
    enclosing_h = jnp.maximum(jnp.maximum(b1[..., 3], b2[..., 3]) - jnp.minimum(b1[..., 1], b2[..., 1]), 0)
    if kind == "giou":
        enclosing = enclosing_w * enclosing_h
        return iou - (enclosing - union) / jnp.maximum(enclosing, eps)
    diagonal2 = enclosing_w**2 + enclosing_h**2
    # Squared distance between the centres, from the doubled centres (x1 + x2) to save two halvings.
    centre2 = (
        (b2[..., 0] + b2[..., 2] - b1[..., 0] - b1[..., 2]) ** 2
        + (b2[..., 1] + b2[..., 3] - b1[..., 1] - b1[..., 3]) ** 2
    ) / 4
    diou = iou - centre2 / jnp.maximum(diagonal2, eps)
    if kind == "diou":
        return diou
    v = (4 / math.pi**2) * (_aspect_angle(w2, h2) - _aspect_angle(w1, h1)) ** 2
    # alpha = v / ((1 - IoU) + v); the denominator is >= v, so it is positive wherever v is.
    has_v = v > 0
    alpha = lax.stop_gradient(jnp.where(has_v, v / jnp.where(has_v, (1 - iou) + v, 1), 0))
    return diou - alpha * v


def diou_loss(pred: ArrayLike, target: ArrayLike, *, eps: float | ArrayLike = 1e-9) -> jax.Array:
    r"""Distance-IoU loss ``1 - DIoU`` of paired xyxy boxes, element-wise over leading axes.

    .. math::
      \mathrm{DIoU} = \mathrm{IoU} - \frac{\rho^2(b, b^{gt})}{c^2}

    with :math:`\rho` the distance between the two boxes' centres and :math:`c`
    the diagonal of the smallest box enclosing both. In ``[0, 2]``: 0 for
    identical boxes; unlike GIoU it keeps pulling the centres together when one
    box contains the other.

    ``eps`` only guards denominators: the union and :math:`c^2` are replaced by
    ``max(., eps)``, so values are exact whenever they are at least ``eps`` (in
    normalised ``[0, 1]`` coordinates, any box pair whose union is above 1e-9,
    i.e. sides above about 3e-5) and values and gradients stay finite for
    zero-area boxes. Sides with ``x2 < x1`` count as zero width.

    Args:
      pred: ``(..., 4)`` xyxy boxes (float or int).
      target: boxes of exactly ``pred``'s shape.
      eps: positive floor for the denominators (may be traced under ``jit``).

    Returns:
      ``pred.shape[:-1]``, at least float32 (bf16/f16 are computed in float32).

    Examples:
      >>> import jax.numpy as jnp
      >>> a = jnp.array([0.0, 0.0, 2.0, 2.0])
      >>> print(f"{diou_loss(a, a):.4f} {diou_loss(a, jnp.array([1.0, 0.0, 3.0, 2.0])):.4f}")
      0.0000 0.7436

    References:
      Zheng et al., `Distance-IoU Loss: Faster and Better Learning for Bounding
      Box Regression <https://arxiv.org/abs/1911.08287>`_, AAAI 2020.
    """
    _checks.positive("eps", eps)
    pred, target = _checks.arrays("diou_loss", pred=(pred, "real", "... 4"), target=(target, "real", "... 4"))
    pred, target = _checks.in_compute_dtype(pred, target)
    return 1 - iou_family(pred, target, "diou", eps)


def ciou_loss(pred: ArrayLike, target: ArrayLike, *, eps: float | ArrayLike = 1e-9) -> jax.Array:
    r"""Complete-IoU loss ``1 - CIoU`` of paired xyxy boxes, element-wise over leading axes.

    .. math::
      \mathrm{CIoU} = \mathrm{IoU} - \frac{\rho^2(b, b^{gt})}{c^2} - \alpha v, \quad
      v = \frac{4}{\pi^2}\left(\arctan\frac{w^{gt}}{h^{gt}} - \arctan\frac{w}{h}\right)^2, \quad
      \alpha = \frac{v}{(1 - \mathrm{IoU}) + v}

    DIoU (see :func:`diou_loss`) plus an aspect-ratio consistency term. As in
    the paper, :math:`\alpha` is a trade-off weight held constant in the
    gradient (``stop_gradient``); :math:`\alpha = 0` where :math:`v = 0`. The
    angle is ``atan2(w, h)``: :math:`\arctan(w/h)` for :math:`h > 0`, ``pi/2``
    for a zero-height box and 0 for a point box. The union and :math:`c^2` are
    floored at ``eps``, so they are exact above it. This is the box term of
    YOLOv8/v11 (ultralytics' ``bbox_iou(..., CIoU=True)``), to within 1e-6 at
    pixel scale.

    .. seealso::
      :ref:`ciou-and-ultralytics` for how this differs from ultralytics' CIoU
      and from the paper's implementation.

    Args:
      pred: ``(..., 4)`` xyxy boxes (float or int).
      target: boxes of exactly ``pred``'s shape.
      eps: positive floor for the denominators (may be traced under ``jit``).

    Returns:
      ``pred.shape[:-1]``, at least float32 (bf16/f16 are computed in float32).
      Finite values and gradients for zero-area and zero-height boxes.

    Examples:
      >>> import jax.numpy as jnp
      >>> a = jnp.array([0.0, 0.0, 2.0, 2.0])
      >>> print(f"{ciou_loss(a, a):.4f} {ciou_loss(a, jnp.array([0.0, 0.0, 4.0, 2.0])):.4f}")
      0.0000 0.5532

    References:
      Zheng et al., `Distance-IoU Loss: Faster and Better Learning for Bounding
      Box Regression <https://arxiv.org/abs/1911.08287>`_, AAAI 2020.
    """
    _checks.positive("eps", eps)
    pred, target = _checks.arrays("ciou_loss", pred=(pred, "real", "... 4"), target=(target, "real", "... 4"))
    pred, target = _checks.in_compute_dtype(pred, target)
    return 1 - iou_family(pred, target, "ciou", eps)


@_deprecation.renamed({"a": "boxes1", "b": "boxes2"})
def pairwise_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, *, kind: str = "iou", eps: float | ArrayLike = 1e-9
) -> jax.Array:
    r"""IoU (or GIoU, DIoU, CIoU) of every box in ``boxes1`` with every box in ``boxes2``.

    The ``(N, M)`` matrix :math:`M_{ij} = \mathrm{IoU}(a_i, b_j)` (or the
    chosen measure). ``kind`` is one of ``"iou"``, ``"giou"``, ``"diou"``,
    ``"ciou"``. For the last three the result is the GIoU/DIoU/CIoU *value*
    (in ``[-1, 1]``), not the loss ``1 - value`` that :func:`giou_loss`,
    :func:`diou_loss` and :func:`ciou_loss` return. ``eps`` floors the
    denominators as in :func:`diou_loss`.

    .. seealso::
      :func:`box_iou` for paired boxes.

    .. versionchanged:: 0.3.0
      ``a, b`` are ``boxes1, boxes2``.

    Args:
      boxes1: ``(N, 4)`` xyxy boxes (float or int).
      boxes2: ``(M, 4)`` xyxy boxes (float or int).
      kind: which overlap measure.
      eps: positive floor for the denominators.

    Returns:
      ``(N, M)``, at least float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> a = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 2.0]])
      >>> print(pairwise_iou(a, a[:1]))
      [[1. ]
       [0.5]]
      >>> print(pairwise_iou(a, a[:1] + 2, kind="giou"))  # touching corners: IoU 0, enclosing 4x4
      [[-0.5  ]
       [-0.625]]

    References:
      Rezatofighi et al., `Generalized Intersection over Union: A Metric and a
      Loss for Bounding Box Regression <https://arxiv.org/abs/1902.09630>`_,
      CVPR 2019; Zheng et al., `Distance-IoU Loss: Faster and Better Learning
      for Bounding Box Regression <https://arxiv.org/abs/1911.08287>`_, AAAI 2020.
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {IOU_KINDS}; got {kind!r}")
    a, b = _checks.arrays("pairwise_iou", boxes1=(boxes1, "real", "N 4"), boxes2=(boxes2, "real", "M 4"))
    _checks.positive("eps", eps)
    a, b = _checks.in_compute_dtype(a, b)
    return iou_family(a[:, None, :], b[None, :, :], kind, eps)


# --- anchor points ------------------------------------------------------------------------------


def anchor_points(
    feature_shapes: Sequence[Sequence[int]], strides: Sequence[float] | np.ndarray, *, offset: float = 0.5
) -> tuple[jax.Array, jax.Array]:
    r"""Pixel centres of every cell of a feature pyramid, and each one's stride.

    Level ``l`` with feature map ``(height, width)`` and stride ``s`` gives the
    points

    .. math::
      x = (\text{col} + \text{offset})\, s, \qquad y = (\text{row} + \text{offset})\, s

    in row-major order (``col`` varies fastest); levels are concatenated in the
    order given. This is the order (and, times the stride, the values) of
    ultralytics' ``make_anchors``, which returns the points in stride units;
    ``offset=0`` gives mmdetection's cell corners.

    Everything is static (Python ints and floats): the result is a constant.

    Args:
      feature_shapes: one ``(height, width)`` of positive ints per level.
      strides: one positive stride (pixels per cell) per level.
      offset: position of the point inside its cell, in cells, in ``[0, 1)``.

    Returns:
      ``(points, point_strides)``: ``(A, 2)`` float32 ``(x, y)`` pixels and
      ``(A,)`` float32 strides, ``A = sum(height * width)``.

    Examples:
      >>> points, point_strides = anchor_points([(2, 2), (1, 1)], [8, 16])
      >>> print(points)
      [[ 4.  4.]
       [12.  4.]
       [ 4. 12.]
       [12. 12.]
       [ 8.  8.]]
      >>> print(point_strides)
      [ 8.  8.  8.  8. 16.]
    """
    try:
        shapes = [tuple(operator.index(n) for n in shape) for shape in feature_shapes]
    except TypeError:
        raise ValueError(
            f"feature_shapes must be a sequence of (height, width) Python ints; got {feature_shapes!r}"
        ) from None
    if not shapes or any(len(shape) != 2 or min(shape) < 1 for shape in shapes):
        raise ValueError(
            f"feature_shapes must be a non-empty sequence of positive (height, width); got {shapes}"
        )
    # Any 1-D array-like (list, tuple, NumPy or concrete JAX array) of one stride per level.
    if isinstance(strides, jax.core.Tracer):
        raise ValueError("strides must be concrete (they fix the anchor points); got a traced array")
    try:
        stride_array = np.asarray(strides)
    except (TypeError, ValueError):
        stride_array = None
    if stride_array is None or stride_array.ndim != 1 or stride_array.shape[0] != len(shapes):
        shown = "not an array" if stride_array is None else f"shape {stride_array.shape}"
        raise ValueError(
            f"strides must be 1-D with one stride per level of feature_shapes; got strides={strides!r} "
            f"({shown}), but feature_shapes has {len(shapes)} levels, feature_shapes={shapes}"
        )
    stride_list = stride_array.tolist()
    for stride in stride_list:
        _checks.positive("strides", stride)
    _checks.positive("offset", offset, allow_zero=True)
    if isinstance(offset, jax.core.Tracer) or not float(offset) < 1:
        raise ValueError(f"offset must be a Python number in [0, 1); got {offset!r}")
    points, point_strides = [], []
    for (height, width), stride in zip(shapes, stride_list, strict=True):
        xs = (np.arange(width, dtype=np.float64) + offset) * float(stride)
        ys = (np.arange(height, dtype=np.float64) + offset) * float(stride)
        grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")  # rows outer, columns inner
        points.append(np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1))
        point_strides.append(np.full(height * width, float(stride)))
    return (
        jnp.asarray(np.concatenate(points), jnp.float32),
        jnp.asarray(np.concatenate(point_strides), jnp.float32),
    )
