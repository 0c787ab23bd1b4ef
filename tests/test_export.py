"""A detector's post-processing through ``jax.export``: exported, serialised, reloaded, called.

The post-processing of a YOLOv8-style head (``decode_boxes`` on the side logits, sigmoid class
scores, class-aware ``non_max_suppression``), batched with ``jax.vmap``, is exported at static
shapes (and with a symbolic batch size), serialised to bytes, deserialised and called. The
reloaded module must give what the jitted, un-exported function gives, bit for bit (the same
StableHLO compiled by the same XLA), and what a float64 NumPy decode plus a textbook greedy NMS
gives. (Eager, un-jitted execution is not compared: op by op, the vmapped NMS loop takes seconds.)

``jax.export`` is public from jax 0.4.30, below the oldest jax the library supports (0.4.35), and
these tests pass there unchanged. Serialisation needs the ``flatbuffers`` package, which jax does
not install; the test extra lists it, and the tests skip without it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import jax_dfl
from tests import reference
from tests.test_nms import reference_nms

pytest.importorskip("flatbuffers", reason="jax.export's serialisation needs the flatbuffers package")

# A small pyramid (8 x 8, 4 x 4 and 2 x 2 cells, a 64 x 64 px image): 84 points, YOLOv8's 16 bins.
STRIDES = (8, 16, 32)
POINTS, POINT_STRIDES = jax_dfl.anchor_points([(8, 8), (4, 4), (2, 2)], STRIDES)
A, NUM_BINS, NUM_CLASSES, MAX_DETECTIONS, BATCH = POINTS.shape[0], 16, 3, 10, 3
IOU_THRESHOLD, SCORE_THRESHOLD = 0.5, 0.25


def postprocess(side_logits, class_logits):
    """One image: ``(A, 4, K)`` side and ``(A, C)`` class logits to padded detections."""
    boxes = jax_dfl.decode_boxes(side_logits.astype(jnp.float32), POINTS, POINT_STRIDES)
    probs = jax.nn.sigmoid(class_logits.astype(jnp.float32))
    scores, labels = probs.max(-1), probs.argmax(-1).astype(jnp.int32)
    keep, valid = jax_dfl.non_max_suppression(
        boxes,
        scores,
        iou_threshold=IOU_THRESHOLD,
        score_threshold=SCORE_THRESHOLD,
        max_detections=MAX_DETECTIONS,
        labels=labels,
    )
    # keep is -1 on padding rows, which would read the last point: zero them.
    return (
        jnp.where(valid[:, None], boxes[keep], 0),
        jnp.where(valid, scores[keep], 0),
        jnp.where(valid, labels[keep], -1),
        valid,
    )


batched = jax.vmap(postprocess)


def head_outputs(batch: int, seed: int = 0):
    """Side and class logits; the last image has only 3 points above the score threshold."""
    rng = np.random.default_rng(seed)  # NumPy: the same inputs on every jax release
    side = rng.normal(scale=2.0, size=(batch, A, 4, NUM_BINS)).astype(np.float32)
    cls = rng.normal(loc=-1.0, scale=1.5, size=(batch, A, NUM_CLASSES)).astype(np.float32)
    cls[-1] = -10.0
    cls[-1, [3, 40, 80], 1] = 2.0
    return side, cls


def float64_reference(side, cls):
    """float64 decode (NumPy softmax expectation) and the textbook greedy NMS of test_nms.py."""
    points, strides = np.asarray(POINTS, np.float64), np.asarray(POINT_STRIDES, np.float64)
    distances = reference.decode(side) * strides[:, None]
    boxes = np.concatenate([points - distances[:, :2], points + distances[:, 2:]], -1)
    probs = reference.sigmoid(cls)
    scores, labels = probs.max(-1), probs.argmax(-1)
    keep = reference_nms(
        boxes, scores, IOU_THRESHOLD, MAX_DETECTIONS, score_threshold=SCORE_THRESHOLD, labels=labels
    )
    return boxes[keep], scores[keep], labels[keep], len(keep)


def specs(batch, side_dtype=jnp.float32, cls_dtype=jnp.float32):
    return (
        jax.ShapeDtypeStruct((batch, A, 4, NUM_BINS), side_dtype),
        jax.ShapeDtypeStruct((batch, A, NUM_CLASSES), cls_dtype),
    )


def round_trip(function, *shape_specs, tmp_path=None):
    """Export at the given shapes, serialise (through a file if given), deserialise."""
    blob = export.export(jax.jit(function))(*shape_specs).serialize()
    assert isinstance(blob, bytes | bytearray) and len(blob) > 0
    if tmp_path is not None:
        (tmp_path / "postprocess.bin").write_bytes(blob)
        blob = bytearray((tmp_path / "postprocess.bin").read_bytes())
    return export.deserialize(blob)


def assert_identical(outputs, expected):
    assert len(outputs) == len(expected)
    for out, ref in zip(outputs, expected, strict=True):
        assert out.dtype == ref.dtype and out.shape == ref.shape
        np.testing.assert_array_equal(out, ref)


def test_exported_avals_at_static_shapes():
    exported = export.export(jax.jit(batched))(*specs(BATCH))
    assert [(a.shape, a.dtype) for a in exported.in_avals] == [
        ((BATCH, A, 4, NUM_BINS), jnp.float32),
        ((BATCH, A, NUM_CLASSES), jnp.float32),
    ]
    D = MAX_DETECTIONS
    assert [(a.shape, a.dtype) for a in exported.out_avals] == [
        ((BATCH, D, 4), jnp.float32),
        ((BATCH, D), jnp.float32),
        ((BATCH, D), jnp.int32),
        ((BATCH, D), jnp.bool_),
    ]
    assert exported.platforms == (jax.default_backend(),)


def test_round_trip_equals_the_jitted_function_and_a_float64_reference(tmp_path):
    side, cls = head_outputs(BATCH)
    reloaded = round_trip(batched, *specs(BATCH), tmp_path=tmp_path)
    outputs = reloaded.call(side, cls)
    # The same StableHLO compiled by the same XLA: bit for bit.
    assert_identical(outputs, jax.jit(batched)(side, cls))

    boxes, scores, labels, valid = (np.asarray(x) for x in outputs)
    counts = []
    for b in range(BATCH):
        ref_boxes, ref_scores, ref_labels, n = float64_reference(side[b], cls[b])
        counts.append(n)
        np.testing.assert_array_equal(valid[b], np.arange(MAX_DETECTIONS) < n)
        np.testing.assert_array_equal(labels[b, :n], ref_labels)
        np.testing.assert_allclose(boxes[b, :n], ref_boxes, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(scores[b, :n], ref_scores, rtol=1e-6)
        # Padding rows are zeros (labels -1), whatever index -1 would have read.
        assert (boxes[b, n:] == 0).all() and (scores[b, n:] == 0).all() and (labels[b, n:] == -1).all()
    assert counts[0] == MAX_DETECTIONS and counts[-1] == 3, counts  # full and padded images


def test_a_static_export_refuses_another_batch_size():
    reloaded = round_trip(batched, *specs(BATCH))
    side, cls = head_outputs(BATCH + 1)
    with pytest.raises(ValueError, match="shape"):
        reloaded.call(side, cls)


def test_symbolic_batch_size():
    """NMS's while_loop and sort export with a symbolic batch (A, K, C and D stay static)."""
    (batch,) = export.symbolic_shape("b")
    reloaded = round_trip(
        batched,
        jax.ShapeDtypeStruct((batch, A, 4, NUM_BINS), jnp.float32),
        jax.ShapeDtypeStruct((batch, A, NUM_CLASSES), jnp.float32),
    )
    assert str(reloaded.in_avals[0].shape[0]) == "b"
    assert [str(d) for d in reloaded.out_avals[0].shape] == ["b", str(MAX_DETECTIONS), "4"]
    for size in (1, 4):
        side, cls = head_outputs(size, seed=size)
        assert_identical(reloaded.call(side, cls), jax.jit(batched)(side, cls))


def test_int8_head_dequantised_to_float32_before_decode():
    """An int8 head output with a per-tensor scale: dequantised inside the exported function."""

    def postprocess_int8(side_int8, side_scale, class_logits):
        return batched(side_int8.astype(jnp.float32) * side_scale, class_logits)

    side, cls = head_outputs(BATCH)
    scale = np.float32(np.abs(side).max() / 127)
    side_int8 = np.clip(np.round(side / scale), -127, 127).astype(np.int8)
    int8_specs = (
        jax.ShapeDtypeStruct(side_int8.shape, jnp.int8),
        jax.ShapeDtypeStruct((), jnp.float32),
        specs(BATCH)[1],
    )
    reloaded = round_trip(postprocess_int8, *int8_specs)
    assert [a.dtype for a in reloaded.in_avals] == [jnp.int8, jnp.float32, jnp.float32]
    outputs = reloaded.call(side_int8, scale, cls)
    assert_identical(outputs, jax.jit(postprocess_int8)(side_int8, scale, cls))
    # The float32 function on logits dequantised outside: the same values up to float32 rounding,
    # not bit for bit, since XLA may fuse the product into the softmax and reorder it (jax 0.4.35
    # does: 3e-5 px); the detections themselves are the same.
    expected = jax.jit(batched)(side_int8.astype(np.float32) * scale, cls)
    np.testing.assert_allclose(outputs[0], expected[0], rtol=0, atol=1e-3)
    np.testing.assert_allclose(outputs[1], expected[1], rtol=1e-6)
    for out, ref in zip(outputs[2:], expected[2:], strict=True):
        np.testing.assert_array_equal(out, ref)


def test_bfloat16_head_decodes_in_float32():
    side, cls = head_outputs(BATCH)
    side16, cls16 = jnp.asarray(side, jnp.bfloat16), jnp.asarray(cls, jnp.bfloat16)
    reloaded = round_trip(batched, *specs(BATCH, jnp.bfloat16, jnp.bfloat16))
    assert [a.dtype for a in reloaded.in_avals] == [jnp.bfloat16, jnp.bfloat16]
    assert [a.dtype for a in reloaded.out_avals] == [jnp.float32, jnp.float32, jnp.int32, jnp.bool_]
    outputs = reloaded.call(side16, cls16)
    assert_identical(outputs, jax.jit(batched)(side16, cls16))
    # bfloat16 -> float32 is exact, and everything after it is float32.
    upcast = (side16.astype(jnp.float32), cls16.astype(jnp.float32))
    assert_identical(outputs, jax.jit(batched)(*upcast))
