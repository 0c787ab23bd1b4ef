"""The synthetic detection task, the toy detector and the detection script."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.synthetic_detection import toy_detection as td
from tests import reference as ref

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASK = td.DetectionTask()


def test_images_hold_one_object_per_size_class():
    images, boxes = td.make_images(jax.random.key(0), 32, TASK)
    assert images.shape == (32, 64, 64, 1) and boxes.shape == (32, 3, 4)
    b = np.asarray(boxes)
    assert (b[..., :2] >= 0).all() and (b[..., 2:] <= 64).all()
    sides = b[..., 2:] - b[..., :2]
    for index, (low, high) in enumerate(TASK.size_ranges):
        assert (sides[:, index] >= low - 1e-4).all() and (sides[:, index] <= high + 1e-4).all()
    # The small object is painted last: its centre pixel shows its own intensity.
    again, _ = td.make_images(jax.random.key(0), 32, TASK)
    np.testing.assert_array_equal(images, again)


def test_assignment_picks_the_smallest_containing_box():
    boxes = jnp.array([[[10.0, 10, 18, 18], [4, 4, 30, 30], [0, 0, 60, 60]]])
    assigned, positive, owner = td.assign(boxes, TASK)
    points = np.asarray(TASK.points())
    for p, (x, y) in enumerate(points):
        inside = [i for i, b in enumerate(np.asarray(boxes[0])) if b[0] < x < b[2] and b[1] < y < b[3]]
        assert bool(positive[0, p]) == bool(inside)
        if inside:
            assert int(owner[0, p]) == inside[0]  # boxes are listed smallest first
            np.testing.assert_array_equal(assigned[0, p], boxes[0, inside[0]])


def test_log_bins_are_increasing_and_span_the_range():
    values = TASK.log_bin_values()
    assert values[0] == 0 and values[-1] == TASK.num_bins - 1 and len(values) == TASK.num_bins
    assert np.all(np.diff(values) > 0) and values[1] == 0.25


def test_detector_outputs_and_losses_are_finite():
    images, boxes = td.make_images(jax.random.key(1), 2, TASK)
    for loss in td.LOSSES:
        model = td.Detector(loss, TASK, width=8, rngs=nnx.Rngs(0))
        out = model(images)
        expected = (2, 256, 4, 17) if loss in ("giou_dist", "giou_dfl", "giou_dfl_log") else (2, 256, 4)
        assert out.shape == expected
        value, grads = nnx.value_and_grad(
            lambda m, loss=loss: td.detection_loss(loss, m(images), boxes, TASK)
        )(model)
        assert np.isfinite(value) and value > 0
        assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_object_ious_of_perfect_distances_are_one():
    _, boxes = td.make_images(jax.random.key(2), 4, TASK)
    assigned, _, _ = td.assign(boxes, TASK)
    points = np.asarray(TASK.points())
    a = np.asarray(assigned)
    perfect = np.concatenate([points - a[..., :2], a[..., 2:] - points], -1) / TASK.stride
    ious = td.object_ious(perfect, np.asarray(boxes), TASK)
    scored = ious[~np.isnan(ious)]
    assert scored.size > 0
    np.testing.assert_allclose(scored, 1.0, atol=1e-5)
    # Growing every side by half a bin (2 px) gives IoU = area / grown area.
    got = td.object_ious(perfect + 0.5, np.asarray(boxes), TASK)
    b = np.asarray(boxes)
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    expected = (w * h) / ((w + 4) * (h + 4))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(got)], rtol=1e-4)


def test_training_reduces_the_loss_and_is_reproducible():
    test_images, _ = td.make_images(jax.random.key(3), 4, TASK)
    kwargs = dict(
        task=TASK, steps=40, batch_size=4, learning_rate=3e-3, test_images=test_images, width=8, log_every=20
    )
    a = td.train_detector("giou_dfl_log", [0], **kwargs)
    b = td.train_detector("giou_dfl_log", [0], **kwargs)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    np.testing.assert_array_equal(a.test_distances, b.test_distances)
    assert a.train_loss[0, -1] < a.train_loss[0, 0]
    assert a.test_distances.shape == (1, 4, 256, 4)


def test_giou_reference_agrees_with_box_iou_for_nested_boxes():
    # Sanity on the reference itself: nested boxes have GIoU = IoU.
    assert ref.giou([0, 0, 4, 4], [1, 1, 3, 3]) == 4 / 16


def test_detection_script_tiny(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "detection", ROOT / "experiments" / "synthetic_detection" / "main.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(
        [
            "--steps",
            "10",
            "--seeds",
            "2",
            "--test-images",
            "24",
            "--losses",
            "l1",
            "giou_dfl_log",
            "--out",
            str(tmp_path),
        ]
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["device"]["platform"] == "cpu"
    assert len(saved["runs"]) == 4
    for run in saved["runs"]:
        assert set(run["by_size"]) == {"small", "medium", "large"}
        for stats in run["by_size"].values():
            assert 0 <= stats["mean_iou"] <= 1 and stats["objects"] > 0
    assert (tmp_path / "iou_by_size.png").stat().st_size > 1000
    assert "| giou_dfl_log |" in (tmp_path / "summary.md").read_text()
