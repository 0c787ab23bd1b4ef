"""A synthetic detection task: rectangles of three sizes on noise, a small conv detector.

Each image (``image_size`` square, one channel) holds one small, one medium and
one large filled rectangle on a noisy background, painted large first so that
smaller ones sit on top. A fully convolutional, anchor-free detector predicts,
at every point of a stride-``stride`` grid, the distances to the four sides of
the object the point belongs to (FCOS/GFL style: a point inside several boxes
belongs to the smallest). Distances are in bins of ``stride`` pixels.

Box-regression losses compared (mean over positive points):

================  ============================================================
``l1``            L1 on the four distances (scalar head, softplus)
``giou``          GIoU of the decoded box (scalar head, softplus)
``giou_dist``     GIoU only, on a distribution head decoded by expectation (no DFL):
                  separates the effect of the head from that of the DFL term
``giou_dfl``      GIoU + ``dfl_weight`` x DFL (distribution head, integer bins)
``giou_dfl_log``  as ``giou_dfl`` with log-spaced ``bin_values``
================  ============================================================

Localisation is scored per object by the IoU of the box predicted at its
assigned point nearest its centre, grouped by object size.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jax_dfl.boxes import bbox2distance, box_iou, distance2bbox, giou_loss
from jax_dfl.decoding import decode
from jax_dfl.losses import distribution_focal_loss

LOSSES = ("l1", "giou", "giou_dist", "giou_dfl", "giou_dfl_log")
SIZE_NAMES = ("small", "medium", "large")


@dataclasses.dataclass(frozen=True)
class DetectionTask:
    image_size: int = 64
    stride: int = 4
    num_bins: int = 17  # distances 0 .. 16 bins = 0 .. 64 px at stride 4
    # Side lengths in pixels for the small, medium and large object of each image.
    size_ranges: tuple[tuple[float, float], ...] = ((3.0, 10.0), (10.0, 24.0), (24.0, 44.0))
    noise_std: float = 0.35

    @property
    def grid(self) -> int:
        return self.image_size // self.stride

    def points(self) -> jax.Array:
        """Centres of the grid cells in pixels, ``(grid * grid, 2)`` as (x, y)."""
        centres = (jnp.arange(self.grid) + 0.5) * self.stride
        xs, ys = jnp.meshgrid(centres, centres)
        return jnp.stack([xs.ravel(), ys.ravel()], axis=-1)

    def log_bin_values(self) -> np.ndarray:
        """0, then geometric from 1/4 bin to the last bin: fine steps for short distances."""
        top = self.num_bins - 1
        return np.concatenate([[0.0], np.geomspace(0.25, top, self.num_bins - 1)])


def size_class(boxes: np.ndarray) -> np.ndarray:
    """0/1/2 for small/medium/large by sqrt(area): < 10 px, 10-24 px, > 24 px."""
    side = np.sqrt((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]))
    return np.digitize(side, [10.0, 24.0])


def make_images(key: jax.Array, batch: int, task: DetectionTask):
    """Images ``(batch, H, W, 1)`` and boxes ``(batch, 3, 4)`` (small, medium, large; xyxy px)."""
    k_size, k_pos, k_int, k_noise, k_bg = jax.random.split(key, 5)
    lows = jnp.array([r[0] for r in task.size_ranges])
    highs = jnp.array([r[1] for r in task.size_ranges])
    u = jax.random.uniform(k_size, (batch, 3, 2))
    wh = lows[None, :, None] + u * (highs - lows)[None, :, None]
    xy = jax.random.uniform(k_pos, (batch, 3, 2)) * (task.image_size - wh)
    boxes = jnp.concatenate([xy, xy + wh], axis=-1)

    coords = jnp.arange(task.image_size) + 0.5
    intensity = jax.random.uniform(k_int, (batch, 3), minval=0.6, maxval=1.4)
    intensity *= jnp.where(jax.random.bernoulli(k_bg, 0.5, (batch, 3)), 1.0, -1.0)
    image = jnp.zeros((batch, task.image_size, task.image_size))
    for obj in (2, 1, 0):  # large first, small on top
        b = boxes[:, obj]
        inside_x = (coords[None, :] >= b[:, 0:1]) & (coords[None, :] < b[:, 2:3])
        inside_y = (coords[None, :] >= b[:, 1:2]) & (coords[None, :] < b[:, 3:4])
        mask = inside_y[:, :, None] & inside_x[:, None, :]
        image = jnp.where(mask, intensity[:, obj, None, None], image)
    image += task.noise_std * jax.random.normal(k_noise, image.shape)
    return image[..., None], boxes


def assign(boxes: jax.Array, task: DetectionTask):
    """Per grid point: the smallest box containing it, and whether there is one.

    Returns ``(assigned_boxes (B, P, 4), positive (B, P), owner (B, P))``.
    """
    points = task.points()  # (P, 2)
    # Every (point, object) pair, spelled out: the box helpers do not broadcast.
    pairs = (boxes.shape[0], points.shape[0], boxes.shape[1])
    d = bbox2distance(
        jnp.broadcast_to(points[None, :, None, :], (*pairs, 2)),
        jnp.broadcast_to(boxes[:, None, :, :], (*pairs, 4)),
    )  # (B, P, 3, 4)
    inside = jnp.all(d > 0, axis=-1)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # (B, 3)
    owner = jnp.argmin(jnp.where(inside, area[:, None, :], jnp.inf), axis=-1)
    positive = jnp.any(inside, axis=-1)
    assigned = jnp.take_along_axis(boxes[:, None, :, :], owner[..., None, None], axis=2)[:, :, 0]
    return assigned, positive, owner


class Detector(nnx.Module):
    """Conv trunk to stride ``task.stride``, dilated context, per-point box head."""

    def __init__(self, loss: str, task: DetectionTask, *, width: int = 32, rngs: nnx.Rngs):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
        if task.stride != 4:
            raise ValueError("the toy detector's trunk downsamples by exactly 4")
        self.loss = loss
        self.num_bins = task.num_bins
        conv = lambda i, o, **kw: nnx.Conv(i, o, kernel_size=(3, 3), rngs=rngs, **kw)
        # Two stride-2 convs reach stride 4; dilations 1, 2, 4, 8 widen the
        # receptive field so a point near a large box's centre sees its sides.
        self.stem = nnx.List([conv(1, width, strides=2), conv(width, width, strides=2)])
        self.context = nnx.List([conv(width, width, kernel_dilation=d) for d in (1, 2, 4, 8)])
        out = 4 * task.num_bins if self.distributional else 4
        self.head = nnx.Conv(width, out, kernel_size=(1, 1), rngs=rngs)

    @property
    def distributional(self) -> bool:
        return self.loss in ("giou_dist", "giou_dfl", "giou_dfl_log")

    def __call__(self, images: jax.Array) -> jax.Array:
        """``(B, P, 4, num_bins)`` logits or ``(B, P, 4)`` distances in bins."""
        x = images
        for layer in self.stem:
            x = nnx.gelu(layer(x))
        for layer in self.context:
            x = x + nnx.gelu(layer(x))
        out = self.head(x)
        batch = out.shape[0]
        if self.distributional:
            return out.reshape(batch, -1, 4, self.num_bins)
        return jax.nn.softplus(out.reshape(batch, -1, 4))


def predicted_distances(loss: str, output: jax.Array, task: DetectionTask) -> jax.Array:
    """Distances in bins from a head's raw output."""
    if loss in ("giou_dist", "giou_dfl"):
        return decode(output)
    if loss == "giou_dfl_log":
        return decode(output, bin_values=task.log_bin_values())
    return output


def detection_loss(
    loss: str, output: jax.Array, boxes: jax.Array, task: DetectionTask, *, dfl_weight: float = 0.25
) -> jax.Array:
    """Mean box-regression loss over positive points of a batch."""
    assigned, positive, _ = assign(boxes, task)
    points = task.points()  # (P, 2), shared by the batch
    target_dist = bbox2distance(points, assigned) / task.stride  # (B, P, 4), bins
    pred_dist = predicted_distances(loss, output, task)
    count = jnp.maximum(positive.sum(), 1)
    if loss == "l1":
        per_point = jnp.abs(pred_dist - target_dist).sum(-1)
    else:
        pred_boxes = distance2bbox(points, pred_dist * task.stride)
        per_point = giou_loss(pred_boxes, assigned)
        if loss in ("giou_dfl", "giou_dfl_log"):
            bin_values = task.log_bin_values() if loss == "giou_dfl_log" else None
            side_mask = jnp.broadcast_to(positive[..., None], target_dist.shape)
            dfl = distribution_focal_loss(output, target_dist, where=side_mask, bin_values=bin_values)
            per_point = per_point + dfl_weight * dfl.mean(-1)
    return jnp.sum(jnp.where(positive, per_point, 0)) / count


def object_ious(pred_dist: np.ndarray, boxes: np.ndarray, task: DetectionTask) -> np.ndarray:
    """IoU per object of the box predicted at its assigned point nearest its centre.

    ``pred_dist``: ``(B, P, 4)`` bins; ``boxes``: ``(B, 3, 4)`` px. NaN for an
    object that owns no grid point (fully covered by smaller ones).
    """
    _, positive, owner = (np.asarray(a) for a in assign(jnp.asarray(boxes), task))
    points = np.asarray(task.points())
    pred_boxes = np.asarray(distance2bbox(points, jnp.asarray(pred_dist) * task.stride))
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # (B, 3, 2)
    ious = np.full(boxes.shape[:2], np.nan)
    for b in range(boxes.shape[0]):
        for obj in range(boxes.shape[1]):
            mine = np.nonzero(positive[b] & (owner[b] == obj))[0]
            if mine.size == 0:
                continue
            nearest = mine[np.argmin(np.sum((points[mine] - centres[b, obj]) ** 2, axis=-1))]
            ious[b, obj] = float(box_iou(pred_boxes[b, nearest], boxes[b, obj]))
    return ious


@dataclasses.dataclass
class DetectionRun:
    loss: str
    seeds: list[int]
    steps: list[int]
    train_loss: np.ndarray  # (seeds, evals)
    test_distances: np.ndarray  # (seeds, B, P, 4) bins
    seconds: float


def train_detector(
    loss: str,
    seeds: Sequence[int],
    *,
    task: DetectionTask,
    steps: int,
    batch_size: int,
    learning_rate: float,
    test_images: jax.Array,
    width: int = 32,
    log_every: int = 50,
    progress: Callable[[int], None] | None = None,
) -> DetectionRun:
    """Train one loss for each seed; same data stream and initial trunk per seed.

    One jitted step per call, seeds one after another: on XLA's CPU backend a
    convolution inside ``lax.scan`` or under ``vmap`` over parameters ran
    about 18x and 2x slower here than this plain loop.
    """
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(100, steps // 10), steps)
    tx = optax.adam(schedule)

    def init(seed):
        model = Detector(loss, task, width=width, rngs=nnx.Rngs(seed))
        return nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))

    graphdef, _ = init(seeds[0])  # the same structure for every seed

    def step(state, key):
        model, optimizer = nnx.merge(graphdef, state)
        images, boxes = make_images(key, batch_size, task)
        value, grads = nnx.value_and_grad(lambda m: detection_loss(loss, m(images), boxes, task))(model)
        optimizer.update(model, grads)
        return nnx.split((model, optimizer))[1], value

    def predict(state):
        model, _ = nnx.merge(graphdef, state)
        return predicted_distances(loss, model(test_images), task)

    jit_step, jit_predict = jax.jit(step), jax.jit(predict)
    t0 = time.perf_counter()
    curves, distances = [], []
    for seed in seeds:
        _, state = init(seed)
        key = jax.random.key(seed)
        values, curve = [], []
        for i in range(steps):
            state, value = jit_step(state, jax.random.fold_in(key, i))
            values.append(value)
            if (i + 1) % log_every == 0:
                curve.append(float(jnp.mean(jnp.stack(values))))
                values = []
                if progress is not None:
                    progress(log_every)
        curves.append(curve)
        distances.append(np.asarray(jit_predict(state)))
    return DetectionRun(
        loss=loss,
        seeds=list(seeds),
        steps=[(i + 1) * log_every for i in range(steps // log_every)],
        train_loss=np.array(curves),
        test_distances=np.stack(distances),
        seconds=time.perf_counter() - t0,
    )
