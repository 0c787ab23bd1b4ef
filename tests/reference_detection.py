"""Float64 NumPy references for the detection building blocks, written from the papers and
from ultralytics' published algorithm, independently of jax_dfl.

Loops over boxes, gts and points on purpose. Two task-aligned assigners: ``tal`` follows the
algorithm as described in words (per gt, per point), ``tal_ultralytics`` follows the order of
ultralytics' tensor steps (``TaskAlignedAssigner`` in ``ultralytics/utils/tal.py`` as published in
ultralytics 8.4.190, with its small-box enlargement ``stride_val`` and its ``topk2`` as options)
with its CIoU, eps included.
"""

from __future__ import annotations

import math

import numpy as np


def _aspect(w: float, h: float) -> float:
    return math.atan2(w, h)  # atan(w / h) for h > 0; atan2(0, 0) = 0


def iou_value(b1, b2, kind: str = "iou") -> float:
    """IoU / GIoU / DIoU / CIoU of two xyxy boxes from the definitions (0 / 0 taken as 0)."""
    x1, y1, x2, y2 = (float(v) for v in b1)
    u1, v1, u2, v2 = (float(v) for v in b2)
    w1, h1 = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
    w2, h2 = max(u2 - u1, 0.0), max(v2 - v1, 0.0)
    inter = max(min(x2, u2) - max(x1, u1), 0.0) * max(min(y2, v2) - max(y1, v1), 0.0)
    union = w1 * h1 + w2 * h2 - inter
    iou = inter / union if union > 0 else 0.0
    if kind == "iou":
        return iou
    cw = max(max(x2, u2) - min(x1, u1), 0.0)
    ch = max(max(y2, v2) - min(y1, v1), 0.0)
    if kind == "giou":
        area = cw * ch
        return iou - ((area - union) / area if area > 0 else 0.0)
    centre_x1, centre_y1 = (x1 + x2) / 2, (y1 + y2) / 2
    centre_x2, centre_y2 = (u1 + u2) / 2, (v1 + v2) / 2
    rho2 = (centre_x1 - centre_x2) ** 2 + (centre_y1 - centre_y2) ** 2
    c2 = cw**2 + ch**2
    diou = iou - (rho2 / c2 if c2 > 0 else 0.0)
    if kind == "diou":
        return diou
    v = 4 / math.pi**2 * (_aspect(w2, h2) - _aspect(w1, h1)) ** 2
    alpha = v / ((1 - iou) + v) if v > 0 else 0.0
    return diou - alpha * v


def ciou_alpha(b1, b2) -> float:
    """CIoU's trade-off weight alpha, to freeze it in a numerical gradient."""
    w1, h1 = b1[2] - b1[0], b1[3] - b1[1]
    w2, h2 = b2[2] - b2[0], b2[3] - b2[1]
    v = 4 / math.pi**2 * (_aspect(w2, h2) - _aspect(w1, h1)) ** 2
    return v / ((1 - iou_value(b1, b2)) + v) if v > 0 else 0.0


def ciou_frozen_alpha(b1, b2, alpha: float) -> float:
    """CIoU with a given alpha: the function whose gradient CIoU's gradient is."""
    w1, h1 = b1[2] - b1[0], b1[3] - b1[1]
    w2, h2 = b2[2] - b2[0], b2[3] - b2[1]
    v = 4 / math.pi**2 * (_aspect(w2, h2) - _aspect(w1, h1)) ** 2
    return iou_value(b1, b2, "diou") - alpha * v


def paired(boxes1, boxes2, kind: str) -> np.ndarray:
    b1 = np.asarray(boxes1, np.float64)
    b2 = np.asarray(boxes2, np.float64)
    out = np.zeros(b1.shape[:-1])
    for pos in np.ndindex(out.shape):
        out[pos] = iou_value(b1[pos], b2[pos], kind)
    return out


def ultralytics_ciou(b1, b2, eps: float = 1e-7) -> float:
    """ultralytics' ``bbox_iou(xywh=False, CIoU=True)`` formula for one pair, eps where it puts it."""
    x1, y1, x2, y2 = (float(v) for v in b1)
    u1, v1, u2, v2 = (float(v) for v in b2)
    w1, h1 = x2 - x1, y2 - y1 + eps
    w2, h2 = u2 - u1, v2 - v1 + eps
    inter = max(min(x2, u2) - max(x1, u1), 0.0) * max(min(y2, v2) - max(y1, v1), 0.0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = max(x2, u2) - min(x1, u1)
    ch = max(y2, v2) - min(y1, v1)
    c2 = cw**2 + ch**2 + eps
    rho2 = ((u1 + u2 - x1 - x2) ** 2 + (v1 + v2 - y1 - y2) ** 2) / 4
    v = 4 / math.pi**2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
    alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def anchors(feature_shapes, strides, offset: float = 0.5):
    points, point_strides = [], []
    for (height, width), stride in zip(feature_shapes, strides, strict=True):
        for row in range(height):
            for col in range(width):
                points.append(((col + offset) * stride, (row + offset) * stride))
                point_strides.append(float(stride))
    return np.array(points, np.float64), np.array(point_strides, np.float64)


def tal(
    scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask, *, top_k, alpha, beta, iou, eps=1e-9, stats=None
):
    """Task-aligned assignment from its description, one gt and one point at a time.

    Returns ``(labels, boxes, target_scores, foreground, gt_index)``; ``stats`` (a dict), if
    given, receives the number of points claimed by several gts under ``"conflicts"``.
    """
    scores = np.asarray(scores, np.float64)
    pred_boxes = np.asarray(pred_boxes, np.float64)
    points = np.asarray(points, np.float64)
    gt_boxes = np.where(np.asarray(gt_mask)[:, None], np.asarray(gt_boxes, np.float64), 0.0)
    gt_labels = np.where(gt_mask, np.asarray(gt_labels), 0)
    num_points, num_classes = scores.shape
    num_gt = len(gt_boxes)
    inside = np.zeros((num_gt, num_points), bool)
    overlap = np.zeros((num_gt, num_points))
    metric = np.zeros((num_gt, num_points))
    for g in range(num_gt):
        if not gt_mask[g]:
            continue
        for a in range(num_points):
            x, y = points[a]
            x1, y1, x2, y2 = gt_boxes[g]
            if min(x - x1, y - y1, x2 - x, y2 - y) > eps:
                inside[g, a] = True
                kind = "ciou" if iou == "ciou" else "iou"
                overlap[g, a] = max(iou_value(gt_boxes[g], pred_boxes[a], kind), 0.0)
                metric[g, a] = scores[a, gt_labels[g]] ** alpha * overlap[g, a] ** beta
    chosen = np.zeros((num_gt, num_points), bool)
    for g in range(num_gt):
        # Highest metric first; equal metrics in point order.
        order = sorted(range(num_points), key=lambda a, g=g: (-metric[g, a], a))[:top_k]
        for a in order:
            if metric[g, a] > eps and inside[g, a]:
                chosen[g, a] = True
    gt_index = np.zeros(num_points, np.int64)
    foreground = np.zeros(num_points, bool)
    for a in range(num_points):
        claims = [g for g in range(num_gt) if chosen[g, a]]
        if len(claims) > 1:
            if stats is not None:
                stats["conflicts"] = stats.get("conflicts", 0) + 1
            best = max(range(num_gt), key=lambda g, a=a: (overlap[g, a], -g))
            for g in range(num_gt):
                chosen[g, a] = g == best
            claims = [best]
        if claims:
            foreground[a] = True
            gt_index[a] = claims[0]
    target_scores = np.zeros((num_points, num_classes))
    for g in range(num_gt):
        mine = [a for a in range(num_points) if chosen[g, a]]
        if not mine:
            continue
        max_metric = max(metric[g, a] for a in mine)
        max_overlap = max(overlap[g, a] for a in mine)
        for a in mine:
            target_scores[a, gt_labels[g]] = metric[g, a] * max_overlap / (max_metric + eps)
    return gt_labels[gt_index], gt_boxes[gt_index], target_scores, foreground, gt_index


def tal_ultralytics(
    scores,
    pred_boxes,
    points,
    gt_labels,
    gt_boxes,
    gt_mask,
    *,
    top_k,
    alpha,
    beta,
    eps=1e-9,
    topk2=None,
    stride_val=None,
    zero_metric_fill=False,
):
    """ultralytics' TaskAlignedAssigner (CIoU) step by step in NumPy, dense (G, A) arrays.

    Transcribed from ``ultralytics/utils/tal.py`` of ultralytics 8.4.190 (PyPI), the names of
    its hyper-parameters kept. Its stages: in-gt mask (``stride_val``: valid gt sides shorter
    than it widened to it about the centre, through its xyxy -> xywh -> xyxy round trip), box
    metrics (CIoU with its eps, clamped at 0, against the gt boxes as given), top-k per gt,
    highest-overlap resolution of multiply-claimed points, the second top-k (``topk2``, skipped
    when ``None`` or equal to ``top_k``, as there), targets gathered at the argmax of the final
    mask, normalised alignment. Ties in both top-ks are broken by point order (torch.topk leaves
    them unspecified).

    One deviation by default, the one ``task_aligned_assign`` documents: picks of metric <= eps
    are dropped from the top-k. ultralytics keeps every pick of a valid gt, so a gt with fewer
    than ``top_k`` candidates of positive metric also gets some of its zero-metric candidates
    (whichever torch.topk puts first among the zeros) as foreground of target score 0;
    ``zero_metric_fill=True`` does that, zeros taken in point order.
    """
    scores = np.asarray(scores, np.float64)
    pred_boxes = np.asarray(pred_boxes, np.float64)
    points = np.asarray(points, np.float64)
    gt_boxes = np.asarray(gt_boxes, np.float64)
    gt_labels = np.asarray(gt_labels)
    mask_gt = np.asarray(gt_mask, np.float64)[:, None]  # (G, 1)
    num_gt, num_points = len(gt_boxes), len(points)
    num_classes = scores.shape[1]
    test_boxes = gt_boxes
    if stride_val is not None:
        # xyxy -> (centre, size); sides below stride_val (valid gts only) set to it; back to xyxy.
        centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        size = gt_boxes[:, 2:] - gt_boxes[:, :2]
        size = np.where((size < stride_val) & (mask_gt > 0), float(stride_val), size)
        test_boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    deltas = np.concatenate(
        [points[None] - test_boxes[:, None, :2], test_boxes[:, None, 2:] - points[None]], axis=-1
    )
    mask_in_gts = (deltas.min(-1) > eps).astype(np.float64)
    box_mask = (mask_in_gts * mask_gt).astype(bool)
    overlaps = np.zeros((num_gt, num_points))
    bbox_scores = np.zeros((num_gt, num_points))
    for g, a in zip(*np.nonzero(box_mask), strict=True):
        overlaps[g, a] = max(ultralytics_ciou(gt_boxes[g], pred_boxes[a]), 0.0)
        bbox_scores[g, a] = scores[a, gt_labels[g]]
    align_metric = bbox_scores**alpha * overlaps**beta
    order = np.argsort(-align_metric, axis=-1, kind="stable")[:, :top_k]
    top_metrics = np.take_along_axis(align_metric, order, axis=-1)
    topk_mask = np.broadcast_to(mask_gt > 0, top_metrics.shape)
    if not zero_metric_fill:
        topk_mask = topk_mask & (top_metrics > eps)
    count = np.zeros((num_gt, num_points))
    for g in range(num_gt):
        for k in range(top_k):
            count[g, order[g, k]] += topk_mask[g, k]
    mask_pos = count * mask_in_gts * mask_gt
    fg = mask_pos.sum(0)
    if fg.max(initial=0) > 1:
        multi = np.broadcast_to(fg[None] > 1, mask_pos.shape)
        is_max = np.zeros_like(mask_pos)
        is_max[overlaps.argmax(0), np.arange(num_points)] = 1
        mask_pos = np.where(multi, is_max, mask_pos)
        fg = mask_pos.sum(0)
    if topk2 is not None and topk2 != top_k:
        # Each gt keeps its topk2 points of highest metric among its final points.
        second = np.argsort(-(align_metric * mask_pos), axis=-1, kind="stable")[:, :topk2]
        in_second = np.zeros_like(mask_pos)
        in_second[np.arange(num_gt)[:, None], second] = 1
        mask_pos = mask_pos * in_second
        fg = mask_pos.sum(0)
    gt_index = mask_pos.argmax(0)
    labels = gt_labels[gt_index]
    boxes = gt_boxes[gt_index]
    target_scores = np.zeros((num_points, num_classes))
    target_scores[np.arange(num_points), np.maximum(labels, 0)] = 1
    target_scores *= (fg > 0)[:, None]
    align_metric = align_metric * mask_pos
    pos_align = align_metric.max(-1, keepdims=True)
    pos_overlaps = (overlaps * mask_pos).max(-1, keepdims=True)
    norm = (align_metric * pos_overlaps / (pos_align + eps)).max(0)
    return labels, boxes, target_scores * norm[:, None], fg > 0, gt_index


def dfl_row(logits, target: float) -> float:
    """DFL of one side: two-hot cross-entropy, target clipped to [0, K-1], K-1 exact."""
    logits = np.asarray(logits, np.float64)
    k_max = len(logits) - 1
    y = min(max(target, 0.0), float(k_max))
    left = min(math.floor(y), k_max - 1)
    log_p = logits - logits.max() - math.log(np.exp(logits - logits.max()).sum())
    return -((left + 1 - y) * log_p[left] + (y - left) * log_p[left + 1])


def box_loss(pred_logits, pred_boxes, points, target_boxes, target_scores, foreground, strides, normalizer):
    """ultralytics' BboxLoss in stride units (boxes and points divided by the stride, as v8DetectionLoss
    feeds it), without its -0.01 target margin. Returns ``(iou_loss, dfl_loss)``."""
    norm = max(float(normalizer), 1.0)
    iou_sum = dfl_sum = 0.0
    for a in np.flatnonzero(foreground):
        s = float(strides[a])
        weight = float(np.sum(np.asarray(target_scores[a], np.float64)))
        pb = np.asarray(pred_boxes[a], np.float64) / s
        tb = np.asarray(target_boxes[a], np.float64) / s
        px, py = np.asarray(points[a], np.float64) / s
        iou_sum += (1 - iou_value(pb, tb, "ciou")) * weight
        sides = (px - tb[0], py - tb[1], tb[2] - px, tb[3] - py)
        dfl_sum += np.mean([dfl_row(pred_logits[a][i], sides[i]) for i in range(4)]) * weight
    return iou_sum / norm, dfl_sum / norm
