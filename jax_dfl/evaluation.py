"""COCO box AP / AR of padded per-image predictions, through the official COCO API.

Host-side NumPy code (not jittable): it builds the COCO dictionaries in memory
and runs ``pycocotools``' ``COCOeval``, so the numbers are COCO's own. The
``pycocotools`` package is the optional extra ``eval`` (``pip install pycocotools``, or
``pip install ".[eval]"`` from a checkout); this module imports without it.

Inputs follow the input rules of ``docs/conventions.md``, checked on the host.
"""

from __future__ import annotations

import contextlib
import io
import math
import operator
from collections.abc import Mapping

import numpy as np
from jax.typing import ArrayLike

from jax_dfl import _checks, _deprecation

# COCO's size classes, in pixels^2 of box area (pycocotools' Params.setDetParams). Both ends of a
# range are inclusive there, so an object of exactly 32^2 counts as small and as medium.
COCO_AREA_RANGES: dict[str, tuple[float, float]] = {
    "S": (0.0, 32.0**2),
    "M": (32.0**2, 96.0**2),
    "L": (96.0**2, 1e5**2),
}
_ALL_AREAS = (0.0, 1e5**2)  # pycocotools' "all" range


def _import_pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:
        raise ImportError(
            "coco_evaluate needs pycocotools (the official COCO API), an optional dependency: "
            'pip install "pycocotools>=2.0.7"  (what the extra jax_dfl[eval] installs; from a checkout: '
            'pip install ".[eval]")'
        ) from error
    return COCO, COCOeval


def _area_ranges(area_ranges: Mapping[str, tuple[float, float]] | None) -> dict[str, tuple[float, float]]:
    if area_ranges is None:
        return dict(COCO_AREA_RANGES)
    out = {}
    for name, bounds in area_ranges.items():
        if not isinstance(name, str) or not name or name == "all":
            raise ValueError(f"area_ranges keys must be non-empty names other than 'all'; got {name!r}")
        lo, hi = (float(v) for v in bounds)
        if not 0 <= lo <= hi:
            raise ValueError(f"area_ranges[{name!r}] must be (lo, hi) with 0 <= lo <= hi; got {bounds!r}")
        out[name] = (lo, hi)
    return out


def _mean_defined(values: np.ndarray) -> float:
    # pycocotools marks "no ground truth in this category / size range" with -1 and its summarize()
    # averages only the entries > -1; with none left it prints -1, we return NaN.
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else math.nan


def coco_evaluate(
    pred_boxes: ArrayLike,
    pred_scores: ArrayLike,
    pred_labels: ArrayLike,
    gt_boxes: ArrayLike,
    gt_labels: ArrayLike,
    *legacy: ArrayLike | None,
    pred_mask: ArrayLike | None = None,
    gt_mask: ArrayLike | None = None,
    max_detections: int = 100,
    area_ranges: Mapping[str, tuple[float, float]] | None = None,
    **deprecated: ArrayLike | None,
) -> dict[str, float]:
    """COCO bounding-box AP and AR of a batch of images, computed by ``pycocotools``.

    Predictions and ground truth are padded per-image arrays (e.g. the output of
    :func:`jax_dfl.non_max_suppression` gathered per image), xyxy in pixels.
    They are converted to COCO's in-memory format: one image per row (ids
    ``1..B``), boxes as ``[x, y, w, h]``, ground-truth ``area = w * h`` (there
    are no segmentations), ``iscrowd = 0``, categories = every label present.
    Then ``COCOeval(..., "bbox")`` runs ``evaluate()`` and ``accumulate()``
    with ``params.maxDets = [1, 10, max_detections]`` (1 and 10 only when
    below ``max_detections``; its prints are
    silenced), and the statistics are read from its ``eval["precision"]`` and
    ``eval["recall"]`` arrays the way ``summarize()`` does: mean over the IoU
    thresholds ``0.50:0.05:0.95``, the 101 recall points and the categories,
    skipping the entries COCO marks ``-1``. ``summarize()`` itself is not
    used: it hard-codes ``maxDets=100`` for AP, so any other
    ``max_detections`` would silently read nothing.

    COCO semantics to keep in mind: ``maxDets`` caps the detections *per
    image and per category* (highest scores first); a detection matches a
    ground-truth box of its own label only, so a right box with a wrong label
    is a false positive; a size class keeps the ground truth whose area is in
    its range (ends inclusive) and drops unmatched detections outside it.

    .. warning::
      Host-side and not jittable: call it on concrete arrays (NumPy, JAX or
      lists) outside ``jit``.

    .. versionchanged:: 0.3.0
      The masks are optional keywords, ``pred_mask=`` (was ``pred_valid``) and
      ``gt_mask=``. The old positional form ``coco_evaluate(pred_boxes,
      pred_scores, pred_labels, pred_valid, gt_boxes, gt_labels, gt_mask)``
      still works with a ``DeprecationWarning`` until 0.4.0.

    Args:
      pred_boxes: ``(B, D, 4)`` predicted xyxy boxes, float or int. Predicted
        widths or heights below 0 count as 0.
      pred_scores: ``(B, D)`` floating confidences (higher is better).
      pred_labels: ``(B, D)`` integer class ids.
      gt_boxes: ``(B, G, 4)`` ground-truth xyxy boxes, float or int.
      gt_labels: ``(B, G)`` integer class ids.
      pred_mask: ``(B, D)`` boolean mask of real predictions (padding
        False), or None (default) for all.
      gt_mask: ``(B, G)`` boolean mask of real objects, or None (default) for all.
      max_detections: Python int > 0, COCO's largest ``maxDets`` (keyword-only).
        Above 100 for images with hundreds of objects.
      area_ranges: optional ``{name: (lo, hi)}`` areas in pixels^2 replacing
        COCO's ``{"S": (0, 32**2), "M": (32**2, 96**2), "L": (96**2, 1e10)}``,
        e.g. size terciles of a data set.

    Returns:
      A dict of floats: ``AP`` (IoU 0.50:0.95), ``AP50``, ``AP75``,
      ``AP_<name>`` per area range, ``AR@1``, ``AR@10`` (those below ``max_detections``),
      ``AR@<max_detections>`` (IoU 0.50:0.95) and ``AR_<name>`` per area range
      (at ``max_detections``). AP and AR are at ``max_detections``. A value is
      NaN where COCO has nothing to average (no ground truth in any category,
      or none in that size range); ``summarize()`` would print -1 there.

    Raises:
      ImportError: pycocotools is not installed.
      TypeError, ValueError: wrong dtypes, shapes that disagree, a
        non-finite valid box or score, a ground-truth box with ``x2 < x1``
        or ``y2 < y1``, or a bad ``max_detections`` / ``area_ranges``.

    Examples:
      >>> import numpy as np
      >>> gt = np.array([[[10.0, 10, 50, 50], [60, 60, 200, 200]]])  # one image: 40^2 and 140^2 px
      >>> labels = np.array([[0, 1]])
      >>> stats = coco_evaluate(gt, [[0.9, 0.8]], labels, gt, labels)
      >>> print(list(stats))
      ['AP', 'AP50', 'AP75', 'AP_S', 'AP_M', 'AP_L', 'AR@1', 'AR@10', 'AR@100', 'AR_S', 'AR_M', 'AR_L']
      >>> print([round(stats[name], 3) for name in ("AP", "AP_S", "AP_M", "AP_L", "AR@1")])  # no small object
      [1.0, nan, 1.0, 1.0, 1.0]

    References:
      Lin et al., `Microsoft COCO: Common Objects in Context
      <https://arxiv.org/abs/1405.0312>`_, ECCV 2014; the COCO API,
      https://github.com/cocodataset/cocoapi (``PythonAPI/pycocotools/cocoeval.py``).
    """
    if legacy:
        # The 0.2 order: pred_valid came 4th and gt_mask 7th, both positional.
        if len(legacy) > 2 or pred_mask is not None:
            raise TypeError(
                "coco_evaluate() takes 5 positional arguments; pass the masks as pred_mask=, gt_mask="
            )
        _deprecation.warn(
            "coco_evaluate(): the positional masks are deprecated; write coco_evaluate(pred_boxes, "
            "pred_scores, pred_labels, gt_boxes, gt_labels, pred_mask=..., gt_mask=...)",
        )
        # legacy[0] is the 0.2 order's gt_boxes, never None; pyright cannot see the old order.
        pred_mask, gt_boxes, gt_labels = gt_boxes, gt_labels, legacy[0]  # pyright: ignore
        if len(legacy) == 2:
            if gt_mask is not None:
                raise TypeError("coco_evaluate() got gt_mask both by position and by keyword")
            gt_mask = legacy[1]
    _deprecation.move_keyword(deprecated, "pred_valid", "pred_mask", "coco_evaluate")
    if "pred_mask" in deprecated:
        if pred_mask is not None:
            raise TypeError("coco_evaluate() got both pred_valid= (deprecated) and pred_mask=")
        pred_mask = deprecated.pop("pred_mask")
    if deprecated:
        raise TypeError(f"coco_evaluate() got unexpected keyword arguments {sorted(deprecated)}")
    # Host-side NumPy: the arrays are checked as NumPy arrays and never reach a device.
    pred_boxes, pred_scores, pred_labels, pred_valid, gt_boxes, gt_labels, gt_mask = _checks.arrays(
        "coco_evaluate",
        pred_boxes=(pred_boxes, "real", "images detections 4"),  # pixel boxes are often integers
        pred_scores=(pred_scores, "float", "images detections"),
        pred_labels=(pred_labels, "int", "images detections"),
        pred_mask=(pred_mask, "bool | None", "images detections"),
        gt_boxes=(gt_boxes, "real", "images gts 4"),
        gt_labels=(gt_labels, "int", "images gts"),
        gt_mask=(gt_mask, "bool | None", "images gts"),
        host=True,
    )
    pred_boxes, pred_scores, gt_boxes = (x.astype(np.float64) for x in (pred_boxes, pred_scores, gt_boxes))
    pred_labels, gt_labels = pred_labels.astype(np.int64), gt_labels.astype(np.int64)
    pred_valid = np.ones(pred_boxes.shape[:2], bool) if pred_valid is None else pred_valid
    gt_mask = np.ones(gt_boxes.shape[:2], bool) if gt_mask is None else gt_mask
    if isinstance(max_detections, bool | np.bool_):
        raise ValueError(f"max_detections must be a positive Python int; got {max_detections!r}")
    try:
        max_detections = operator.index(max_detections)
    except TypeError:
        raise ValueError(f"max_detections must be a positive Python int; got {max_detections!r}") from None
    if max_detections <= 0:
        raise ValueError(f"max_detections must be a positive Python int; got {max_detections}")
    ranges = _area_ranges(area_ranges)
    if not np.all(np.isfinite(pred_boxes[pred_valid])) or not np.all(np.isfinite(pred_scores[pred_valid])):
        raise ValueError("pred_boxes and pred_scores must be finite where pred_mask is True")
    real_gt = gt_boxes[gt_mask]
    if not np.all(np.isfinite(real_gt)):
        raise ValueError("gt_boxes must be finite where gt_mask is True")
    if np.any(real_gt[:, 2:] < real_gt[:, :2]):
        raise ValueError("gt_boxes must have x2 >= x1 and y2 >= y1 where gt_mask is True")
    COCO, COCOeval = _import_pycocotools()

    images = [{"id": image + 1} for image in range(gt_boxes.shape[0])]
    categories = sorted(set(gt_labels[gt_mask].tolist()) | set(pred_labels[pred_valid].tolist()))

    def annotations(boxes, labels, mask, scores=None):
        out = []
        for image, slot in zip(*np.nonzero(mask), strict=True):
            x1, y1, x2, y2 = boxes[image, slot].tolist()
            w, h = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
            ann = {
                # ids start at 1: COCOeval stores matches as ids and reads 0 as "unmatched".
                "id": len(out) + 1,
                "image_id": int(image) + 1,
                "category_id": int(labels[image, slot]),
                "bbox": [x1, y1, w, h],
                "area": w * h,  # what loadRes sets for box results; for the ground truth, the box area
                "iscrowd": 0,
            }
            if scores is not None:
                ann["score"] = float(scores[image, slot])
            out.append(ann)
        return out

    def coco(anns):
        # Built directly rather than with COCO.loadRes, which fails on an empty result list.
        api = COCO()
        # typeshed's pycocotools stubs type `dataset` as a full COCO file (image sizes and file names,
        # segmentations, category names); COCO's index and COCOeval's bbox evaluation read only these.
        api.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in categories]}  # pyright: ignore[reportAttributeAccessIssue]
        api.createIndex()
        return api

    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(
            coco(annotations(gt_boxes, gt_labels, gt_mask)),
            coco(annotations(pred_boxes, pred_labels, pred_valid, pred_scores)),
            "bbox",
        )
        params = evaluator.params
        params.maxDets = sorted({d for d in (1, 10) if d < max_detections} | {max_detections})
        params.areaRng = [list(_ALL_AREAS)] + [list(r) for r in ranges.values()]
        params.areaRngLbl = ["all", *ranges]
        evaluator.evaluate()
        evaluator.accumulate()

    precision = evaluator.eval["precision"]  # (iou thresholds, recall points, categories, areas, maxDets)
    recall = evaluator.eval["recall"]  # (iou thresholds, categories, areas, maxDets)
    m = params.maxDets.index(max_detections)
    iou50 = np.flatnonzero(np.isclose(params.iouThrs, 0.5))
    iou75 = np.flatnonzero(np.isclose(params.iouThrs, 0.75))
    stats = {
        "AP": _mean_defined(precision[..., 0, m]),
        "AP50": _mean_defined(precision[iou50][..., 0, m]),
        "AP75": _mean_defined(precision[iou75][..., 0, m]),
    }
    for a, name in enumerate(ranges, start=1):
        stats[f"AP_{name}"] = _mean_defined(precision[..., a, m])
    for i, dets in enumerate(params.maxDets):
        stats[f"AR@{dets}"] = _mean_defined(recall[..., 0, i])
    for a, name in enumerate(ranges, start=1):
        stats[f"AR_{name}"] = _mean_defined(recall[..., a, m])
    return stats
