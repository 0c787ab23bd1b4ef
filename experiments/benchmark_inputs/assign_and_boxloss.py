"""Realistic batched inputs for timing ``task_aligned_assign`` and ``yolo_box_loss``.

Plain functions, no timing here: the benchmark script decides how to time them. Sizes default
to a YOLOv8 training batch at 640 px (strides 8/16/32, 8400 points), COCO-like objects and
80 classes. Every array is a ``jnp`` array on the default device.

    import jax, jax_dfl.assignment as A
    inputs = make_assign_inputs()
    assign = lambda s, b, p, gl, gb, gm: A.task_aligned_assign(
        pred_boxes=b, pred_scores=s, points=p, gt_boxes=gb, gt_labels=gl, gt_mask=gm
    )
    fn = jax.jit(jax.vmap(assign, in_axes=(0, 0, None, 0, 0, 0)))
    fn(*inputs.values())
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jax_dfl.boxes import anchor_points, decode_boxes

STRIDES = (8, 16, 32)


def _grid(points: int) -> tuple[int, jax.Array, jax.Array]:
    """Image size whose 8/16/32 pyramid has exactly ``points`` cells: 21 * (size / 32)^2."""
    cells = math.isqrt(points // 21)
    if 21 * cells * cells != points:
        raise ValueError(f"points must be 21 * n^2 (a square image at strides 8/16/32); got {points}")
    size = 32 * cells
    shapes = [(size // s, size // s) for s in STRIDES]
    points_xy, point_strides = anchor_points(shapes, STRIDES)
    return size, points_xy, point_strides


def _coco_like_boxes(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> np.ndarray:
    """xyxy boxes inside the image, sides log-uniform from 8 px to 60 % of the image (COCO's
    small / medium / large mix), aspect ratios within 1:3."""
    area_side = np.exp(rng.uniform(np.log(8.0), np.log(0.6 * size), shape))
    aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3), shape))
    w = np.minimum(area_side * np.sqrt(aspect), size)
    h = np.minimum(area_side / np.sqrt(aspect), size)
    x1 = rng.uniform(0, size - w)
    y1 = rng.uniform(0, size - h)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=-1)


def make_assign_inputs(
    images: int = 64,
    points: int = 8400,
    gt_slots: int = 64,
    valid: int = 20,
    classes: int = 80,
    seed: int = 0,
) -> dict[str, jax.Array]:
    """Inputs of ``task_aligned_assign`` for a batch: ``scores (B, A, C)``, ``pred_boxes (B, A, 4)``,
    ``points (A, 2)`` (shared: ``in_axes=None``), ``gt_labels (B, G)``, ``gt_boxes (B, G, 4)``,
    ``gt_mask (B, G)`` with ``valid`` real gts per image, in that order.

    Predicted boxes are centred near their point with COCO-like sizes, scores are sigmoid
    probabilities mostly near 0 (as early in training), padding slots hold zeros.
    """
    if not 0 <= valid <= gt_slots:
        raise ValueError(f"valid must be in [0, gt_slots]; got valid={valid}, gt_slots={gt_slots}")
    rng = np.random.default_rng(seed)
    size, points_xy, _ = _grid(points)
    gt_boxes = _coco_like_boxes(rng, (images, gt_slots), size)
    gt_mask = np.broadcast_to(np.arange(gt_slots) < valid, (images, gt_slots))
    gt_boxes = np.where(gt_mask[..., None], gt_boxes, 0.0)
    gt_labels = np.where(gt_mask, rng.integers(0, classes, (images, gt_slots)), 0)
    pred = _coco_like_boxes(rng, (images, points), size)
    half = (pred[..., 2:] - pred[..., :2]) / 2
    centre = np.asarray(points_xy)[None] + rng.normal(scale=4.0, size=(images, points, 2))
    pred_boxes = np.concatenate([centre - half, centre + half], axis=-1)
    scores = 1 / (1 + np.exp(-rng.normal(-4.0, 2.0, (images, points, classes))))
    return {
        "scores": jnp.asarray(scores, jnp.float32),
        "pred_boxes": jnp.asarray(pred_boxes, jnp.float32),
        "points": points_xy,
        "gt_labels": jnp.asarray(gt_labels, jnp.int32),
        "gt_boxes": jnp.asarray(gt_boxes, jnp.float32),
        "gt_mask": jnp.asarray(gt_mask),
    }


def make_boxloss_inputs(
    images: int = 64, points: int = 8400, bins: int = 16, foreground_fraction: float = 0.01, seed: int = 0
) -> dict[str, jax.Array]:
    """Inputs of ``yolo_box_loss`` for a batch, as keyword arguments (the positional ones first):
    ``pred_logits (B, A, 4, K)``, ``pred_boxes (B, A, 4)`` (decoded from the logits),
    ``points (A, 2)``, ``target_boxes (B, A, 4)``, ``target_scores (B, A, 80)``,
    ``foreground (B, A)``, ``point_strides (A,)``, ``normalizer`` (scalar, the batch's summed
    target score).

    Exactly ``round(foreground_fraction * A)`` foreground points per image (so
    ``max_foreground`` can be set to that, ``"foreground_count"`` in the result, a Python int);
    target boxes contain their point with sides within the bin range.
    """
    rng = np.random.default_rng(seed)
    _, points_xy, point_strides = _grid(points)
    count = round(foreground_fraction * points)
    if not 1 <= count <= points:
        raise ValueError(f"foreground_fraction gives {count} foreground points of {points}")
    pred_logits = rng.normal(size=(images, points, 4, bins)).astype(np.float32)
    pred_boxes = decode_boxes(jnp.asarray(pred_logits), points_xy, point_strides)
    sides = rng.uniform(0.5, bins - 1.5, (images, points, 4)) * np.asarray(point_strides)[None, :, None]
    xy = np.asarray(points_xy)[None]
    target_boxes = np.concatenate([xy - sides[..., :2], xy + sides[..., 2:]], axis=-1)
    foreground = np.zeros((images, points), bool)
    for image in range(images):
        foreground[image, rng.choice(points, count, replace=False)] = True
    target_scores = np.zeros((images, points, 80), np.float32)
    b, a = np.nonzero(foreground)
    target_scores[b, a, rng.integers(0, 80, len(a))] = rng.uniform(0.05, 0.9, len(a))
    return {
        "pred_logits": jnp.asarray(pred_logits),
        "pred_boxes": pred_boxes,
        "points": points_xy,
        "target_boxes": jnp.asarray(target_boxes, jnp.float32),
        "target_scores": jnp.asarray(target_scores),
        "foreground": jnp.asarray(foreground),
        "point_strides": point_strides,
        "normalizer": jnp.asarray(target_scores.sum(), jnp.float32),
        "foreground_count": count,
    }
