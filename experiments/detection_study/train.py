"""Training: one jitted step (model, vmapped task-aligned assignment, QFL + box loss, AdamW).

The peak learning rate is an argument of the compiled step, not a constant in
it, so the pilot sweep and every seed of an arm share one compilation. The
seed fixes both the initialisation (``nnx.Rngs(seed)``) and the data stream
(``batch_fn(seed, step)``), so two arms with the same seed see the same
batches from the same shared initial weights: the comparison is paired.

Wall-clock is the training time only: compilation is done ahead of the loop
(``lower().compile()``, timed separately) and validation time is excluded.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jax_dfl import anchor_points, quality_focal_loss, task_aligned_assign

from .arms import ARMS, Arm, box_loss, decoded_boxes
from .model import Detector, feature_shapes, init_params


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 800
    batch: int = 16
    tile: int = 128  # square training crops / synthetic images, pixels
    strides: tuple[int, ...] = (4, 8, 16)
    max_gt: int = 64
    warmup: float = 0.05  # fraction of the steps
    weight_decay: float = 5e-4
    clip: float = 10.0  # global gradient norm, as ultralytics clips
    eval_every: int = 100
    # Gains: QFL 1 and box 2 as GFL; distribution term 0.4 = YOLOv8's dfl/box ratio (1.5 / 7.5) x 2.
    cls_gain: float = 1.0
    box_gain: float = 2.0
    dist_gain: float = 0.4
    # YOLOv8's task-aligned assigner settings.
    top_k: int = 10
    alpha: float = 0.5
    beta: float = 6.0


def unit_schedule(config: TrainConfig):
    """Linear warmup then cosine decay to 0, peak 1: multiplied by the (traced) peak learning rate."""
    warmup = max(1, int(config.warmup * config.steps))
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max(config.steps, warmup + 1))


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    # AdamW with the learning rate left out (applied in the step): decoupled decay, then the schedule.
    return optax.chain(
        optax.clip_by_global_norm(config.clip),
        optax.scale_by_adam(),
        optax.add_decayed_weights(config.weight_decay),
        optax.scale_by_schedule(unit_schedule(config)),
    )


def build_model(arm: Arm, strides: Sequence[int], seed: int) -> Detector:
    return Detector(strides=strides, num_bins=arm.num_bins, bin_values=arm.bin_values, rngs=nnx.Rngs(seed))


def losses(arm: Arm, model: Detector, images, gt_boxes, gt_mask, config: TrainConfig):
    """``(total, parts)`` for one batch; ``parts`` also counts foreground points."""
    points, point_strides = anchor_points(feature_shapes(*images.shape[1:3], config.strides), config.strides)
    logits, box_out = model(images)
    pred_boxes = decoded_boxes(arm, box_out, points, point_strides)
    labels = jnp.zeros(gt_mask.shape, jnp.int32)
    assign = jax.vmap(
        lambda s, b, gl, gb, gm: task_aligned_assign(
            s, b, points, gl, gb, gm, top_k=config.top_k, alpha=config.alpha, beta=config.beta
        )
    )(jax.nn.sigmoid(logits)[..., None], pred_boxes, labels, gt_boxes, gt_mask)
    normalizer = jnp.maximum(jnp.sum(assign.scores), 1.0)
    cls = jnp.sum(quality_focal_loss(logits, assign.scores[..., 0])) / normalizer
    box, dist = jax.vmap(
        lambda o, pb, tb, ts, fg: box_loss(arm, o, pb, points, point_strides, tb, ts, fg, normalizer)
    )(box_out, pred_boxes, assign.boxes, assign.scores, assign.foreground)
    box, dist = jnp.sum(box), jnp.sum(dist)
    total = config.cls_gain * cls + config.box_gain * box + config.dist_gain * dist
    parts = {"cls": cls, "box": box, "dist": dist, "foreground": jnp.sum(assign.foreground) / images.shape[0]}
    return total, parts


@functools.cache
def compiled_step(arm_name: str, config: TrainConfig):
    """``step(params, opt_state, images, boxes, mask, lr) -> (params, opt_state, loss, parts)``, AOT-compiled.

    Returns ``(step, graphdef, seconds spent compiling)``; cached per arm and configuration.
    """
    arm = ARMS[arm_name]
    graphdef, params = nnx.split(nnx.eval_shape(lambda: build_model(arm, config.strides, 0)))
    tx = make_optimizer(config)

    def step(params, opt_state, images, gt_boxes, gt_mask, lr):
        def loss_fn(p):
            return losses(arm, nnx.merge(graphdef, p), images, gt_boxes, gt_mask, config)

        (value, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates))
        return params, opt_state, value, parts

    shapes = (
        jax.ShapeDtypeStruct((config.batch, config.tile, config.tile, 3), jnp.float32),
        jax.ShapeDtypeStruct((config.batch, config.max_gt, 4), jnp.float32),
        jax.ShapeDtypeStruct((config.batch, config.max_gt), jnp.bool_),
        jax.ShapeDtypeStruct((), jnp.float32),
    )
    start = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), *shapes).compile()
    return compiled, graphdef, time.perf_counter() - start


@dataclasses.dataclass
class RunResult:
    arm: str
    seed: int
    lr: float
    curve: list[dict]  # per evaluation: step, train seconds, validation metrics, mean train losses
    params: object  # final parameters (nnx.State)
    graphdef: object
    compile_seconds: float
    train_seconds: float
    eval_seconds: float

    def model(self) -> Detector:
        return nnx.merge(self.graphdef, self.params)


class _Prefetch:
    """Builds the next batch on a host thread while the device runs the current step."""

    def __init__(self, batch_fn, seed: int, steps: int):
        self.batch_fn, self.seed, self.steps = batch_fn, seed, steps
        self.result, self.thread = None, None

    def _start(self, step: int):
        def work():
            self.result = self.batch_fn(self.seed, step)

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()

    def get(self, step: int):
        if self.thread is None:
            self._start(step)
        self.thread.join()
        batch = self.result
        if step + 1 < self.steps:
            self._start(step + 1)
        return batch


def train(
    arm_name: str,
    *,
    seed: int,
    lr: float,
    config: TrainConfig,
    batch_fn: Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    validate: Callable[[Detector], dict[str, float]],
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Train one arm for one seed at peak learning rate ``lr``, validating every ``eval_every`` steps."""
    step, graphdef, compile_seconds = compiled_step(arm_name, config)
    _, params = init_params(nnx.eval_shape(lambda: build_model(ARMS[arm_name], config.strides, 0)), seed)
    opt_state = make_optimizer(config).init(params)
    lr_array = jnp.float32(lr)
    prefetch = _Prefetch(batch_fn, seed, config.steps)
    curve, sums, count = [], {}, 0
    train_seconds = eval_seconds = 0.0
    tic = time.perf_counter()
    for i in range(config.steps):
        images, boxes, mask = prefetch.get(i)
        params, opt_state, value, parts = step(params, opt_state, images, boxes, mask, lr_array)
        for k, v in {"loss": value, **parts}.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        if progress is not None:
            progress(1)
        if (i + 1) % config.eval_every == 0 or i + 1 == config.steps:
            means = {k: float(v) / count for k, v in sums.items()}  # float() waits for the device
            train_seconds += time.perf_counter() - tic
            tic = time.perf_counter()
            metrics = validate(nnx.merge(graphdef, params))
            eval_seconds += time.perf_counter() - tic
            curve.append({"step": i + 1, "seconds": train_seconds, **metrics, "train": means})
            sums, count = {}, 0
            tic = time.perf_counter()
    return RunResult(
        arm_name, seed, lr, curve, params, graphdef, compile_seconds, train_seconds, eval_seconds
    )
