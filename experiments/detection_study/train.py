"""Training: one jitted step (model, vmapped task-aligned assignment, QFL + box loss, AdamW).

The peak learning rate and the auxiliary gain (the weight of an arm's second box
term: DFL, HL-Gauss or L1) are arguments of the compiled step, not constants in
it, so the pilot sweep and every seed of an arm share one compilation.
:func:`train_batch` trains several runs ``(seed, lr, gain)`` of one arm at once:
parameters, optimiser states, data streams, learning rates and gains stacked on
a leading axis and the step ``jax.vmap``-ped over it, one compiled program for
all of them (tested equal to :func:`train`, one run alone, to float tolerance). The
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

from jax_dfl import anchor_points, clipped_fraction, quality_focal_loss, task_aligned_assign

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
    # dist_gain is the default auxiliary gain: a run's own gain (traced) replaces it.
    cls_gain: float = 1.0
    box_gain: float = 2.0
    dist_gain: float = 0.4
    # YOLOv8's task-aligned assigner settings.
    top_k: int = 10
    alpha: float = 0.5
    beta: float = 6.0
    # Also log, for arms with a distribution head, the share of the foreground's side targets
    # beyond the last bin (jax_dfl.clipped_fraction). Off by default so that the compiled step of
    # every recorded run stays the program it was trained with.
    log_clipped: bool = False


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


def losses(arm: Arm, model: Detector, images, gt_boxes, gt_mask, config: TrainConfig, gain=None):
    """``(total, parts)`` for one batch; ``parts`` also counts foreground points.

    ``gain`` (a traced scalar; default ``config.dist_gain``) weighs the arm's second box term.
    With ``config.log_clipped`` and a distribution head, ``parts["clipped"]`` is the fraction of
    the batch's foreground side targets outside the bins (no gradient flows through it).
    """
    gain = config.dist_gain if gain is None else gain
    points, point_strides = anchor_points(feature_shapes(*images.shape[1:3], config.strides), config.strides)
    logits, box_out = model(images)
    pred_boxes = decoded_boxes(arm, box_out, points, point_strides)
    labels = jnp.zeros(gt_mask.shape, jnp.int32)
    assign = jax.vmap(
        lambda s, b, gl, gb, gm: task_aligned_assign(
            pred_boxes=b,
            pred_scores=s,
            points=points,
            gt_boxes=gb,
            gt_labels=gl,
            gt_mask=gm,
            top_k=config.top_k,
            alpha=config.alpha,
            beta=config.beta,
        )
    )(jax.nn.sigmoid(logits)[..., None], pred_boxes, labels, gt_boxes, gt_mask)
    normalizer = jnp.maximum(jnp.sum(assign.scores), 1.0)
    cls = jnp.sum(quality_focal_loss(logits, assign.scores[..., 0])) / normalizer
    box, dist = jax.vmap(
        lambda o, pb, tb, ts, fg: box_loss(arm, o, pb, points, point_strides, tb, ts, fg, normalizer)
    )(box_out, pred_boxes, assign.boxes, assign.scores, assign.foreground)
    box, dist = jnp.sum(box), jnp.sum(dist)
    total = config.cls_gain * cls + config.box_gain * box + gain * dist
    parts = {"cls": cls, "box": box, "dist": dist, "foreground": jnp.sum(assign.foreground) / images.shape[0]}
    if config.log_clipped and arm.distribution:
        bins = {"num_bins": arm.num_bins} if arm.bin_values is None else {"bin_values": arm.bin_values}
        parts["clipped"] = clipped_fraction(
            points,
            jax.lax.stop_gradient(assign.boxes),
            assign.foreground,
            point_strides=point_strides,
            **bins,
        )
    return total, parts


def _step_fn(arm: Arm, graphdef, config: TrainConfig):
    tx = make_optimizer(config)

    def step(params, opt_state, images, gt_boxes, gt_mask, lr, gain):
        def loss_fn(p):
            return losses(arm, nnx.merge(graphdef, p), images, gt_boxes, gt_mask, config, gain)

        (value, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates))
        return params, opt_state, value, parts

    return step


def _data_shapes(config: TrainConfig, lead: tuple[int, ...] = ()):
    return (
        jax.ShapeDtypeStruct((*lead, config.batch, config.tile, config.tile, 3), jnp.float32),
        jax.ShapeDtypeStruct((*lead, config.batch, config.max_gt, 4), jnp.float32),
        jax.ShapeDtypeStruct((*lead, config.batch, config.max_gt), jnp.bool_),
        jax.ShapeDtypeStruct(lead, jnp.float32),
        jax.ShapeDtypeStruct(lead, jnp.float32),
    )


@functools.cache
def compiled_step(arm_name: str, config: TrainConfig):
    """``step(params, opt_state, images, boxes, mask, lr, gain) -> (params, opt_state, loss, parts)``.

    AOT-compiled; returns ``(step, graphdef, seconds spent compiling)``; cached per arm and configuration.
    """
    arm = ARMS[arm_name]
    graphdef, params = nnx.split(nnx.eval_shape(lambda: build_model(arm, config.strides, 0)))
    step = _step_fn(arm, graphdef, config)
    start = time.perf_counter()
    compiled = (
        jax.jit(step, donate_argnums=(0, 1))
        .lower(params, make_optimizer(config).init(params), *_data_shapes(config))
        .compile()
    )
    return compiled, graphdef, time.perf_counter() - start


@functools.cache
def compiled_batch_step(arm_name: str, config: TrainConfig, runs: int, mode: str = "vmap"):
    """:func:`compiled_step` over a leading axis of ``runs`` runs (every argument batched), in one program.

    ``mode="vmap"``: ``jax.vmap`` (the convolutions become grouped convolutions: fast on an
    accelerator, slow on XLA's CPU backend); ``"map"``: ``jax.lax.map``, the runs one after another
    inside the program (each run's step as when alone; no speed-up, one compilation).
    """
    arm = ARMS[arm_name]
    graphdef, params = nnx.split(nnx.eval_shape(lambda: build_model(arm, config.strides, 0)))
    one = _step_fn(arm, graphdef, config)
    if mode == "vmap":
        step = jax.vmap(one)
    elif mode == "map":
        step = lambda *args: jax.lax.map(lambda xs: one(*xs), args)
    else:
        raise ValueError(f"mode must be 'vmap' or 'map'; got {mode!r}")
    tx = make_optimizer(config)
    stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((runs, *x.shape), x.dtype), params)
    opt_state = jax.eval_shape(jax.vmap(tx.init), stacked)
    start = time.perf_counter()
    compiled = (
        jax.jit(step, donate_argnums=(0, 1))
        .lower(stacked, opt_state, *_data_shapes(config, (runs,)))
        .compile()
    )
    return compiled, graphdef, time.perf_counter() - start


@dataclasses.dataclass
class RunResult:
    arm: str
    seed: int
    lr: float
    gain: float
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


def _loop(step, params, opt_state, lr, gain, *, config, prefetch, models, validate, progress, runs):
    """The loop :func:`train` and :func:`train_batch` share: ``config.steps`` steps, and every
    ``eval_every`` steps the mean training losses and ``validate`` of each run's model
    (``models(params)``: one model per run). Returns ``(params, curves, train s, validation s)``;
    the values of a batch of runs carry a leading axis, those of one run none."""
    curves: list[list[dict]] = [[] for _ in range(runs)]
    sums, count = {}, 0
    train_seconds = eval_seconds = 0.0
    tic = time.perf_counter()
    for i in range(config.steps):
        images, boxes, mask = prefetch.get(i)
        params, opt_state, value, parts = step(params, opt_state, images, boxes, mask, lr, gain)
        for k, v in {"loss": value, **parts}.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        if progress is not None:
            progress(runs)
        if (i + 1) % config.eval_every == 0 or i + 1 == config.steps:
            means = {k: np.asarray(v) / count for k, v in sums.items()}  # waits for the device
            train_seconds += time.perf_counter() - tic
            tic = time.perf_counter()
            for j, model in enumerate(models(params)):
                curves[j].append(
                    {
                        "step": i + 1,
                        "seconds": train_seconds,
                        **validate(model),
                        "train": {k: float(v[j] if v.ndim else v) for k, v in means.items()},
                    }
                )
            eval_seconds += time.perf_counter() - tic
            sums, count = {}, 0
            tic = time.perf_counter()
    return params, curves, train_seconds, eval_seconds


def train(
    arm_name: str,
    *,
    seed: int,
    lr: float,
    config: TrainConfig,
    batch_fn: Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    validate: Callable[[Detector], dict[str, float]],
    progress: Callable[[int], None] | None = None,
    gain: float | None = None,
) -> RunResult:
    """Train one arm for one seed at peak learning rate ``lr`` and auxiliary ``gain`` (default
    ``config.dist_gain``), validating every ``eval_every`` steps."""
    gain = config.dist_gain if gain is None else gain
    step, graphdef, compile_seconds = compiled_step(arm_name, config)
    _, params = init_params(nnx.eval_shape(lambda: build_model(ARMS[arm_name], config.strides, 0)), seed)
    params, curves, train_seconds, eval_seconds = _loop(
        step,
        params,
        make_optimizer(config).init(params),
        jnp.float32(lr),
        jnp.float32(gain),
        config=config,
        prefetch=_Prefetch(batch_fn, seed, config.steps),
        models=lambda p: [nnx.merge(graphdef, p)],
        validate=validate,
        progress=progress,
        runs=1,
    )
    return RunResult(
        arm_name, seed, lr, gain, curves[0], params, graphdef, compile_seconds, train_seconds, eval_seconds
    )


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: an arm, a seed (initialisation and data stream), a peak rate and a gain."""

    arm: str
    seed: int
    lr: float
    gain: float

    @property
    def key(self) -> str:
        return f"{self.arm}_seed{self.seed}_lr{self.lr:g}_gain{self.gain:g}"


def train_batch(
    runs: Sequence[Run],
    *,
    config: TrainConfig,
    batch_fn: Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    validate: Callable[[Detector], dict[str, float]],
    progress: Callable[[int], None] | None = None,
    mode: str = "vmap",
) -> list[RunResult]:
    """Train ``runs`` (one arm) together under ``jax.vmap``; one :class:`RunResult` per run, in order.

    Runs that share a seed share its data stream (each batch drawn once per seed). Validation
    is per run, every ``eval_every`` steps, on the run's own parameters. ``train_seconds`` is the
    batch's training time (the same for every run in it).
    """
    arms = {r.arm for r in runs}
    if len(arms) != 1:
        raise ValueError(f"one arm per vmapped batch; got {sorted(arms)}")
    arm_name = runs[0].arm
    step, graphdef, compile_seconds = compiled_batch_step(arm_name, config, len(runs), mode)
    abstract = nnx.eval_shape(lambda: build_model(ARMS[arm_name], config.strides, 0))
    per_run = [init_params(abstract, r.seed)[1] for r in runs]
    params = jax.tree.map(lambda *xs: jnp.stack(xs), *per_run)
    seeds = list(dict.fromkeys(r.seed for r in runs))
    index = np.array([seeds.index(r.seed) for r in runs])

    def batches(seed_list, step_index):
        parts = [batch_fn(s, step_index) for s in seed_list]
        return tuple(np.stack([p[k] for p in parts])[index] for k in range(3))

    def unstack(p) -> list:
        return [jax.tree.map(lambda x, j=j: x[j], p) for j in range(len(runs))]

    params, curves, train_seconds, eval_seconds = _loop(
        step,
        params,
        jax.vmap(make_optimizer(config).init)(params),
        jnp.asarray([r.lr for r in runs], jnp.float32),
        jnp.asarray([r.gain for r in runs], jnp.float32),
        config=config,
        prefetch=_Prefetch(batches, seeds, config.steps),
        models=lambda p: [nnx.merge(graphdef, mine) for mine in unstack(p)],
        validate=validate,
        progress=progress,
        runs=len(runs),
    )
    return [
        RunResult(
            r.arm,
            r.seed,
            r.lr,
            r.gain,
            curves[j],
            mine,
            graphdef,
            compile_seconds,
            train_seconds,
            eval_seconds / len(runs),
        )
        for j, (r, mine) in enumerate(zip(runs, unstack(params), strict=True))
    ]
