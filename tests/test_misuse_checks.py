"""``validate_assignment_inputs``: the opt-in ``checkify`` check of the assigner's two silent
misuses (raw class logits as scores; boxes and scores swapped), jitted, one image and a batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jax_dfl

A, C = 84, 4  # 4 classes: boxes and scores have the same shape, only their values tell them apart


def valid_inputs(seed, batch=()):
    """Decoded boxes (non-negative side distances around points) and sigmoid scores."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 640, size=(*batch, A, 2))
    distances = rng.uniform(0, 120, size=(*batch, A, 4))
    boxes = np.concatenate([points - distances[..., :2], points + distances[..., 2:]], -1)
    logits = rng.normal(scale=3.0, size=(*batch, A, C))
    return boxes.astype(np.float32), np.array(jax.nn.sigmoid(logits), np.float32), logits.astype(np.float32)


def checked(pred_boxes, pred_scores):
    """The check inside a jitted step, wrapped with checkify: the error, or None."""

    def step(boxes, scores):
        jax_dfl.validate_assignment_inputs(boxes, scores)
        return jnp.sum(scores)

    err, _ = checkify.checkify(jax.jit(step))(pred_boxes, pred_scores)
    return err


@pytest.mark.parametrize("batch", [(), (3,)], ids=["image", "batch"])
def test_valid_inputs_pass(batch):
    for seed in range(5):
        boxes, scores, _ = valid_inputs(seed, batch)
        err = checked(boxes, scores)
        assert err.get() is None
        err.throw()  # does not raise
        # Edge values are valid: probabilities 0 and 1, zero-width boxes, NaN (the assigner's rule).
        scores[..., 0, :2] = [0.0, 1.0]
        scores[..., 1, 0] = np.nan
        boxes[..., 2, 2] = boxes[..., 2, 0]
        boxes[..., 3, :] = np.nan
        assert checked(boxes, scores).get() is None


@pytest.mark.parametrize("batch", [(), (3,)], ids=["image", "batch"])
def test_raw_logits_as_scores_raise(batch):
    boxes, _, logits = valid_inputs(0, batch)
    err = checked(boxes, logits)
    with pytest.raises(
        checkify.JaxRuntimeError, match=r"pred_scores must be class probabilities in \[0, 1\]"
    ):
        err.throw()
    # The message names the offending range.
    assert f"min={float(logits.min())}" in err.get() and f"max={float(logits.max())}" in err.get()
    # One logit out of range is enough.
    _, scores, _ = valid_inputs(1, batch)
    scores[..., 5, 2] = 1.5
    with pytest.raises(checkify.JaxRuntimeError, match="raw class logits"):
        checked(boxes, scores).throw()


@pytest.mark.parametrize("batch", [(), (3,)], ids=["image", "batch"])
def test_swapped_boxes_and_scores_raise(batch):
    boxes, scores, _ = valid_inputs(2, batch)
    # Pixel boxes given as scores: values above 1.
    with pytest.raises(checkify.JaxRuntimeError, match="pred_boxes passed as pred_scores"):
        checked(scores, boxes).throw()
    # Boxes in normalised coordinates given as scores pass the range check; the scores given as
    # boxes are not ordered like xyxy boxes.
    normalised = (boxes - boxes.min()) / (boxes.max() - boxes.min())
    err = checked(scores, normalised)
    with pytest.raises(checkify.JaxRuntimeError, match="pred_scores passed as pred_boxes"):
        err.throw()
    inverted = (scores[..., 2] < scores[..., 0]) | (scores[..., 3] < scores[..., 1])
    assert f"{int(inverted.sum())} of {inverted.size} are not" in err.get()
    first = int(np.argmax(inverted.reshape(-1)))
    assert f"pred_boxes.reshape(-1, 4)[{first}]" in err.get()


def test_boxes_in_another_format_raise():
    boxes, scores, _ = valid_inputs(3)
    centre, size = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
    cxcywh = np.concatenate([centre, size], -1)  # w < cx wherever the box is left of its centre's x
    with pytest.raises(checkify.JaxRuntimeError, match=r"another format \(cx, cy, w, h\)"):
        checked(cxcywh, scores).throw()


def test_a_no_op_outside_checkify():
    boxes, _, logits = valid_inputs(4)
    assert jax_dfl.validate_assignment_inputs(boxes, logits) is None
    jitted = jax.jit(lambda b, s: (jax_dfl.validate_assignment_inputs(b, s), jnp.sum(s))[1])
    np.testing.assert_allclose(jitted(boxes, logits), logits.sum(), rtol=1e-5)


def test_shape_and_dtype_rules_name_the_argument():
    boxes, scores, _ = valid_inputs(5)
    with pytest.raises(ValueError, match=r"pred_scores.shape=\(83, 4\) does not match \(\.\.\., A, C\)"):
        jax_dfl.validate_assignment_inputs(boxes, scores[:-1])
    with pytest.raises(ValueError, match=r"pred_boxes.shape=\(84, 5\)"):
        jax_dfl.validate_assignment_inputs(np.zeros((A, 5), np.float32), scores)
    with pytest.raises(TypeError, match="pred_scores must be floating point"):
        jax_dfl.validate_assignment_inputs(boxes, scores > 0.5)
