"""coco_evaluate: hand-made cases with known COCO answers, and agreement with pycocotools' summarize()."""

from __future__ import annotations

import contextlib
import io
import math
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jax_dfl.evaluation import coco_evaluate


@pytest.fixture
def coco():
    return pytest.importorskip("pycocotools")


def _evaluate(pred_boxes, pred_scores, pred_labels, pred_mask, gt_boxes, gt_labels, gt_mask, **kw):
    """coco_evaluate with both masks given, in the order these tests write them."""
    return coco_evaluate(
        pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels, pred_mask=pred_mask, gt_mask=gt_mask, **kw
    )


def one_image(gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores=None, **kwargs):
    """Evaluate a single image given as lists (everything valid)."""
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(1, -1, 4)
    pred_boxes = np.asarray(pred_boxes, np.float64).reshape(1, -1, 4)
    n = pred_boxes.shape[1]
    scores = np.linspace(0.9, 0.1, n) if pred_scores is None else np.asarray(pred_scores, np.float64)
    return _evaluate(
        pred_boxes,
        scores.reshape(1, n),
        np.asarray(pred_labels, np.int64).reshape(1, n),
        None,
        gt_boxes,
        np.asarray(gt_labels, np.int64).reshape(1, -1),
        None,
        **kwargs,
    )


def grid_boxes(count: int, size: float = 20.0, step: float = 25.0) -> np.ndarray:
    """``count`` disjoint square boxes on a grid."""
    side = math.ceil(math.sqrt(count))
    ij = np.array([(i, j) for i in range(side) for j in range(side)][:count], dtype=np.float64)
    return np.concatenate([ij * step, ij * step + size], axis=1)


PERFECT = pytest.approx(1.0, abs=1e-12)  # COCO's precision is tp / (tp + fp + eps): 1 - 2e-16


def test_perfect_predictions_give_one(coco):
    rng = np.random.default_rng(0)
    batch, objects = 4, 6
    xy = rng.uniform(0, 400, size=(batch, objects, 2))
    wh = rng.uniform(8, 200, size=(batch, objects, 2))
    boxes = np.concatenate([xy, xy + wh], axis=-1)
    labels = rng.integers(0, 3, size=(batch, objects))
    mask = rng.random((batch, objects)) < 0.8
    scores = rng.random((batch, objects))
    stats = _evaluate(boxes, scores, labels, mask, boxes, labels, mask)
    for name in ["AP", "AP50", "AP75", "AR@100", "AP_S", "AP_M", "AP_L", "AR_S", "AR_M", "AR_L"]:
        assert stats[name] == PERFECT, name


def test_iou_of_0_6_passes_at_50_and_fails_at_75(coco):
    gt = [[0.0, 0, 100, 100]]
    stats = one_image(gt, [0], [[0.0, 0, 100, 60]], [0])  # IoU 0.6
    assert stats["AP50"] == PERFECT
    assert stats["AP75"] == 0.0
    # IoU 0.625 matches at the thresholds 0.50, 0.55 and 0.60 of ten: AP = 0.3.
    stats = one_image(gt, [0], [[0.0, 0, 100, 62.5]], [0])
    assert stats["AP"] == pytest.approx(0.3, abs=1e-12)
    assert stats["AR@100"] == pytest.approx(0.3, abs=1e-12)


def test_no_predictions_give_zero(coco):
    gt = np.array([[[0.0, 0, 50, 50], [60, 60, 120, 120]]])
    labels = np.array([[0, 1]])
    empty = _evaluate(np.zeros((1, 0, 4)), np.zeros((1, 0)), np.zeros((1, 0), int), None, gt, labels, None)
    masked = _evaluate(
        np.full((1, 3, 4), np.nan),
        np.full((1, 3), np.nan),
        np.zeros((1, 3), int),
        np.zeros((1, 3), bool),
        gt,
        labels,
        None,
    )
    for stats in (empty, masked):
        assert stats["AP"] == stats["AP50"] == stats["AR@100"] == 0.0


def test_no_ground_truth_gives_nan(coco):
    stats = _evaluate(
        np.array([[[0.0, 0, 5, 5]]]), [[0.5]], [[0]], None, np.zeros((1, 0, 4)), np.zeros((1, 0), int), None
    )
    assert all(math.isnan(v) for v in stats.values())
    stats = _evaluate(
        np.zeros((2, 0, 4)),
        np.zeros((2, 0)),
        np.zeros((2, 0), int),
        None,
        np.zeros((2, 0, 4)),
        np.zeros((2, 0), int),
        None,
    )
    assert all(math.isnan(v) for v in stats.values())


def test_size_classes_follow_coco_area_thresholds(coco):
    small, large = [10.0, 10, 26, 26], [100.0, 100, 300, 300]  # 16^2 and 200^2
    stats = one_image([small, large], [0, 0], [small], [0])
    assert stats["AP_S"] == PERFECT and stats["AR_S"] == PERFECT
    assert stats["AP_L"] == 0.0 and stats["AR_L"] == 0.0
    assert math.isnan(stats["AP_M"]) and math.isnan(stats["AR_M"])
    # COCO's ranges include both ends: an object of exactly 32^2 is small and medium.
    edge = [0.0, 0, 32, 32]
    stats = one_image([edge], [0], [edge], [0])
    assert stats["AP_S"] == PERFECT and stats["AP_M"] == PERFECT and math.isnan(stats["AP_L"])


def test_custom_area_ranges(coco):
    boxes = [[0.0, 0, 10, 10], [20, 0, 40, 20], [50, 0, 80, 30]]  # areas 100, 400, 900
    ranges = {"lo": (0, 200), "mid": (200, 600), "hi": (600, 1e10)}
    stats = one_image(boxes, [0, 0, 0], [boxes[1]], [0], area_ranges=ranges)
    assert [k for k in stats if "_" in k] == ["AP_lo", "AP_mid", "AP_hi", "AR_lo", "AR_mid", "AR_hi"]
    assert stats["AP_mid"] == PERFECT
    assert stats["AP_lo"] == 0.0 and stats["AP_hi"] == 0.0


def test_more_than_100_objects_need_max_detections_above_100(coco):
    boxes = grid_boxes(150)
    labels = np.zeros(150, int)
    scores = np.linspace(1.0, 0.5, 150)
    stats = one_image(boxes, labels, boxes, labels, scores, max_detections=300)
    assert list(stats)[6:9] == ["AR@1", "AR@10", "AR@300"]
    assert stats["AP"] == PERFECT and stats["AR@300"] == PERFECT
    # COCO's default cap of 100 detections per image: recall stops at 100 / 150.
    stats = one_image(boxes, labels, boxes, labels, scores)
    assert stats["AR@100"] == pytest.approx(100 / 150)
    assert stats["AP"] < 0.7


def test_max_detections_below_10(coco):
    boxes = grid_boxes(8)
    stats = one_image(boxes, np.zeros(8, int), boxes, np.zeros(8, int), max_detections=4)
    assert list(stats)[6:8] == ["AR@1", "AR@4"]
    assert stats["AR@4"] == pytest.approx(0.5) and stats["AR@1"] == pytest.approx(1 / 8)


def test_a_right_box_with_the_wrong_label_is_a_false_positive(coco):
    a, b = [0.0, 0, 50, 50], [100.0, 100, 150, 150]
    gt = np.array([[a], [b]])
    gt_labels = np.array([[0], [1]])
    right = _evaluate(gt, [[0.9], [0.8]], gt_labels, None, gt, gt_labels, None)
    assert right["AP"] == PERFECT
    # Image 0's box labelled 1: class 0 gets no detection (AP 0); class 1 gets a false positive
    # scored below its true positive (AP still 1). Mean over classes: 0.5.
    wrong = _evaluate(gt, [[0.7], [0.8]], np.array([[1], [1]]), None, gt, gt_labels, None)
    assert wrong["AP"] == pytest.approx(0.5)
    # Scored above the true positive, it costs class 1 precision too.
    worse = _evaluate(gt, [[0.9], [0.8]], np.array([[1], [1]]), None, gt, gt_labels, None)
    assert worse["AP"] < wrong["AP"]


def test_matches_pycocotools_summarize_with_its_own_result_loader(coco):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(1)
    batch, objects, dets = 6, 12, 20
    xy = rng.uniform(0, 500, size=(batch, objects, 2))
    wh = np.exp(rng.uniform(np.log(6), np.log(250), size=(batch, objects, 2)))
    gt = np.concatenate([xy, xy + wh], axis=-1)
    gt_labels = rng.integers(0, 4, size=(batch, objects))
    gt_labels[gt_labels == 3] = 2  # class 3 never in the ground truth, but predicted below
    gt_mask = rng.random((batch, objects)) < 0.85
    src = rng.integers(0, objects, size=(batch, dets))
    # Jittered copies of the ground truth, corners re-sorted: no inverted boxes, which we clamp to
    # zero size and loadRes would give a negative area.
    pred = np.take_along_axis(gt, src[..., None], axis=1)
    pred = pred + rng.normal(scale=0.1, size=pred.shape) * np.tile(pred[..., 2:] - pred[..., :2], 2)
    pred = np.concatenate(
        [np.minimum(pred[..., :2], pred[..., 2:]), np.maximum(pred[..., :2], pred[..., 2:])], -1
    )
    pred_labels = np.where(rng.random((batch, dets)) < 0.8, np.take_along_axis(gt_labels, src, 1), 3)
    pred_scores = rng.random((batch, dets))
    pred_valid = rng.random((batch, dets)) < 0.9
    ours = _evaluate(pred, pred_scores, pred_labels, pred_valid, gt, gt_labels, gt_mask)

    # The documented pycocotools route: a ground-truth COCO object and loadRes for the results.
    images = [{"id": i + 1} for i in range(batch)]
    anns = []
    for i, g in zip(*np.nonzero(gt_mask), strict=True):
        x1, y1, x2, y2 = gt[i, g]
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": int(i) + 1,
                "category_id": int(gt_labels[i, g]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
        )
    results = [
        {
            "image_id": int(i) + 1,
            "category_id": int(pred_labels[i, d]),
            "bbox": [
                pred[i, d, 0],
                pred[i, d, 1],
                pred[i, d, 2] - pred[i, d, 0],
                pred[i, d, 3] - pred[i, d, 1],
            ],
            "score": float(pred_scores[i, d]),
        }
        for i, d in zip(*np.nonzero(pred_valid), strict=True)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = COCO()
        gt_api.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(4)]}
        gt_api.createIndex()
        evaluator = COCOeval(gt_api, gt_api.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    names = ["AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR@1", "AR@10", "AR@100", "AR_S", "AR_M", "AR_L"]
    assert list(ours) == names
    expected = [math.nan if s == -1 else s for s in evaluator.stats]
    np.testing.assert_allclose([ours[n] for n in names], expected, rtol=1e-12)
    assert 0.2 < ours["AP"] < 0.95  # a non-trivial case

    # maxDets [1, 10, 300]: summarize() reads its stats[1:] at maxDets[2] but stats[0] (AP) at a
    # hard-coded 100, which is then absent: -1. We read AP at 300.
    ours = _evaluate(pred, pred_scores, pred_labels, pred_valid, gt, gt_labels, gt_mask, max_detections=300)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt_api, gt_api.loadRes(results), "bbox")
        evaluator.params.maxDets = [1, 10, 300]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == -1
    names[8] = "AR@300"
    np.testing.assert_allclose([ours[n] for n in names[1:]], evaluator.stats[1:], rtol=1e-12)
    assert ours["AP"] == pytest.approx(expected[0], rel=1e-12)  # at most 20 detections per image


def test_accepts_jax_arrays_and_half_precision(coco):
    boxes = jnp.array([[[0.0, 0, 64, 64], [100, 100, 120, 130]]], jnp.bfloat16)
    labels = jnp.array([[1, 2]], jnp.int32)
    stats = _evaluate(
        boxes, jnp.array([[0.5, 0.25]], jnp.float16), labels, jnp.ones((1, 2), bool), boxes, labels, None
    )
    assert stats["AP"] == PERFECT


def test_inverted_predicted_boxes_count_as_empty(coco):
    # The inverted box (scored higher) is a zero-area false positive; precision at recall 1 is 1/2.
    stats = one_image([[0.0, 0, 50, 50]], [0], [[50.0, 50, 0, 0], [0.0, 0, 50, 50]], [0, 0], [0.9, 0.8])
    assert stats["AP50"] == pytest.approx(0.5, abs=1e-12)
    assert stats["AR@100"] == PERFECT


# --- input rules (no pycocotools needed: checked before it is imported) --------------------

P_BOXES = np.zeros((2, 3, 4))
P_SCORES = np.zeros((2, 3))
P_LABELS = np.zeros((2, 3), np.int32)
P_VALID = np.ones((2, 3), bool)
G_BOXES = np.zeros((2, 5, 4))
G_LABELS = np.zeros((2, 5), np.int64)
G_MASK = np.ones((2, 5), bool)


def call(**kwargs):
    args = {
        "pred_boxes": P_BOXES,
        "pred_scores": P_SCORES,
        "pred_labels": P_LABELS,
        "gt_boxes": G_BOXES,
        "gt_labels": G_LABELS,
    }
    options = {"pred_mask": P_VALID, "gt_mask": G_MASK}
    options |= {
        k: kwargs.pop(k) for k in ["max_detections", "area_ranges", "pred_mask", "gt_mask"] if k in kwargs
    }
    args |= kwargs
    return coco_evaluate(*args.values(), **options)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"pred_boxes": P_BOXES.astype(np.complex64)}, TypeError, "pred_boxes must be real"),
        ({"gt_boxes": G_BOXES.astype(bool)}, TypeError, "gt_boxes must be real"),
        ({"pred_scores": P_SCORES.astype(np.complex64)}, TypeError, "pred_scores must be floating"),
        ({"pred_labels": P_LABELS.astype(float)}, TypeError, "pred_labels must be integer"),
        ({"gt_labels": G_LABELS.astype(bool)}, TypeError, "gt_labels must be integer"),
        ({"pred_mask": P_VALID.astype(int)}, TypeError, "pred_mask must be a boolean mask"),
        ({"gt_mask": G_MASK.astype(float)}, TypeError, "gt_mask must be a boolean mask"),
        (
            {"pred_boxes": P_BOXES[0]},
            ValueError,
            r"pred_boxes.shape=\(3, 4\) does not match \(images, detections, 4\)",
        ),
        ({"gt_boxes": G_BOXES[..., :2]}, ValueError, r"gt_boxes.shape=\(2, 5, 2\)"),
        (
            {"pred_scores": P_SCORES[:, :2]},
            ValueError,
            r"pred_scores.shape=\(2, 2\).*pred_boxes.shape=\(2, 3, 4\)",
        ),
        ({"pred_labels": P_LABELS[..., None]}, ValueError, r"pred_labels.shape=\(2, 3, 1\)"),
        ({"pred_mask": P_VALID[:1]}, ValueError, r"pred_mask.shape=\(1, 3\)"),
        ({"gt_labels": G_LABELS[:, :4]}, ValueError, r"gt_labels.shape=\(2, 4\).*gt_boxes.shape=\(2, 5, 4\)"),
        ({"gt_mask": G_MASK.T}, ValueError, r"gt_mask.shape=\(5, 2\)"),
        (
            {"gt_boxes": G_BOXES[:1], "gt_labels": G_LABELS[:1], "gt_mask": G_MASK[:1]},
            ValueError,
            r"gt_boxes.shape=\(1, 5, 4\).*images is 2 from pred_boxes.shape\[0\], pred_boxes.shape=\(2, 3",
        ),
        ({"max_detections": 0}, ValueError, "max_detections must be a positive Python int"),
        ({"max_detections": 100.0}, ValueError, "max_detections"),
        ({"max_detections": True}, ValueError, "max_detections"),
        ({"area_ranges": {"all": (0, 1)}}, ValueError, "other than 'all'"),
        ({"area_ranges": {"x": (5, 1)}}, ValueError, r"area_ranges\['x'\]"),
        ({"pred_scores": np.full((2, 3), np.nan)}, ValueError, "finite where pred_mask"),
        ({"gt_boxes": np.full((2, 5, 4), np.inf)}, ValueError, "gt_boxes must be finite"),
        ({"gt_boxes": np.tile([5.0, 0, 0, 5], (2, 5, 1))}, ValueError, "x2 >= x1"),
    ],
)
def test_invalid_inputs_are_rejected_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        call(**kwargs)


def test_missing_pycocotools_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    monkeypatch.setitem(sys.modules, "pycocotools.cocoeval", None)
    with pytest.raises(ImportError, match=r"jax_dfl\[eval\]"):
        call()


def test_module_imports_without_pycocotools():
    code = (
        "import sys; sys.modules['pycocotools'] = None; import jax_dfl.evaluation; "
        "assert 'pycocotools.coco' not in sys.modules or sys.modules['pycocotools.coco'] is None"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_old_positional_masks_and_pred_valid_still_work_with_a_warning(coco):
    new = coco_evaluate(P_BOXES, P_SCORES, P_LABELS, G_BOXES, G_LABELS, pred_mask=P_VALID, gt_mask=G_MASK)
    with pytest.warns(DeprecationWarning, match="pred_mask=..., gt_mask=..."):
        old = coco_evaluate(P_BOXES, P_SCORES, P_LABELS, P_VALID, G_BOXES, G_LABELS, G_MASK)
    with pytest.warns(DeprecationWarning, match="write `pred_mask=`"):
        renamed = coco_evaluate(
            P_BOXES, P_SCORES, P_LABELS, G_BOXES, G_LABELS, pred_valid=P_VALID, gt_mask=G_MASK
        )
    np.testing.assert_equal(old, new)
    np.testing.assert_equal(renamed, new)
    with pytest.raises(TypeError, match="pred_valid"):
        coco_evaluate(P_BOXES, P_SCORES, P_LABELS, G_BOXES, G_LABELS, pred_valid=P_VALID, pred_mask=P_VALID)
