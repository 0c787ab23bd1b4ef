"""Arguments that must agree and do not: the error names both, eagerly and under ``jax.jit``.

Every public function that takes logits together with a number of bins, bin values or strides
(and the other pairs that share a size: boxes and scores, points and strides, feature shapes
and strides) is called here with the two disagreeing. The error is the input rules' (a
``ValueError`` raised while JAX traces, so ``jit`` reports it too) and its message names both
arguments, the function first where the message is a shape error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_dfl
import jax_dfl.inspection
import jax_dfl.nn

K = 9  # bins of the logits
LOGITS = np.zeros((5, 4, K), np.float32)
TARGETS = np.ones((5, 4), np.float32)
SHORT_BINS = np.arange(7.0)  # 7 bin values for 9 bins
POINTS = np.full((5, 2), 16.0, np.float32)
STRIDES = np.full(5, 8.0, np.float32)
BOXES = np.tile(np.array([[0.0, 0.0, 8.0, 8.0]], np.float32), (5, 1))


@dataclasses.dataclass(frozen=True)
class Case:
    fn: Callable
    arrays: tuple  # passed positionally, traced under jit
    names: tuple[str, ...]  # what the message must name
    prefix: str | None = None  # the function's name, first in a shape error
    keywords: dict = dataclasses.field(default_factory=dict)  # static, never traced


def _head(features):
    head = jax_dfl.nn.DistributionHead(6, num_outputs=4, num_bins=K, rngs=jax_dfl.nn.nnx.Rngs(0))
    return head(features)


def _family_of_7_bins(mu):
    return -jnp.square(jnp.arange(7.0) - mu)


def _assign(pred_boxes, pred_scores):
    return jax_dfl.task_aligned_assign(
        pred_boxes=pred_boxes, pred_scores=pred_scores, points=POINTS, gt_boxes=BOXES[:2],
        gt_labels=np.zeros(2, np.int32), gt_mask=np.ones(2, bool), top_k=2,
    )  # fmt: skip


CASES = {
    # logits' last axis against len(bin_values)
    **{
        name: Case(
            lambda logits, bins, fn=fn, kw=kw: fn(logits, TARGETS, bin_values=bins, **kw),
            (LOGITS, SHORT_BINS),
            ("bin_values", "logits"),
            prefix=name,
        )
        for name, fn, kw in [
            ("distribution_focal_loss", jax_dfl.distribution_focal_loss, {}),
            ("distribution_focal_kl", jax_dfl.distribution_focal_kl, {}),
            ("hl_gauss_loss", jax_dfl.hl_gauss_loss, {"sigma": 0.75}),
        ]
    },
    "decode": Case(
        lambda logits, bins: jax_dfl.decode(logits, bin_values=bins),
        (LOGITS, SHORT_BINS),
        ("bin_values", "logits"),
        prefix="decode",
    ),
    "distribution_stats": Case(
        lambda logits, bins: jax_dfl.distribution_stats(logits, bin_values=bins),
        (LOGITS, SHORT_BINS),
        ("bin_values", "logits"),
        prefix="distribution_stats",
    ),
    "decode_boxes-bin_values": Case(
        lambda logits, bins: jax_dfl.decode_boxes(logits, POINTS, STRIDES, bin_values=bins),
        (LOGITS, SHORT_BINS),
        ("bin_values", "logits"),
        prefix="decode_boxes",  # not the decode it calls
    ),
    "nn.Integral-too-few-bins": Case(
        lambda logits: jax_dfl.nn.Integral()(logits),
        (LOGITS[..., :1],),
        ("logits", "num_bins"),
        prefix="Integral",
    ),
    # the num_bins argument against len(bin_values)
    **{
        name: Case(
            lambda targets, bins, fn=fn, kw=kw: fn(targets, K, bin_values=bins, **kw),
            (TARGETS, SHORT_BINS),
            ("bin_values", "num_bins argument"),
            prefix=name,
        )
        for name, fn, kw in [
            ("two_hot", jax_dfl.two_hot, {}),
            ("two_hot_entropy", jax_dfl.two_hot_entropy, {}),
            ("hl_gauss", jax_dfl.hl_gauss, {"sigma": 0.75}),
            ("validate_targets", jax_dfl.validate_targets, {}),
        ]
    },
    # a hyper-parameter bounded by the logits' bins
    "distribution_stats-k": Case(
        lambda logits: jax_dfl.distribution_stats(logits, k=K + 1), (LOGITS,), ("k", "num_bins", "logits")
    ),
    # logits against logits
    "distribution_distillation_loss": Case(
        jax_dfl.distribution_distillation_loss,
        (LOGITS, LOGITS[..., :7]),
        ("teacher_logits", "student_logits"),
        prefix="distribution_distillation_loss",
    ),
    # a custom family's logits against num_bins
    "inspection.distribution_gradient_profile": Case(
        lambda errors: jax_dfl.inspection.distribution_gradient_profile(
            jax_dfl.distribution_focal_loss, errors, target=3.0, num_bins=K, family=_family_of_7_bins
        ),
        (np.array([0.5, 1.0], np.float32),),
        ("family", "num_bins"),
        prefix="distribution_gradient_profile",
    ),
    # strides against points and logits
    "decode_boxes-point_strides": Case(
        jax_dfl.decode_boxes,
        (LOGITS, POINTS, STRIDES[:4]),
        ("point_strides", "points"),
        prefix="decode_boxes",
    ),
    "decode_boxes-points": Case(
        jax_dfl.decode_boxes, (LOGITS, POINTS[:4], STRIDES[:4]), ("logits", "points"), prefix="decode_boxes"
    ),
    "yolo_box_loss-point_strides": Case(
        lambda logits, strides: jax_dfl.yolo_box_loss(
            logits,
            BOXES,
            POINTS,
            BOXES,
            np.zeros((5, 3), np.float32),
            np.ones(5, bool),
            point_strides=strides,
            normalizer=1.0,
        ),
        (LOGITS, STRIDES[:4]),
        ("point_strides", "pred_logits"),
        prefix="yolo_box_loss",
    ),
    "yolo_box_loss-pred_boxes": Case(
        lambda logits, boxes: jax_dfl.yolo_box_loss(
            logits,
            boxes,
            POINTS,
            BOXES,
            np.zeros((5, 3), np.float32),
            np.ones(5, bool),
            point_strides=STRIDES,
            normalizer=1.0,
        ),
        (LOGITS, BOXES[:4]),
        ("pred_boxes", "pred_logits"),
        prefix="yolo_box_loss",
    ),
    # boxes against scores
    "task_aligned_assign": Case(
        _assign,
        (BOXES, np.zeros((4, 3), np.float32)),
        ("pred_boxes", "pred_scores"),
        prefix="task_aligned_assign",
    ),
    "validate_assignment_inputs": Case(
        jax_dfl.validate_assignment_inputs,
        (BOXES, np.zeros((4, 4), np.float32)),
        ("pred_scores", "pred_boxes"),
        prefix="validate_assignment_inputs",
    ),
    # features against the layer's size
    "nn.DistributionHead": Case(
        _head, (np.zeros((5, 5), np.float32),), ("features", "in_features"), prefix="DistributionHead"
    ),
    # feature shapes against strides (static Python arguments: jit traces nothing, still raises)
    "anchor_points": Case(
        lambda: jax_dfl.anchor_points([(2, 2), (1, 1)], [8]), (), ("strides", "feature_shapes")
    ),
}


def _check(error: pytest.ExceptionInfo, case: Case):
    message = str(error.value)
    for name in case.names:
        assert name in message, f"{name!r} not named in: {message}"
    if case.prefix is not None:
        assert message.startswith(f"{case.prefix}: "), message


@pytest.mark.parametrize("name", list(CASES))
def test_mismatch_is_a_value_error_naming_both_arguments(name):
    case = CASES[name]
    with pytest.raises(ValueError) as error:
        case.fn(*case.arrays, **case.keywords)
    _check(error, case)


@pytest.mark.parametrize("name", list(CASES))
def test_mismatch_is_reported_while_jit_traces(name):
    case = CASES[name]
    jitted = jax.jit(lambda *arrays: case.fn(*arrays, **case.keywords))
    with pytest.raises(ValueError) as error:
        jitted.lower(*(jnp.asarray(x) for x in case.arrays))  # tracing alone raises: nothing runs
    _check(error, case)
    with pytest.raises(ValueError) as error:
        jitted(*case.arrays)
    _check(error, case)


def test_the_messages_say_where_each_size_came_from():
    """Both sizes are given with their origin, in the input rules' wording."""
    with pytest.raises(ValueError) as error:
        jax_dfl.distribution_focal_loss(LOGITS, TARGETS, bin_values=SHORT_BINS)
    assert str(error.value) == (
        "distribution_focal_loss: bin_values.shape=(7,) does not match (num_bins,): bin_values.shape[0] "
        "is 7, but num_bins is 9 from logits.shape[2], logits.shape=(5, 4, 9)"
    )
    with pytest.raises(ValueError) as error:
        jax_dfl.two_hot(TARGETS, K, bin_values=SHORT_BINS)
    assert str(error.value).endswith("bin_values.shape[0] is 7, but num_bins is 9 from the num_bins argument")
    with pytest.raises(ValueError) as error:
        jax_dfl.distribution_stats(LOGITS, k=K + 1)
    assert (
        str(error.value) == "k must be in [1, num_bins]; got 10, but num_bins is 9 (the last axis of logits)"
    )
    with pytest.raises(ValueError) as error:
        jax_dfl.anchor_points([(2, 2), (1, 1)], [8])
    assert "got strides=[8] (shape (1,)), but feature_shapes has 2 levels" in str(error.value)
