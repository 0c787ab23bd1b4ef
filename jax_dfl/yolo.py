"""YOLOv8/v11's box loss (CIoU + DFL on the task-aligned foreground), static-shaped, one image.

Inputs follow the input rules of ``docs/conventions.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import checkify
from jax.typing import ArrayLike

from jax_dfl import _checks
from jax_dfl.boxes import bbox2distance, iou_family
from jax_dfl.losses import distribution_focal_loss

# Stand-ins for the unused rows of the foreground buffer: a well-formed box and point, so the
# maths on those rows is finite whatever the gathered row (a background point) holds.
_SAFE_BOX = (0.0, 0.0, 2.0, 2.0)
_SAFE_POINT = (1.0, 1.0)


def _check_max_foreground(max_foreground, num_points: int) -> int:
    if max_foreground is None:
        return num_points
    max_foreground = _checks.positive_int("max_foreground", max_foreground)
    if max_foreground > num_points:
        raise ValueError(
            f"max_foreground must be in [1, number of points = {num_points}]; got {max_foreground}"
        )
    return max_foreground


def yolo_box_loss(
    pred_logits: ArrayLike,
    pred_boxes: ArrayLike,
    points: ArrayLike,
    target_boxes: ArrayLike,
    target_scores: ArrayLike,
    foreground: ArrayLike,
    *,
    point_strides: ArrayLike,
    normalizer: ArrayLike,
    max_foreground: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""YOLOv8/v11's box loss for one image: ``(iou_loss, dfl_loss)``, both scalars.

    With :math:`w_a = \sum_c` ``target_scores[a, c]`` the weight of point
    :math:`a`, :math:`F` the foreground points and
    :math:`N = \max(\text{normalizer}, 1)`:

    .. math::
      L_{\mathrm{IoU}} = \frac{1}{N} \sum_{a \in F} w_a \left(1 - \mathrm{CIoU}(\hat b_a, b_a)\right),
      \qquad
      L_{\mathrm{DFL}} = \frac{1}{N} \sum_{a \in F} w_a\, \frac{1}{4} \sum_{s=1}^{4}
      \mathrm{DFL}\left(\text{logits}_{a,s},\ d_{a,s} / \text{stride}_a\right)

    where :math:`d_a` = ``bbox2distance(points[a], target_boxes[a])`` are the
    distances from the point to the target box's sides (left, top, right,
    bottom) in pixels: DFL targets are in stride units, as the bins are. This
    is ultralytics' ``BboxLoss`` with ``reg_max = K``: there the boxes and
    points are divided by the stride first, which leaves the CIoU unchanged
    (it is scale invariant) and gives the same DFL targets. ultralytics clamps
    the targets to ``[0, K - 1 - 0.01]``; :func:`jax_dfl.distribution_focal_loss`
    clips them to ``[0, K - 1]`` with ``K - 1`` exact, so no margin is needed
    (the two agree wherever targets are inside ``[0, K - 1.01]``).

    **Foreground buffer.** Foreground is typically about 1 % of the points, so
    the loss gathers the foreground points (in index order) into a buffer of
    ``max_foreground`` rows (default: all points) and computes only there.
    Background points and unused rows contribute 0 to the value and get
    exactly 0 gradient, whatever they hold (NaN included).

    **Normalizer.** ``normalizer`` is the *batch's* summed target score
    (``target_scores.sum()`` over every image); the function uses
    ``max(normalizer, 1)``, as ultralytics does, so passing the raw sum is
    right. Under :func:`jax.vmap` over images pass the same batch normalizer to
    every image (``in_axes=None``) and **sum** the per-image losses: that is
    ultralytics' batch loss (before its gains ``box=7.5``, ``dfl=1.5`` and the
    batch-size factor).

    .. warning::
      If more than ``max_foreground`` points are foreground, the first
      ``max_foreground`` in index order are used and **the rest are silently
      dropped**. Use :func:`validate_foreground` under ``checkify`` (or compare
      ``foreground.sum()``) to make that an error.

    .. seealso::
      :func:`jax_dfl.task_aligned_assign` (which gives ``target_boxes``,
      ``target_scores`` and ``foreground``); :doc:`/tutorials/yolov8_port` (the
      PyTorch code side by side).

    Args:
      pred_logits: ``(A, 4, K)`` floating side logits (left, top, right, bottom).
      pred_boxes: ``(A, 4)`` predicted xyxy boxes in pixels (decoded from
        ``pred_logits``, e.g. :func:`jax_dfl.decode_boxes`, so that the CIoU
        term trains the same head).
      points: ``(A, 2)`` point coordinates ``(x, y)`` in pixels.
      target_boxes: ``(A, 4)`` assigned xyxy gt boxes in pixels.
      target_scores: ``(A, C)`` soft class targets of the assignment.
      foreground: ``(A,)`` bool foreground mask of the assignment.
      point_strides: ``(A,)`` stride of each point, in pixels per bin.
      normalizer: scalar, the batch's summed target score (clamped at 1 here).
      max_foreground: size of the foreground buffer, a Python int in
        ``[1, A]``; ``None`` for ``A`` (never drops a point).

    Returns:
      ``(iou_loss, dfl_loss)``: float32 scalars (float64 with float64 inputs).

    Examples:
      A perfect box whose sides sit on bins, predicted with near-one-hot logits:

      >>> import jax.numpy as jnp
      >>> logits = 20.0 * jnp.eye(4)[None, [1, 1, 2, 2]]  # (1 point, 4 sides, 4 bins)
      >>> box = jnp.array([[0.0, 0.0, 24.0, 24.0]])  # point (8, 8), stride 8: sides 1, 1, 2, 2
      >>> iou_loss, dfl = yolo_box_loss(
      ...     logits, box, jnp.array([[8.0, 8.0]]), box, jnp.array([[0.0, 0.5]]), jnp.array([True]),
      ...     point_strides=jnp.array([8.0]), normalizer=0.5)
      >>> print(f"{iou_loss:.4f} {dfl:.4f}")
      0.0000 0.0000

    References:
      Li et al., `Generalized Focal Loss: Learning Qualified and Distributed
      Bounding Boxes for Dense Object Detection <https://arxiv.org/abs/2006.04388>`_,
      NeurIPS 2020; Zheng et al., `Distance-IoU Loss: Faster and Better Learning
      for Bounding Box Regression <https://arxiv.org/abs/1911.08287>`_, AAAI 2020;
      ultralytics ``BboxLoss`` (``ultralytics/utils/loss.py``,
      https://github.com/ultralytics/ultralytics).
    """
    pred_logits, pred_boxes, points, target_boxes, target_scores, foreground, point_strides, normalizer = (
        _checks.arrays(
            "yolo_box_loss",
            pred_logits=(pred_logits, "float", "A 4 num_bins"),
            pred_boxes=(pred_boxes, "real", "A 4"),
            points=(points, "real", "A 2"),
            target_boxes=(target_boxes, "real", "A 4"),
            target_scores=(target_scores, "float", "A C"),
            foreground=(foreground, "bool", "A"),
            point_strides=(point_strides, "real", "A"),
            normalizer=(normalizer, "real", ""),
            minimum={"num_bins": 2},
        )
    )
    num_points = pred_logits.shape[0]
    size = _check_max_foreground(max_foreground, num_points)

    dtype = _checks.compute_dtype(
        pred_logits.dtype, pred_boxes.dtype, points.dtype, target_boxes.dtype, target_scores.dtype
    )
    (index,) = jnp.nonzero(foreground, size=size, fill_value=0)
    used = jnp.arange(size) < jnp.sum(foreground)

    def gather(x, safe):
        # Double where: unused rows take a safe constant, so their (zero) cotangent never meets a NaN.
        rows = x[index].astype(dtype)
        mask = used.reshape((size,) + (1,) * (rows.ndim - 1))
        return jnp.where(mask, rows, jnp.asarray(safe, dtype))

    boxes = gather(pred_boxes, _SAFE_BOX)
    targets = gather(target_boxes, _SAFE_BOX)
    weight = jnp.sum(gather(target_scores, 0.0), axis=-1)
    # A non-finite stride would scale the DFL targets to a confident 0 or clip them: NaN instead.
    strides = gather(point_strides, 1.0)
    strides = jnp.where(jnp.isfinite(strides), strides, jnp.nan)
    distances = bbox2distance(gather(points, _SAFE_POINT), targets) / strides[:, None]
    logits = jnp.where(used[:, None, None], pred_logits[index], 0)

    ciou = iou_family(boxes, targets, "ciou", 1e-9)
    iou_terms = jnp.where(used, (1 - ciou) * weight, 0)
    dfl = distribution_focal_loss(logits, distances, where=jnp.broadcast_to(used[:, None], (size, 4)))
    dfl_terms = jnp.where(used, jnp.mean(dfl, axis=-1) * weight, 0)
    # max(., 1) as ultralytics; an infinite normalizer would give a confident 0 loss: NaN instead.
    normalizer = normalizer.astype(dtype)
    norm = jnp.where(jnp.isfinite(normalizer), jnp.maximum(normalizer, 1), jnp.nan)
    return jnp.sum(iou_terms) / norm, jnp.sum(dfl_terms) / norm


def validate_foreground(foreground: ArrayLike, *, max_foreground: int | None) -> None:
    """Opt-in ``checkify`` check that no foreground point is dropped by :func:`yolo_box_loss`.

    ``yolo_box_loss(..., max_foreground=m)`` computes on the first ``m``
    foreground points and silently drops the rest. Call this inside the
    function you jit, with the same ``max_foreground``, and wrap it with
    :func:`jax.experimental.checkify.checkify` to make an overflow an error
    naming the count. Works on one image's ``(A,)`` mask or a batch's
    ``(B, A)`` masks (each image is checked). ``None`` (no buffer) always passes.

    .. warning::
      Outside ``checkify`` a jitted call fails to trace, as for any
      ``checkify.check``.

    Args:
      foreground: ``(..., A)`` boolean foreground masks.
      max_foreground: the buffer size given to :func:`yolo_box_loss`.

    Returns:
      ``None``; the check is recorded for ``checkify``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jax.experimental import checkify
      >>> def f(fg):
      ...   validate_foreground(fg, max_foreground=2)
      ...   return fg.sum()
      >>> err, _ = checkify.checkify(jax.jit(f))(jnp.array([True, True, True, False]))
      >>> print(err.get())  # doctest: +ELLIPSIS
      3 foreground points in one image, more than max_foreground=2...
    """
    (foreground,) = _checks.arrays("validate_foreground", foreground=(foreground, "bool", "... A"))
    size = _check_max_foreground(max_foreground, foreground.shape[-1])
    count = jnp.max(jnp.sum(foreground, axis=-1), initial=0)
    checkify.check(
        count <= size,
        "{count} foreground points in one image, more than max_foreground={size}: "
        "yolo_box_loss would drop the extra ones",
        count=count,
        size=jnp.asarray(size),
    )
