"""Realistic inputs for timing ``non_max_suppression`` at YOLO size (8400 candidates, 80 classes).

    python -m experiments.benchmark_inputs.nms                 # times the settings below on this machine
    python -m experiments.benchmark_inputs.nms --candidates 33600 --repeats 20

``make_nms_inputs`` is what a benchmark imports; the ``__main__`` block is a
quick stand-alone timing (jit, compiled once, median of ``--repeats`` runs).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from jax_dfl.nms import non_max_suppression


def make_nms_inputs(
    candidates: int = 8400,
    seed: int = 0,
    *,
    objects: int = 20,
    num_classes: int = 80,
    image_size: float = 640.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes ``(candidates, 4)`` float32 xyxy, scores ``(candidates,)`` float32, classes int32.

    What a dense head's output looks like before NMS: 60 % of the candidates
    are jittered copies of one of ``objects`` objects (centres uniform in the
    image, sides log-uniform in 16..320 px), mostly of that object's class;
    the rest is background clutter. Scores are ``sigmoid(12 * IoU_with_object
    - 8 + noise)``: about 0.95 for a well-placed box, about 0.0003 for clutter.
    With the defaults (seed 0) 5459 of the 8400 scores are above 0.001 and
    2699 above 0.25: a stress case, with far more overlapping high scores
    than a trained detector leaves, so every NMS step has work to do.
    """
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.1, 0.9, size=(objects, 2)) * image_size
    size = np.exp(rng.uniform(np.log(16), np.log(320), size=(objects, 2)))
    object_class = rng.integers(0, num_classes, size=objects)

    owner = rng.integers(0, objects, size=candidates)
    near = rng.random(candidates) < 0.6
    c = np.where(
        near[:, None],
        centre[owner] + rng.normal(scale=0.15, size=(candidates, 2)) * size[owner],
        rng.uniform(0, image_size, size=(candidates, 2)),
    )
    wh = np.where(
        near[:, None],
        size[owner] * np.exp(rng.normal(scale=0.2, size=(candidates, 2))),
        np.exp(rng.uniform(np.log(8), np.log(200), size=(candidates, 2))),
    )
    boxes = np.clip(np.concatenate([c - wh / 2, c + wh / 2], axis=1), 0, image_size)

    truth = np.concatenate([centre - size / 2, centre + size / 2], axis=1)[owner]
    lt, rb = np.maximum(boxes[:, :2], truth[:, :2]), np.minimum(boxes[:, 2:], truth[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    union = (
        np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) + np.prod(truth[:, 2:] - truth[:, :2], axis=1) - inter
    )
    iou = np.where(near, inter / np.maximum(union, 1e-9), 0.0)
    scores = 1 / (1 + np.exp(-(12 * iou - 8 + rng.normal(size=candidates))))
    classes = np.where(
        near & (rng.random(candidates) < 0.9), object_class[owner], rng.integers(0, num_classes, candidates)
    )
    return boxes.astype(np.float32), scores.astype(np.float32), classes.astype(np.int32)


def time_nms(candidates: int, repeats: int, **nms_kwargs) -> tuple[float, int]:
    """Median seconds of one jitted call after compilation, and the number of boxes kept."""
    boxes, scores, classes = make_nms_inputs(candidates)
    fn = jax.jit(lambda b, s, c: non_max_suppression(b, s, labels=c, **nms_kwargs))
    boxes, scores, classes = jax.device_put((boxes, scores, classes))
    _, valid = jax.block_until_ready(fn(boxes, scores, classes))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(boxes, scores, classes))
        times.append(time.perf_counter() - start)
    return float(np.median(times)), int(valid.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=8400)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, candidates={args.candidates}, class-aware, iou 0.7")
    for score_threshold in [0.001, 0.25]:
        for max_detections in [100, 300]:
            seconds, kept = time_nms(
                args.candidates,
                args.repeats,
                iou_threshold=0.7,
                max_detections=max_detections,
                score_threshold=score_threshold,
            )
            print(
                f"score_threshold={score_threshold:<6} max_detections={max_detections:<4} "
                f"median {seconds * 1e3:8.2f} ms  kept {kept}"
            )


if __name__ == "__main__":
    main()
