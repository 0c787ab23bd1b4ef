"""The API convention (``docs/conventions.md``, "The API convention"), checked on every public function.

Each rule is a test over the signatures of every public callable (``tests/public_api.py``), so a
new function or a new argument that breaks it fails here. The renames of 0.3.0 are tested both
ways: the old spelling still works, with a ``DeprecationWarning`` naming what to write instead.
"""

from __future__ import annotations

import inspect
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import jax_dfl
from jax_dfl import evaluation
from tests.public_api import MODULES, public_names

KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _functions():
    seen = set()
    for module in MODULES:
        for name in public_names(module):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                if issubclass(obj, tuple):  # NamedTuples of outputs
                    continue
                targets = [(f"{name}.{m}", vars(obj)[m]) for m in ("__init__", "__call__") if m in vars(obj)]
            elif callable(obj):
                targets = [(name, obj)]
            else:
                continue
            for qualified, fn in targets:
                if fn not in seen:
                    seen.add(fn)
                    yield pytest.param(fn, id=f"{module.__name__}.{qualified}")


FUNCTIONS = list(_functions())

# Names a single concept may not go by (the concept's name on the right).
BANNED = {
    "classes": "labels",
    "pred_valid": "pred_mask",
    "valid": "<role>_mask or where",
    "mask": "<role>_mask or where",
    "iou": "iou_kind",
    "a": "boxes1",
    "b": "boxes2",
}
# Data masks: `where`, `<role>_mask`, or an assigner's output name.
MASK_WORDS = ("where", "foreground")
# Positional parameters with a default, kept for a documented reason.
POSITIONAL_DEFAULTS = {
    ("data_mesh", "devices"): "an optional sequence of devices, as jax.make_mesh takes it",
}


def _parameters(fn):
    return [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]


# 0.2 names kept in a signature, unused, until 0.4.0: jax.jit(static_argnames=...) reads the
# signature, so 0.2 code that marked them static keeps working (with a DeprecationWarning).
DEPRECATED_PARAMETERS = {("task_aligned_assign", "iou")}


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_no_banned_names(fn):
    for p in _parameters(fn):
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if (fn.__name__, p.name) in DEPRECATED_PARAMETERS:
            continue
        assert p.name not in BANNED, f"{fn.__name__}({p.name}=): write {BANNED[p.name]}"


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_options_are_keyword_only(fn):
    """Every argument with a default is keyword-only: hyper-parameters, variants, optional masks."""
    for p in _parameters(fn):
        if p.kind in POSITIONAL and p.default is not inspect.Parameter.empty:
            assert (fn.__name__, p.name) in POSITIONAL_DEFAULTS, f"{fn.__name__}: {p.name} has a default"


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_masks_are_named_and_placed_by_the_convention(fn):
    for p in _parameters(fn):
        is_mask = p.name in MASK_WORDS or p.name.endswith("_mask")
        if p.name == "where":
            assert p.kind == KEYWORD_ONLY and p.default is None, f"{fn.__name__}: where= is keyword, =None"
        if is_mask and p.default is None:
            assert p.kind == KEYWORD_ONLY, f"{fn.__name__}: an optional mask {p.name} is keyword-only"
        if p.kind in POSITIONAL and "valid" in p.name:
            raise AssertionError(f"{fn.__name__}: {p.name} is a mask; call it <role>_mask")


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_variants_are_kind_strings(fn):
    for p in _parameters(fn):
        if p.name == "kind" or p.name.endswith("_kind"):
            assert p.kind == KEYWORD_ONLY and isinstance(p.default, str), (fn.__name__, p.name)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_strides_per_level_and_per_point(fn):
    names = [p.name for p in _parameters(fn)]
    if "strides" in names:
        # Per-level strides: the function that builds the points from them, and the box-range
        # tools, which report per level.
        assert fn.__name__ in PER_LEVEL, f"{fn.__name__}: per-point strides are point_strides"


PER_LEVEL = {"anchor_points", "box_range_counts", "box_range_report", "representable_range"}


def _role(name: str) -> int:
    if name.endswith("_mask") or name in MASK_WORDS:
        return 3
    if name.startswith("pred_") or name in ("logits", "student_logits"):
        return 0
    if name == "points":
        return 1
    if name.startswith(("gt_", "target_", "teacher_")) or name in ("targets",):
        return 2
    return -1  # not a role: no order to keep


def _within(name: str) -> int:
    for rank, word in enumerate(("logits", "boxes", "scores", "labels")):
        if name.endswith(word):
            return rank
    return -1


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_array_order_predictions_geometry_truth_masks(fn):
    """Among the arguments that carry a role, predictions come before points, before ground truth
    or targets, before masks; within one role, (logits,) boxes before scores before labels."""
    params = [p for p in _parameters(fn) if p.kind in POSITIONAL or p.default is inspect.Parameter.empty]
    roles = [(p.name, _role(p.name), _within(p.name)) for p in params if _role(p.name) >= 0]
    keys = [(role, within) for _, role, within in roles]
    assert keys == sorted(keys), f"{fn.__name__}: {[n for n, _, _ in roles]}"


# --- the 0.3.0 renames: old spellings still work, with a warning that says what to write -------------

BOXES = np.array([[0.0, 0, 4, 4], [1, 1, 5, 6]], np.float32)
OTHER = np.array([[0.0, 0, 3, 4], [2, 1, 5, 5]], np.float32)
LOGITS = np.log(np.eye(6, dtype=np.float32)[[1, 2, 3, 4]] + 1e-3)
POINTS = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], np.float32)
GT = np.array([[0.0, 0.0, 4.0, 4.0]], np.float32)
SCORES = np.array([[0.9], [0.8], [0.7]], np.float32)
ASSIGN_OLD = (SCORES, np.tile(GT, (3, 1)), POINTS, np.array([0]), GT, np.array([True]))
ASSIGN_NEW = dict(
    pred_boxes=np.tile(GT, (3, 1)),
    pred_scores=SCORES,
    points=POINTS,
    gt_boxes=GT,
    gt_labels=np.array([0]),
    gt_mask=np.array([True]),
)
NMS = dict(iou_threshold=0.3, max_detections=2)
NMS_SCORES = np.array([0.9, 0.8], np.float32)

RENAMES = [
    ("box_iou pred/target", lambda: jax_dfl.box_iou(pred=BOXES, target=OTHER),
     lambda: jax_dfl.box_iou(boxes1=BOXES, boxes2=OTHER), "boxes1="),
    ("pairwise_iou a/b", lambda: jax_dfl.pairwise_iou(a=BOXES, b=OTHER),
     lambda: jax_dfl.pairwise_iou(boxes1=BOXES, boxes2=OTHER), "boxes1="),
    ("decode_boxes strides", lambda: jax_dfl.decode_boxes(LOGITS, np.array([8.0, 8.0]), strides=4.0),
     lambda: jax_dfl.decode_boxes(LOGITS, np.array([8.0, 8.0]), point_strides=4.0), "point_strides="),
    ("nms classes", lambda: jax_dfl.non_max_suppression(BOXES, NMS_SCORES, classes=np.array([0, 1]), **NMS),
     lambda: jax_dfl.non_max_suppression(BOXES, NMS_SCORES, labels=np.array([0, 1]), **NMS), "labels="),
    ("assigner positional", lambda: jax_dfl.task_aligned_assign(*ASSIGN_OLD, top_k=2),
     lambda: jax_dfl.task_aligned_assign(**ASSIGN_NEW, top_k=2), "pred_scores=..."),
    ("assigner scores", lambda: jax_dfl.task_aligned_assign(
        **{("scores" if k == "pred_scores" else k): v for k, v in ASSIGN_NEW.items()}, top_k=2),
     lambda: jax_dfl.task_aligned_assign(**ASSIGN_NEW, top_k=2), "pred_scores="),
    ("assigner iou", lambda: jax_dfl.task_aligned_assign(**ASSIGN_NEW, top_k=2, iou="iou"),
     lambda: jax_dfl.task_aligned_assign(**ASSIGN_NEW, top_k=2, iou_kind="iou"), "iou_kind="),
    ("assigner eps", lambda: jax_dfl.task_aligned_assign(**ASSIGN_NEW, top_k=2, eps=1e-3),
     lambda: jax_dfl.task_aligned_assign(
         **ASSIGN_NEW, top_k=2, candidate_eps=1e-3, metric_eps=1e-3, iou_eps=1e-3, norm_eps=1e-3),
     "candidate_eps="),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "hint"), [pytest.param(*r[1:], id=r[0]) for r in RENAMES])
def test_old_spellings_warn_and_agree(old, new, hint):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        expected = new()  # the new spelling does not warn
    with pytest.warns(DeprecationWarning, match=hint.replace(".", r"\.")) as record:
        got = old()
    assert record[0].filename == __file__  # the warning points at the caller
    for a, b in zip(np.atleast_1d(jnp.asarray(got[0] if isinstance(got, tuple) else got)),
                    np.atleast_1d(jnp.asarray(expected[0] if isinstance(expected, tuple) else expected)),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)


def test_old_and_new_names_together_are_a_type_error():
    with pytest.raises(TypeError, match="labels"):
        jax_dfl.non_max_suppression(BOXES, np.array([0.9, 0.8]), classes=[0, 1], labels=[0, 1], **NMS)
    with pytest.raises(TypeError, match="pred_scores"):
        jax_dfl.task_aligned_assign(SCORES, **ASSIGN_NEW)


def test_coco_evaluate_masks_are_keywords():
    params = inspect.signature(evaluation.coco_evaluate).parameters
    assert params["pred_mask"].kind == params["gt_mask"].kind == KEYWORD_ONLY


def test_the_old_eps_beside_a_new_eps_is_an_error_not_an_override():
    import jax.numpy as jnp

    import jax_dfl

    args = dict(
        pred_boxes=jnp.array([[0.0, 0.0, 4.0, 4.0]]),
        pred_scores=jnp.array([[0.9]]),
        points=jnp.array([[2.0, 2.0]]),
        gt_boxes=jnp.array([[0.0, 0.0, 4.0, 4.0]]),
        gt_labels=jnp.array([0]),
        gt_mask=jnp.array([True]),
        top_k=1,
    )
    with pytest.raises(TypeError, match=r"eps= \(deprecated\) and norm_eps="):
        jax_dfl.task_aligned_assign(**args, eps=1e-6, norm_eps=0.5)
    with pytest.warns(DeprecationWarning, match="candidate_eps"):
        old = jax_dfl.task_aligned_assign(**args, eps=0.5)
    new = jax_dfl.task_aligned_assign(**args, candidate_eps=0.5, metric_eps=0.5, iou_eps=0.5, norm_eps=0.5)
    assert jnp.array_equal(old.scores, new.scores)


def test_old_names_marked_static_under_jit_keep_working():
    # 0.2 code jitted the assigner with its string option static: jit reads the signature.
    import jax
    import jax.numpy as jnp

    import jax_dfl

    fn = jax.jit(jax_dfl.task_aligned_assign, static_argnames=("top_k", "iou"))
    with pytest.warns(DeprecationWarning, match="iou_kind"):
        a = fn(
            pred_boxes=jnp.array([[0.0, 0.0, 4.0, 4.0]]),
            pred_scores=jnp.array([[0.9]]),
            points=jnp.array([[2.0, 2.0]]),
            gt_boxes=jnp.array([[0.0, 0.0, 4.0, 4.0]]),
            gt_labels=jnp.array([0]),
            gt_mask=jnp.array([True]),
            top_k=1,
            iou="iou",
        )
    assert bool(a.foreground[0])
