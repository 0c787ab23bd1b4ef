"""Box helpers for anchor-free heads: point-to-side distances, GIoU, decoding.

Boxes are ``(x1, y1, x2, y2)`` ("xyxy") on the last axis; distances are
``(left, top, right, bottom)`` from a point to the box's sides. Coordinates
may be float or int and are computed in at least float32 (the README's input
rules). Paired boxes must have equal shapes; the one broadcast allowed is
points shared across a batch: points ``(A, 2)`` against boxes ``(B, A, 4)``
(``points.shape[:-1]`` a trailing part of the boxes' leading shape). The last
axis must be exactly 2 or 4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_dfl import _checks
from jax_dfl.decoding import decode


def _coordinates(name: str, x, size: int) -> jax.Array:
    """Real coordinates with a last axis of ``size``, in at least float32."""
    x = _checks.real(name, x)
    _checks.last_axis(name, x, size)
    return x.astype(_checks.compute_dtype(x.dtype))


def _points_and(points, name: str, other, size: int = 4):
    points = _coordinates("points", points, 2)
    other = _coordinates(name, other, size)
    _checks.leading_matches("points", points, name, other)
    dtype = jnp.promote_types(points.dtype, other.dtype)
    return points.astype(dtype), other.astype(dtype)


def _paired(pred, target):
    pred = _coordinates("pred", pred, 4)
    target = _coordinates("target", target, 4)
    _checks.same_shape("target", target, pred.shape, "pred.shape")
    dtype = jnp.promote_types(pred.dtype, target.dtype)
    return pred.astype(dtype), target.astype(dtype)


def bbox2distance(points: ArrayLike, boxes: ArrayLike) -> jax.Array:
    """Distances ``(left, top, right, bottom)`` from ``points`` (x, y) to the sides of ``boxes``.

    Negative where a point lies outside its box. Divide by the stride to get
    DFL targets in bin units; out-of-range values are clipped by the loss.

    Examples:
      >>> print(bbox2distance(jnp.array([5.0, 5.0]), jnp.array([2.0, 1.0, 9.0, 6.0])))
      [3. 4. 4. 1.]
    """
    points, boxes = _points_and(points, "boxes", boxes)
    return jnp.concatenate([points - boxes[..., :2], boxes[..., 2:] - points], axis=-1)


def distance2bbox(points: ArrayLike, distances: ArrayLike) -> jax.Array:
    """Boxes (xyxy) from ``points`` (x, y) and distances ``(left, top, right, bottom)``.

    Examples:
      >>> print(distance2bbox(jnp.array([5.0, 5.0]), jnp.array([3.0, 4.0, 4.0, 1.0])))
      [2. 1. 9. 6.]
    """
    points, distances = _points_and(points, "distances", distances)
    return jnp.concatenate([points - distances[..., :2], points + distances[..., 2:]], axis=-1)


def box_iou_terms(pred: jax.Array, target: jax.Array, eps: float):
    """Intersection, union and enclosing area of paired boxes (sides clamped at 0)."""

    def area(b):
        return jnp.maximum(b[..., 2] - b[..., 0], 0) * jnp.maximum(b[..., 3] - b[..., 1], 0)

    lt = jnp.maximum(pred[..., :2], target[..., :2])
    rb = jnp.minimum(pred[..., 2:], target[..., 2:])
    wh = jnp.maximum(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    union = area(pred) + area(target) - inter + eps
    enclosing_wh = jnp.maximum(
        jnp.maximum(pred[..., 2:], target[..., 2:]) - jnp.minimum(pred[..., :2], target[..., :2]), 0
    )
    enclosing = enclosing_wh[..., 0] * enclosing_wh[..., 1] + eps
    return inter, union, enclosing


def box_iou(pred: ArrayLike, target: ArrayLike, *, eps: float = 1e-7) -> jax.Array:
    """IoU of paired xyxy boxes, element-wise over leading axes.

    ``eps > 0`` is added to the union, so that two zero-area boxes give 0, not NaN.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(f"{box_iou(jnp.array([0.0, 0.0, 2.0, 2.0]), jnp.array([1.0, 0.0, 3.0, 2.0])):.4f}")
      0.3333
    """
    pred, target = _paired(pred, target)
    eps = _checks.positive("eps", eps)
    inter, union, _ = box_iou_terms(pred, target, eps)
    return inter / union


def giou_loss(pred: ArrayLike, target: ArrayLike, *, eps: float = 1e-7) -> jax.Array:
    r"""Generalized IoU loss ``1 - GIoU`` of paired xyxy boxes, element-wise over leading axes.

    .. math::
      \mathrm{GIoU} = \mathrm{IoU} - \frac{|C| - |A \cup B|}{|C|}

    with :math:`C` the smallest box enclosing both. In ``[0, 2]``: 0 for
    identical boxes, approaching 2 for far-apart ones. ``eps`` in the union
    and the enclosing area keeps values and gradients finite for zero-area
    (degenerate) boxes; sides with ``x2 < x1`` count as zero width.

    Examples:
      >>> import jax.numpy as jnp
      >>> a = jnp.array([0.0, 0.0, 2.0, 2.0])
      >>> print(f"{giou_loss(a, a):.4f} {giou_loss(a, jnp.array([1.0, 0.0, 3.0, 2.0])):.4f}")
      0.0000 0.6667

    References:
      Rezatofighi et al., `Generalized Intersection over Union
      <https://arxiv.org/abs/1902.09630>`_, CVPR 2019.
    """
    pred, target = _paired(pred, target)
    eps = _checks.positive("eps", eps)
    inter, union, enclosing = box_iou_terms(pred, target, eps)
    giou = inter / union - (enclosing - union) / enclosing
    return 1 - giou


def decode_boxes(
    logits: ArrayLike,
    points: ArrayLike,
    strides: ArrayLike,
    *,
    bin_values: ArrayLike | None = None,
) -> jax.Array:
    """Boxes (xyxy, pixels) from per-point side logits in one call.

    ``logits`` of shape ``(..., 4, num_bins)`` (left, top, right, bottom) are
    decoded to distances in bins (:func:`jax_dfl.decode`), scaled by each
    point's stride, and turned into boxes around ``points`` (``(..., 2)``, pixels).

    Examples:
      >>> import jax.numpy as jnp
      >>> logits = jnp.log(jnp.eye(8)[jnp.array([1, 2, 3, 4])])  # sides at bins 1, 2, 3, 4
      >>> print(decode_boxes(logits, jnp.array([16.0, 16.0]), 8.0))
      [ 8.  0. 40. 48.]

    Args:
      logits: ``(..., 4, num_bins)`` floating side logits.
      points: ``(..., 2)`` point coordinates in pixels; ``points.shape[:-1]``
        equals ``logits.shape[:-2]`` or its trailing axes (points shared by a batch).
      strides: a scalar, or one stride per point (shape ``points.shape[:-1]``).
      bin_values: optional bin positions, as for :func:`jax_dfl.decode`.

    Returns:
      xyxy boxes, shape ``logits.shape[:-2] + (4,)``, at least float32.
    """
    logits = jnp.asarray(logits)
    _checks.check_logits(logits)
    if logits.ndim < 2 or logits.shape[-2] != 4:
        raise ValueError(f"logits must have shape (..., 4, num_bins); got logits.shape={logits.shape}")
    points = _coordinates("points", points, 2)
    _checks.leading_matches("points", points, "logits", logits, drop=2)
    strides = _checks.real("strides", strides)
    if strides.ndim and strides.shape != points.shape[:-1]:
        # A (N, 1) stride column against (N, 2) points would broadcast to (N, N, 4) boxes.
        raise ValueError(
            f"strides must be a scalar or have shape points.shape[:-1]: strides.shape={strides.shape}, "
            f"points.shape={points.shape}"
        )
    distances = decode(logits, bin_values=bin_values) * strides.astype(points.dtype)[..., None]
    return distance2bbox(points, distances)
