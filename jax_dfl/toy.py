"""A synthetic 1-D localisation task and a toy model to compare regression losses.

The task: a noisy 1-D signal holds a blurred step (an "edge") at a sub-bin
position ``y`` in ``[0, num_bins - 1]``; predict ``y``. It is what a detector's
box-side regression does, reduced to one coordinate. Data are drawn on the fly
with :mod:`jax.random`.

The model: one MLP trunk and a swappable head:

=============  ==================  ============================================
loss           head                training signal
=============  ==================  ============================================
``l1``         scalar              ``|pred - y|``
``smooth_l1``  scalar              Huber/Smooth-L1 with ``beta = 1`` bin
``onehot``     distribution        cross-entropy on the nearest bin ``round(y)``
``dfl``        distribution        :func:`jax_dfl.distribution_focal_loss`
=============  ==================  ============================================

Distribution heads are decoded by expectation for evaluation. Training runs
several seeds at once with :func:`jax.vmap` over stacked model states and
:func:`jax.lax.scan` over steps, the NNX functional pattern (``nnx.split`` /
``nnx.merge``) that keeps Python out of the inner loop.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from jax_dfl.losses import distribution_focal_loss
from jax_dfl.nn import DistributionHead, Integral
from jax_dfl.parallel import constrain_batch

LOSSES = ("l1", "smooth_l1", "onehot", "dfl")
DISTRIBUTION_LOSSES = ("onehot", "dfl")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """The synthetic edge-localisation task."""

    num_bins: int = 17
    signal_length: int = 64
    blur_range: tuple[float, float] = (0.3, 1.5)  # edge softness, in bins
    noise_std: float = 0.15


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Model size and optimisation, shared by every loss in a comparison."""

    hidden: int = 128
    depth: int = 2
    batch_size: int = 256
    steps: int = 1500
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    eval_every: int = 50
    eval_size: int = 2048


def make_batch(key: jax.Array, batch_size: int, task: TaskConfig) -> tuple[jax.Array, jax.Array]:
    """Signals ``(batch, signal_length)`` and their edge positions ``(batch,)`` in bins."""
    k_y, k_blur, k_noise, k_sign = jax.random.split(key, 4)
    top = task.num_bins - 1
    y = jax.random.uniform(k_y, (batch_size,), minval=0.0, maxval=top)
    blur = jax.random.uniform(k_blur, (batch_size, 1), minval=task.blur_range[0], maxval=task.blur_range[1])
    # Sample points span the bin range plus half a bin each side.
    positions = jnp.linspace(-0.5, top + 0.5, task.signal_length)
    polarity = jnp.where(jax.random.bernoulli(k_sign, 0.5, (batch_size, 1)), 1.0, -1.0)
    clean = jnp.tanh((positions - y[:, None]) / blur) * polarity
    noise = task.noise_std * jax.random.normal(k_noise, clean.shape)
    return clean + noise, y


class ToyRegressor(nnx.Module):
    """MLP trunk with a scalar or a distribution head."""

    def __init__(self, loss: str, task: TaskConfig, train: TrainConfig, *, rngs: nnx.Rngs):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
        self.loss = loss
        sizes = [task.signal_length] + [train.hidden] * train.depth
        # Trunk first, so every head shares the same trunk initialisation per seed.
        self.trunk = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
        if loss in DISTRIBUTION_LOSSES:
            self.head = DistributionHead(train.hidden, num_outputs=1, num_bins=task.num_bins, rngs=rngs)
            self.integral = Integral()
        else:
            # Start scalar heads at the middle of the range, as a uniform distribution decodes to.
            middle = nnx.initializers.constant((task.num_bins - 1) / 2)
            self.head = nnx.Linear(train.hidden, 1, bias_init=middle, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        for layer in self.trunk:
            x = nnx.gelu(layer(x))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        """Raw head output: logits ``(batch, num_bins)`` or predictions ``(batch,)``."""
        out = self.head(self.features(x))
        return out[..., 0, :] if self.loss in DISTRIBUTION_LOSSES else out[..., 0]

    def predict(self, x: jax.Array) -> jax.Array:
        out = self(x)
        return self.integral(out) if self.loss in DISTRIBUTION_LOSSES else out


def training_loss(loss: str, output: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example training loss of a head's raw output against targets ``y``."""
    if loss == "l1":
        return jnp.abs(output - y)
    if loss == "smooth_l1":
        return optax.huber_loss(output, y, delta=1.0)
    if loss == "onehot":
        nearest = jnp.round(y).astype(jnp.int32)
        return optax.softmax_cross_entropy_with_integer_labels(output, nearest)
    if loss == "dfl":
        return distribution_focal_loss(output, y)
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


def make_optimizer(train: TrainConfig, learning_rate: float) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, train.warmup_steps, max(train.steps, train.warmup_steps + 1)
    )
    # Element-wise only (no global-norm clipping), so seeds stacked along an
    # axis stay independent under one optimizer.
    return optax.adam(schedule)


@dataclasses.dataclass
class RunResult:
    """One (loss, learning rate) training run over several seeds."""

    loss: str
    learning_rate: float
    seeds: list[int]
    steps: list[int]
    curves: np.ndarray  # (seeds, evals): validation MAE at each step in `steps`
    test_predictions: np.ndarray  # (seeds, test_size): final predictions on the test set
    seconds: float  # wall clock for all seeds, compilation included
    seconds_per_step: float  # after compilation, for all seeds together


def train(
    loss: str,
    seeds: Sequence[int],
    *,
    task: TaskConfig,
    train_config: TrainConfig,
    learning_rate: float | None = None,
    eval_data: tuple[jax.Array, jax.Array],
    test_inputs: jax.Array,
    mesh: Mesh | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Train one loss for several seeds at once.

    Records the validation MAE on ``eval_data`` every ``eval_every`` steps and
    returns the final model's predictions on ``test_inputs``. Seed ``s`` sets
    both the initialisation and the training data stream, so every loss sees
    the same data and the same trunk initialisation for the same seed.

    With a ``mesh`` (see :func:`jax_dfl.parallel.data_mesh`), each training
    batch is split over its devices (data parallel; parameters replicated) and
    XLA inserts the gradient all-reduce. The batch size must divide evenly.
    """
    if mesh is not None and train_config.batch_size % mesh.size:
        raise ValueError(
            f"batch_size {train_config.batch_size} is not divisible by the {mesh.size} devices of the mesh"
        )
    lr = train_config.learning_rate if learning_rate is None else learning_rate
    tx = make_optimizer(train_config, lr)

    def init(seed):
        model = ToyRegressor(loss, task, train_config, rngs=nnx.Rngs(seed))
        return nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))

    graphdef, _ = init(seeds[0])  # the same structure for every seed
    # Seeds stacked on a leading axis, trained together under vmap.
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *(init(seed)[1] for seed in seeds))
    data_keys = jnp.stack([jax.random.key(seed) for seed in seeds])
    x_eval, y_eval = eval_data

    def step(state, key):
        model, optimizer = nnx.merge(graphdef, state)
        x, y = make_batch(key, train_config.batch_size, task)
        if mesh is not None:
            x, y = constrain_batch((x, y), mesh)

        def objective(model):
            return training_loss(loss, model(x), y).mean()

        grads = nnx.grad(objective)(model)
        optimizer.update(model, grads)
        return nnx.split((model, optimizer))[1], None

    def evaluate(state, x=x_eval):
        model, _ = nnx.merge(graphdef, state)
        return model.predict(x)

    @jax.jit
    def run_chunk(state, keys, start):
        # keys: (seeds,) base keys; each step folds in its global step number.
        def one_seed(state, key):
            step_keys = jax.vmap(lambda i: jax.random.fold_in(key, start + i))(
                jnp.arange(train_config.eval_every)
            )
            state, _ = jax.lax.scan(step, state, step_keys)
            return state, evaluate(state)

        return jax.vmap(one_seed)(state, keys)

    chunks = max(1, train_config.steps // train_config.eval_every)
    curves, steps_done, timed = [], [], []
    initial = jax.vmap(evaluate)(state)
    curves.append(jnp.mean(jnp.abs(initial - y_eval), axis=-1))
    steps_done.append(0)
    t0 = time.perf_counter()
    for c in range(chunks):
        t = time.perf_counter()
        state, preds = run_chunk(state, data_keys, c * train_config.eval_every)
        mae = jnp.mean(jnp.abs(preds - y_eval), axis=-1)
        mae.block_until_ready()
        if c > 0:  # the first chunk includes compilation
            timed.append(time.perf_counter() - t)
        curves.append(mae)
        steps_done.append((c + 1) * train_config.eval_every)
        if progress is not None:
            progress(1)
    test_predictions = jax.jit(jax.vmap(lambda s: evaluate(s, test_inputs)))(state)
    seconds = time.perf_counter() - t0
    per_step = float(np.mean(timed)) / train_config.eval_every if timed else float("nan")
    return RunResult(
        loss=loss,
        learning_rate=lr,
        seeds=list(seeds),
        steps=steps_done,
        curves=np.asarray(jnp.stack(curves, axis=1)),
        test_predictions=np.asarray(test_predictions),
        seconds=seconds,
        seconds_per_step=per_step,
    )


def steps_to_reach(steps: Sequence[int], curve: np.ndarray, threshold: float) -> int | None:
    """First evaluated step whose validation MAE is at or below ``threshold``."""
    hit = np.nonzero(np.asarray(curve) <= threshold)[0]
    return int(steps[hit[0]]) if hit.size else None
