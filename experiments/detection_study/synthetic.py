"""Synthetic controls: blobs of three pixel sizes, drawn in random order with soft, noisy edges.

Fixes the confounders of the earlier toy (``experiments/synthetic_detection/toy_detection.py``):

* several objects per image (``objects_per_class`` of each size class), drawn in
  a random order, so no size class is always on top;
* soft edges (a logistic ramp of random width) and a textured, noisy fill, so
  that even large objects are not at their IoU ceiling: the box edge has to be
  estimated, not read off a step;
* size in pixels is independent of size in bins: the pixel sizes are the same
  whatever the detector's stride, and the study trains one single-level
  detector per stride (2, 4 or 8). A ``16-24`` px object is then 8-12, 4-6 or
  2-3 bins across. If DFL's gain follows resolution (bins), cells with equal
  bins (``8-12 px @ 4`` and ``16-24 px @ 8``) show equal gains; if it follows
  pixels, rows do.

Side ``s`` is uniform in its class's range and the aspect ratio ``r`` log-uniform
in ``[1/aspect, aspect]``; ``w = s sqrt(r)``, ``h = s / sqrt(r)``, so the box
area is exactly ``s**2`` and the size classes are separable by area (the
``area_ranges`` of :func:`size_area_ranges`).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
    image_size: int = 96
    # Side lengths (sqrt of box area) in pixels of the three size classes.
    size_ranges: tuple[tuple[float, float], ...] = ((8.0, 12.0), (16.0, 24.0), (32.0, 44.0))
    objects_per_class: int = 2
    aspect: float = 1.4
    edge_width: tuple[float, float] = (0.5, 2.5)  # logistic edge scale in pixels: from crisp to blurred
    noise_std: float = 0.35
    texture_std: float = 0.25  # per-object fill texture, so a large object's interior is not flat

    @property
    def objects(self) -> int:
        return self.objects_per_class * len(self.size_ranges)


SIZE_NAMES = ("small", "medium", "large")


def size_area_ranges(task: SyntheticTask) -> dict[str, tuple[float, float]]:
    """COCO ``area_ranges`` of the three classes (areas are exactly side**2)."""
    return {name: (lo**2, hi**2) for name, (lo, hi) in zip(SIZE_NAMES, task.size_ranges, strict=True)}


def sample_boxes(rng: np.random.Generator, task: SyntheticTask) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(objects, 4)`` xyxy in pixels and their size class ``(objects,)``, inside the image."""
    classes = np.repeat(np.arange(len(task.size_ranges)), task.objects_per_class)
    lo = np.array([task.size_ranges[c][0] for c in classes])
    hi = np.array([task.size_ranges[c][1] for c in classes])
    side = rng.uniform(lo, hi)
    ratio = np.exp(rng.uniform(-np.log(task.aspect), np.log(task.aspect), len(classes)))
    wh = np.stack([side * np.sqrt(ratio), side / np.sqrt(ratio)], axis=-1)
    xy = rng.uniform(0, 1, (len(classes), 2)) * (task.image_size - wh)
    return np.concatenate([xy, xy + wh], axis=-1).astype(np.float32), classes


def _logistic(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))  # the logistic function, without exp's overflow


def render(rng: np.random.Generator, boxes: np.ndarray, task: SyntheticTask) -> np.ndarray:
    """One ``(H, W, 3)`` float32 image of ``boxes``, painted in a random order."""
    size = task.image_size
    coords = np.arange(size, dtype=np.float32) + 0.5
    image = np.zeros((size, size, 3), np.float32)
    # One texture field per image, shifted per object: each object gets its own pattern at a
    # fraction of the cost of drawing a fresh field each (the generator runs every training step).
    texture = task.texture_std * rng.normal(size=(size, size, 3)).astype(np.float32)
    for obj in rng.permutation(len(boxes)):
        x1, y1, x2, y2 = boxes[obj]
        scale = rng.uniform(*task.edge_width)
        # Soft box: the product of logistic ramps across each pair of sides; 0.5 exactly on the edge.
        sx = _logistic((coords - x1) / scale) * _logistic((x2 - coords) / scale)
        sy = _logistic((coords - y1) / scale) * _logistic((y2 - coords) / scale)
        alpha = (sy[:, None] * sx[None, :])[..., None]
        colour = rng.uniform(-1.2, 1.2, 3).astype(np.float32)
        fill = colour + np.roll(texture, tuple(rng.integers(0, size, 2)), axis=(0, 1))
        image = (1 - alpha) * image + alpha * fill
    return image + task.noise_std * rng.normal(size=image.shape).astype(np.float32)


def make_batch(rng: np.random.Generator, task: SyntheticTask, batch: int) -> tuple[np.ndarray, ...]:
    """Images ``(batch, H, W, 3)``, boxes ``(batch, objects, 4)``, mask and size classes."""
    images = np.empty((batch, task.image_size, task.image_size, 3), np.float32)
    boxes = np.empty((batch, task.objects, 4), np.float32)
    classes = np.empty((batch, task.objects), np.int64)
    for i in range(batch):
        boxes[i], classes[i] = sample_boxes(rng, task)
        images[i] = render(rng, boxes[i], task)
    return images, boxes, np.ones(boxes.shape[:2], bool), classes


def size_in_bins(boxes: np.ndarray, stride: float) -> np.ndarray:
    """sqrt(area) / stride: an object's size in bins of a stride-``stride`` head."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return np.sqrt(area) / stride
