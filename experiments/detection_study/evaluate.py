"""Inference, NMS, COCO AP (pycocotools' matching), bootstrap intervals and the GFLv2 premise check.

AP is computed in two steps so that it can be bootstrapped cheaply:
pycocotools' ``COCOeval.evaluate()`` matches detections to ground truth per
image (each test block, or each synthetic image, is a COCO image), and
:func:`ap_from_matches` accumulates those matches the way ``accumulate()``
does, for any multiset of images (a bootstrap resample repeats some). With
every image once it equals :func:`jax_dfl.evaluation.coco_evaluate` (tested).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import stats as common_stats
from jax_dfl import anchor_points, distribution_stats, non_max_suppression
from jax_dfl.evaluation import COCO_AREA_RANGES

from . import data as data_lib
from .arms import Arm, decoded_boxes
from .model import feature_shapes

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    iou_threshold: float = 0.6  # NMS; crowns rarely overlap by more
    score_threshold: float = 0.001  # low, as for COCO AP: the ranking, not a cut, decides
    max_detections: int = 1000  # per whole image, above the largest crown count (574)
    # Pre-NMS cap per image (after dropping points far from the scored blocks). None: no cap, every
    # candidate goes to NMS (the feasibility run lost a third of AP50 to a small cap).
    pre_nms: int | None = None
    core: int = 192  # tiled inference: tiles of core + 2 * margin, only the core's points kept
    margin: int = 32


# --- per-point predictions ------------------------------------------------------------------------


def point_predictions(arm: Arm, model, images: jax.Array, strides: Sequence[int]):
    """``scores (B, A)``, ``boxes (B, A, 4)`` xyxy in the images' pixels, ``spread (B, A)`` and
    ``sharpness (B, A)`` (mean over sides of the bin distribution's std and top-4 mass; NaN
    for scalar heads)."""
    height, width = images.shape[1:3]
    points, point_strides = anchor_points(feature_shapes(height, width, strides), strides)
    logits, box_out = model(images)
    boxes = decoded_boxes(arm, box_out, points, point_strides)
    if arm.distribution:
        stats = distribution_stats(box_out, k=4, bin_values=arm.bin_values)
        spread = jnp.mean(jnp.sqrt(stats.variance), -1)
        sharpness = jnp.mean(stats.topk_mean * 4, -1)  # mass of the 4 largest bins, GFLv2's statistic
    else:
        spread = sharpness = jnp.full(logits.shape, jnp.nan)
    return jax.nn.sigmoid(logits), boxes, spread, sharpness


def make_nms(config: EvalConfig, max_detections: int):
    return jax.jit(
        lambda boxes, scores, where: non_max_suppression(
            boxes,
            scores,
            iou_threshold=config.iou_threshold,
            max_detections=max_detections,
            score_threshold=config.score_threshold,
            where=where,
        )
    )


@dataclasses.dataclass
class Detections:
    """Kept detections of one image: boxes ``(D, 4)`` (working-scale pixels), scores, spread, sharpness."""

    boxes: np.ndarray
    scores: np.ndarray
    spread: np.ndarray
    sharpness: np.ndarray
    candidates: int = 0  # points above the score threshold before the pre-NMS cap


def tile_origins(height: int, width: int, config: EvalConfig, blocks: Sequence[data_lib.Block]):
    """Core origins ``(y, x)`` of the tiles needed for ``blocks`` (their cores, dilated by the margin)."""
    origins = []
    for ty in range(-(-height // config.core)):
        for tx in range(-(-width // config.core)):
            y0, x0 = ty * config.core, tx * config.core
            y1, x1 = y0 + config.core, x0 + config.core
            m = config.margin
            if any(x0 < b.x1 + m and b.x0 - m < x1 and y0 < b.y1 + m and b.y0 - m < y1 for b in blocks):
                origins.append((y0, x0))
    return origins


def detect_scene(predict, nms, scene: data_lib.Scene, blocks, strides, config: EvalConfig, chunk: int = 8):
    """Tiled whole-image inference over the tiles covering ``blocks``, one global NMS.

    ``predict(images)`` -> numpy ``(scores, boxes, spread, sharpness)`` per point of each tile.
    """
    height, width = scene.image.shape[:2]
    m, size = config.margin, config.core + 2 * config.margin
    rows, cols = -(-height // config.core), -(-width // config.core)
    padded = np.zeros((rows * config.core + 2 * m, cols * config.core + 2 * m, 3), np.float32)
    padded[m : m + height, m : m + width] = scene.image
    origins = tile_origins(height, width, config, blocks)
    points, _ = anchor_points(feature_shapes(size, size, strides), strides)
    points = np.asarray(points)
    in_core = np.all((points >= m) & (points < m + config.core), axis=-1)
    m_near = config.margin

    def near(xy):
        # A point lies inside its own box, so a detection centred in a block comes from a point within
        # half a box (< margin) of it: points farther out only fill the pre-NMS budget.
        inside = np.zeros(len(xy), bool)
        for b in blocks:
            inside |= (
                (xy[:, 0] >= b.x0 - m_near)
                & (xy[:, 0] < b.x1 + m_near)
                & (xy[:, 1] >= b.y0 - m_near)
                & (xy[:, 1] < b.y1 + m_near)
            )
        return inside

    outs = []
    for start in range(0, len(origins), chunk):
        part = origins[start : start + chunk]
        tiles = np.stack([padded[y : y + size, x : x + size] for y, x in part])
        if len(part) < chunk:  # a fixed batch shape: one compilation
            tiles = np.concatenate([tiles, np.zeros((chunk - len(part), size, size, 3), np.float32)])
        scores, boxes, spread, sharp = (np.asarray(a)[: len(part)] for a in predict(jnp.asarray(tiles)))
        for i, (y, x) in enumerate(part):
            offset = np.array([x - m, y - m, x - m, y - m], np.float32)
            gxy = points + offset[:2]
            keep = in_core & (gxy[:, 0] < width) & (gxy[:, 1] < height) & near(gxy)
            outs.append((scores[i][keep], boxes[i][keep] + offset, spread[i][keep], sharp[i][keep]))
    scores, boxes, spread, sharp = (np.concatenate(parts) for parts in zip(*outs, strict=True))
    candidates = int(np.sum(scores > config.score_threshold))
    top = np.argsort(-scores, kind="stable")[: config.pre_nms]
    n = len(top)
    # NMS runs on a padded, fixed-size buffer: a power of two, so only a few sizes ever compile.
    size = max(4096, 1 << max(n - 1, 1).bit_length())
    pad = lambda a, fill: np.concatenate([a[top], np.full((size - n, *a.shape[1:]), fill, a.dtype)])
    where = np.arange(size) < n
    keep, valid = (np.asarray(a) for a in nms(pad(boxes, 0.0), pad(scores, 0.0), where))
    keep = keep[valid]
    return Detections(
        pad(boxes, 0.0)[keep],
        pad(scores, 0.0)[keep],
        pad(spread, 0.0)[keep],
        pad(sharp, 0.0)[keep],
        candidates,
    )


def tercile_edges(boxes: np.ndarray) -> tuple[float, float]:
    """sqrt-area at the 1/3 and 2/3 quantiles: size groups of equal counts on this data's crowns."""
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    lo, hi = np.quantile(side, [1 / 3, 2 / 3])
    return float(lo), float(hi)


def coco_and_terciles(edges: Sequence[float]) -> dict[str, tuple[float, float]]:
    """COCO's S/M/L (areas in pixels^2) and the terciles T1/T2/T3, for one COCOeval run."""
    lo, hi = edges
    return {**COCO_AREA_RANGES, "T1": (0.0, lo**2), "T2": (lo**2, hi**2), "T3": (hi**2, 1e10)}


# --- COCO matching and AP -------------------------------------------------------------------------


@dataclasses.dataclass
class Matches:
    """pycocotools' per-image matching, one entry per (area range, image); None where COCO has none."""

    area_names: list[str]  # "all" first
    per_image: list[list[dict | None]]  # [area][image]
    max_detections: int
    flat: list | None = None  # built on first use by ap_from_matches

    @property
    def images(self) -> int:
        return len(self.per_image[0])


def coco_matches(
    pred_boxes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    *,
    max_detections: int,
    area_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> Matches:
    """Run ``COCOeval.evaluate()`` on per-image lists (one class) and keep its matches."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ranges = dict(COCO_AREA_RANGES if area_ranges is None else area_ranges)
    images = [{"id": i + 1} for i in range(len(gt_boxes))]

    def annotations(boxes_list, scores_list=None):
        out = []
        for image, boxes in enumerate(boxes_list):
            for j, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4).tolist()):
                w, h = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
                ann = {
                    "id": len(out) + 1,
                    "image_id": image + 1,
                    "category_id": 1,
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
                if scores_list is not None:
                    ann["score"] = float(scores_list[image][j])
                out.append(ann)
        return out

    def coco(anns):
        api = COCO()
        api.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1}]}
        api.createIndex()
        return api

    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco(annotations(gt_boxes)), coco(annotations(pred_boxes, pred_scores)), "bbox")
        evaluator.params.maxDets = [max_detections]
        evaluator.params.areaRng = [[0.0, 1e10]] + [list(r) for r in ranges.values()]
        evaluator.params.areaRngLbl = ["all", *ranges]
        evaluator.evaluate()
    n = len(images)
    per_area = [evaluator.evalImgs[a * n : (a + 1) * n] for a in range(len(ranges) + 1)]
    keep = ("dtScores", "dtMatches", "dtIgnore", "gtIgnore")
    per_image = [
        [None if e is None else {k: np.asarray(e[k]) for k in keep} for e in area] for area in per_area
    ]
    return Matches(["all", *ranges], per_image, max_detections)


@dataclasses.dataclass
class _Flat:
    """One area range's matches of every image, concatenated: what a resample repeats."""

    scores: np.ndarray  # (D,)
    hit: np.ndarray  # (T, D) matched and not ignored
    miss: np.ndarray  # (T, D) unmatched and not ignored
    image: np.ndarray  # (D,) image of each detection
    n_gt: np.ndarray  # (images,) ground truth not ignored


def _flatten(per_image: list[dict | None], max_det: int) -> _Flat:
    rows = [(i, e) for i, e in enumerate(per_image) if e is not None]
    n_gt = np.zeros(len(per_image), int)
    if not rows:
        empty = np.zeros((len(IOU_THRESHOLDS), 0), bool)
        return _Flat(np.zeros(0), empty, empty, np.zeros(0, int), n_gt)
    for i, e in rows:
        n_gt[i] = np.count_nonzero(e["gtIgnore"] == 0)
    scores = np.concatenate([e["dtScores"][:max_det] for _, e in rows])
    image = np.concatenate([np.full(len(e["dtScores"][:max_det]), i) for i, e in rows])
    matched = np.concatenate([e["dtMatches"][:, :max_det] for _, e in rows], axis=1) != 0
    ignored = np.concatenate([e["dtIgnore"][:, :max_det] for _, e in rows], axis=1).astype(bool)
    return _Flat(scores, matched & ~ignored, ~matched & ~ignored, image, n_gt)


def _precision(flat: _Flat, counts: np.ndarray) -> np.ndarray | None:
    """pycocotools' ``accumulate()`` for one class and area: ``(T, R)`` interpolated precision, with
    image ``i`` counted ``counts[i]`` times."""
    n_gt = int(np.dot(flat.n_gt, counts))
    if n_gt == 0:
        return None
    repeat = counts[flat.image]
    scores = np.repeat(flat.scores, repeat)
    order = np.argsort(-scores, kind="mergesort")  # pycocotools' sort
    tp = np.cumsum(np.repeat(flat.hit, repeat, axis=1)[:, order], axis=1, dtype=np.float64)
    fp = np.cumsum(np.repeat(flat.miss, repeat, axis=1)[:, order], axis=1, dtype=np.float64)
    out = np.zeros((len(IOU_THRESHOLDS), len(RECALL_POINTS)))
    if tp.shape[1] == 0:
        return out
    recall = tp / n_gt
    precision = tp / (fp + tp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # the rightward maximum
    for t in range(len(IOU_THRESHOLDS)):
        index = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        valid = index < envelope.shape[1]
        out[t, valid] = envelope[t, index[valid]]
    return out


def ap_from_matches(matches: Matches, counts: np.ndarray | None = None) -> dict[str, float]:
    """AP, AP50, AP75 and AP per area range of a multiset of images (``counts[i]`` copies of image i)."""
    counts = np.ones(matches.images, int) if counts is None else np.asarray(counts, int)
    if matches.flat is None:
        matches.flat = [_flatten(area, matches.max_detections) for area in matches.per_image]
    stats = {}
    for name, flat in zip(matches.area_names, matches.flat, strict=True):
        p = _precision(flat, counts)
        if name == "all":
            nan = p is None
            stats["AP"] = np.nan if nan else float(p.mean())
            stats["AP50"] = np.nan if nan else float(p[0].mean())
            stats["AP75"] = np.nan if nan else float(p[5].mean())
        else:
            stats[f"AP_{name}"] = np.nan if p is None else float(p.mean())
    return stats


# --- intervals ------------------------------------------------------------------------------------

# The t-interval and the bootstrap's resampling live in experiments/common/stats.py (tested there).
t_interval = common_stats.t_interval
bootstrap_counts = common_stats.bootstrap_counts


def nanmean(values) -> float:
    """Mean of the defined values; NaN (without NumPy's warning) when there are none."""
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else np.nan


def reference_pairs(arms: Sequence[str], references: Sequence[str]) -> list[tuple[str, str]]:
    """``(arm, reference)`` pairs, each once: ``ciou_dist - ciou`` but not also ``ciou - ciou_dist``."""
    refs = [r for r in references if r in arms]
    return [
        (a, r) for r in refs for a in arms if a != r and not (a in refs and refs.index(a) < refs.index(r))
    ]


def bootstrap_intervals(
    matches: Mapping[str, Sequence[Matches]],
    strata: np.ndarray,
    *,
    references: Sequence[str],
    metrics: Sequence[str],
    replicates: int = 1000,
    seed: int = 0,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> dict:
    """95% percentile intervals of every arm's AP and of its paired differences against ``references``
    (or, when ``pairs`` is given, of exactly those ``(arm, reference)`` differences).

    ``matches[arm][s]`` is arm ``arm``'s test matching for seed ``s`` (the same seeds, in the same
    order, for every arm; the same test blocks). Each replicate draws seeds with replacement and,
    independently, blocks within each stratum (source image), then recomputes every arm's AP on
    the *same* resampled seeds and blocks: the differences are paired in both. The statistic is
    the mean over the resampled seeds. Returns ``{"AP": {arm: {metric: {mean, lo, hi}}},
    "diff": {"arm-ref": {metric: {mean, lo, hi}}}}``; ``mean`` is the full-sample value.
    """
    arms = list(matches)
    n_seeds = len(matches[arms[0]])
    if any(len(matches[a]) != n_seeds for a in arms):
        raise ValueError("every arm needs one Matches per seed, paired")
    pairs = reference_pairs(arms, references) if pairs is None else [tuple(p) for p in pairs]
    full = {a: [ap_from_matches(m) for m in matches[a]] for a in arms}

    def summary(per_seed_values, metric):
        return float(nanmean([v[metric] for v in per_seed_values]))

    rng = np.random.default_rng(seed)
    draws_ap = {a: {m: np.empty(replicates) for m in metrics} for a in arms}
    draws_diff = {p: {m: np.empty(replicates) for m in metrics} for p in pairs}
    for b in range(replicates):
        seeds = rng.integers(0, n_seeds, n_seeds)
        counts = bootstrap_counts(rng, strata)
        stats = {a: {s: ap_from_matches(matches[a][s], counts) for s in np.unique(seeds)} for a in arms}
        for m in metrics:
            for a in arms:
                draws_ap[a][m][b] = nanmean([stats[a][s][m] for s in seeds])
            for a, r in pairs:
                draws_diff[(a, r)][m][b] = nanmean([stats[a][s][m] - stats[r][s][m] for s in seeds])

    def interval(draws, mean):
        lo, hi = common_stats.percentile_interval(draws)
        return {"mean": mean, "lo": lo, "hi": hi}

    out = {"AP": {}, "diff": {}, "replicates": replicates, "seeds": n_seeds, "blocks": len(strata)}
    for a in arms:
        out["AP"][a] = {m: interval(draws_ap[a][m], summary(full[a], m)) for m in metrics}
    for a, r in pairs:
        diffs = [{m: x[m] - y[m] for m in metrics} for x, y in zip(full[a], full[r], strict=True)]
        out["diff"][f"{a}-{r}"] = {m: interval(draws_diff[(a, r)][m], summary(diffs, m)) for m in metrics}
    return out


# --- GFLv2's premise: does the distribution's spread predict the box's error? ---------------------


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN with fewer than 3 pairs."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return np.nan

    def ranks(v):
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=r)
        return (sums / counts)[inverse]

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return np.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=-1)
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def localisation_records(
    pred_boxes, scores, spread, sharpness, gt_boxes, *, min_iou: float = 0.5
) -> np.ndarray:
    """Rows ``(iou_error, gt sqrt-area, spread, sharpness, score)`` of the detections that hit a gt.

    A detection "hits" its highest-IoU gt when that IoU is at least ``min_iou``; its
    error is ``1 - IoU``. Boxes in the same pixels as the size thresholds.
    """
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return np.zeros((0, 5))
    iou = iou_matrix(np.asarray(pred_boxes, np.float64), np.asarray(gt_boxes, np.float64))
    best = iou.argmax(1)
    best_iou = iou[np.arange(len(best)), best]
    hit = best_iou >= min_iou
    g = np.asarray(gt_boxes, np.float64)[best[hit]]
    side = np.sqrt((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]))
    return np.stack([1 - best_iou[hit], side, spread[hit], sharpness[hit], scores[hit]], axis=-1)


def premise_check(records: np.ndarray, tercile_edges: Sequence[float]) -> dict[str, dict[str, float]]:
    """Spearman of the IoU error with spread, with sharpness and with the class score, per size tercile."""
    out = {}
    sizes = np.digitize(records[:, 1], tercile_edges)
    for index, name in enumerate(("T1", "T2", "T3", "all")):
        rows = records if name == "all" else records[sizes == index]
        out[name] = {
            "n": len(rows),
            "rho_spread": spearman(rows[:, 2], rows[:, 0]),
            "rho_sharpness": spearman(rows[:, 3], rows[:, 0]),
            "rho_score": spearman(rows[:, 4], rows[:, 0]),
        }
    return out
