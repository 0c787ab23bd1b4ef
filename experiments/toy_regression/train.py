"""Training: an arm's seeds in one program, ``jax.vmap`` over seeds around ``jax.lax.scan`` over steps.

Seed ``s`` fixes the initialisation (``nnx.Rngs(s)``) and the data stream (``jax.random.key(s)``,
folded with the global step number) for every arm, so differences between arms are paired per
seed. The seeds' model and optimiser states are stacked on a leading axis, the data keys too, and
one jitted program trains them all (:func:`train`): each seed's numbers are those of the same
seed trained alone, to float tolerance (tests/test_toy_machinery.py). The NNX functional pattern
(``nnx.split`` / ``nnx.merge``) keeps Python out of the inner loop.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from jax_dfl.parallel import constrain_batch

from .model import ToyRegressor, check_loss, training_loss
from .task import TaskConfig, make_batch


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Model size, batch and schedule, shared by every arm of a comparison (the learning rate is per run)."""

    hidden: int = 128
    depth: int = 2
    batch_size: int = 256
    steps: int = 6000
    warmup_steps: int = 100


def make_optimizer(train: TrainConfig, learning_rate: float) -> optax.GradientTransformation:
    """Adam with linear warm-up to ``learning_rate`` and cosine decay to 0 at ``train.steps``."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, train.warmup_steps, max(train.steps, train.warmup_steps + 1)
    )
    # Element-wise only (no global-norm clipping), so seeds stacked along an
    # axis stay independent under one optimizer.
    return optax.adam(schedule)


def log_eval_steps(total: int, *, every: int, ratio: float) -> list[int]:
    """Evaluation steps ``0, every, 2 every, ...`` growing geometrically by ``ratio``, ending at ``total``.

    Consecutive steps differ by at most ``ratio - 1`` of the later one once past
    ``every / (ratio - 1)``, and by ``every`` before: steps-to-target read from
    them is resolved to about ``ratio - 1`` (10 %) beyond the first hundred
    steps. All are multiples of ``every``, which must divide ``total``.

    Examples:
      >>> log_eval_steps(500, every=10, ratio=1.1)[18:]
      [180, 190, 200, 220, 240, 260, 280, 300, 330, 360, 390, 420, 460, 500]
    """
    if total % every:
        raise ValueError(f"every={every} must divide total={total}")
    steps, step = [0], 0
    while step < total:
        step = min(total, max(step + every, every * math.floor(step * ratio / every)))
        steps.append(step)
    return steps


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
    seconds_per_step: float  # after compilation, for all seeds together (includes evaluations)
    test_curves: np.ndarray | None = None  # (seeds, evals): test MAE at `steps`, given test targets
    state: Any = None  # the final model and optimiser states, stacked over seeds


@functools.lru_cache(maxsize=64)
def _trainer(
    loss: str,
    seeds: tuple[int, ...],
    *,
    task: TaskConfig,
    train_config: TrainConfig,
    learning_rate: float,
    chunk: int,
    mesh: Mesh | None,
    mode: str = "vmap",
):
    """Stacked initial per-seed state, data keys, jitted ``run(state, keys, start) -> state`` and
    ``predict(state, x)``.

    ``mode`` "vmap" batches the seeds in one program (``jax.vmap``); "map" runs them one after
    another inside one program (``jax.lax.map``), for the benchmark. Cached: the arrays are
    immutable and the functions pure, so the timing pass reuses the training runs' compiled steps.
    """
    if mesh is not None and train_config.batch_size % mesh.size:
        raise ValueError(
            f"batch_size {train_config.batch_size} is not divisible by the {mesh.size} devices of the mesh"
        )
    if mode not in ("vmap", "map"):
        raise ValueError(f"mode must be 'vmap' or 'map'; got {mode!r}")
    check_loss(loss)
    tx = make_optimizer(train_config, learning_rate)

    def init(seed):
        model = ToyRegressor(
            loss, task, hidden=train_config.hidden, depth=train_config.depth, rngs=nnx.Rngs(seed)
        )
        return nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))

    graphdef, _ = init(seeds[0])  # the same structure for every seed
    # Seeds stacked on a leading axis: parameters, optimiser state and data keys.
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *(init(seed)[1] for seed in seeds))
    data_keys = jnp.stack([jax.random.key(seed) for seed in seeds])

    def step(state, key):
        model, optimizer = nnx.merge(graphdef, state)
        x, y = make_batch(key, train_config.batch_size, task)
        if mesh is not None:
            x, y = constrain_batch((x, y), mesh)

        def objective(model):
            return training_loss(loss, model(x), model.targets(y)).mean()

        grads = nnx.grad(objective)(model)
        optimizer.update(model, grads)
        return nnx.split((model, optimizer))[1], None

    def evaluate(state, x):
        model, _ = nnx.merge(graphdef, state)
        return model.predict(x)

    def one_seed(state, key, start):
        # Each step folds its global step number into the seed's key, so the data stream does
        # not depend on how the steps are chunked.
        step_keys = jax.vmap(lambda i: jax.random.fold_in(key, start + i))(jnp.arange(chunk))
        return jax.lax.scan(step, state, step_keys)[0]

    @jax.jit
    def run(state, keys, start):
        if mode == "vmap":
            return jax.vmap(one_seed, in_axes=(0, 0, None))(state, keys, start)
        return jax.lax.map(lambda sk: one_seed(*sk, start), (state, keys))

    predict = jax.jit(jax.vmap(evaluate, in_axes=(0, None)))
    return state, data_keys, run, predict


def chunk_for(eval_steps: Sequence[int]) -> int:
    """Steps per compiled chunk: the largest size that lands on every evaluation step."""
    return math.gcd(*eval_steps[1:])


def train(
    loss: str,
    seeds: Sequence[int],
    *,
    task: TaskConfig,
    train_config: TrainConfig,
    learning_rate: float,
    eval_steps: Sequence[int],
    eval_data: tuple[jax.Array, jax.Array],
    test_inputs: jax.Array,
    test_targets: jax.Array | None = None,
    mesh: Mesh | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Train one loss for several seeds at once, in one vmapped program.

    Records the validation MAE on ``eval_data`` at ``eval_steps`` (e.g. :func:`log_eval_steps`;
    step 0 is always included) and returns the final model's predictions on ``test_inputs``;
    with ``test_targets``, the test MAE at the same steps too. With a ``mesh`` (see
    :func:`jax_dfl.parallel.data_mesh`), each training batch is split over its devices (data
    parallel; parameters replicated) and XLA inserts the gradient all-reduce; the batch size must
    divide evenly. ``progress`` is called with the number of steps done after each chunk.
    """
    eval_steps = sorted({int(s) for s in eval_steps} | {0})
    if len(eval_steps) < 2:
        raise ValueError("eval_steps needs a step after 0")
    chunk = chunk_for(eval_steps)
    x_eval, y_eval = eval_data
    state, keys, run, predict = _trainer(
        loss,
        tuple(seeds),
        task=task,
        train_config=train_config,
        learning_rate=learning_rate,
        chunk=chunk,
        mesh=mesh,
    )

    def mae(state, x, y):
        return jnp.mean(jnp.abs(predict(state, x) - y), axis=-1)

    def record(state):
        curves.append(mae(state, x_eval, y_eval))
        if test_targets is not None:
            test_curves.append(mae(state, test_inputs, test_targets))

    curves, test_curves, timed = [], [], []
    record(state)
    wanted = set(eval_steps)
    t0 = time.perf_counter()
    for start in range(0, eval_steps[-1], chunk):
        t = time.perf_counter()
        state = run(state, keys, start)
        if start + chunk in wanted:
            record(state)
        jax.block_until_ready(state)
        if start > 0:  # the first chunk includes compilation
            timed.append(time.perf_counter() - t)
        if progress is not None:
            progress(chunk)
    test_predictions = predict(state, test_inputs)
    seconds = time.perf_counter() - t0
    per_step = float(np.mean(timed)) / chunk if timed else float("nan")
    return RunResult(
        loss=loss,
        learning_rate=learning_rate,
        seeds=list(seeds),
        steps=eval_steps,
        curves=np.asarray(jnp.stack(curves, axis=1)),
        test_predictions=np.asarray(test_predictions),
        seconds=seconds,
        seconds_per_step=per_step,
        test_curves=np.asarray(jnp.stack(test_curves, axis=1)) if test_curves else None,
        state=state,
    )


def time_steps(
    losses: Sequence[str],
    seeds: Sequence[int],
    *,
    task: TaskConfig,
    train_config: TrainConfig,
    learning_rates: dict[str, float],
    chunk: int,
    rounds: int,
    chunks_per_round: int = 5,
    mesh: Mesh | None = None,
) -> dict[str, dict]:
    """Seconds per training step of each loss (all seeds together, as in :func:`train`), round-robin.

    Training runs share the machine with whatever else runs on it at that moment, so their own
    timings are not comparable across losses. Here every loss is compiled (or found compiled,
    with the same ``chunk`` and learning rate as a :func:`train` call) first, then each round
    runs ``chunks_per_round`` chunks of ``chunk`` steps of every loss in turn; the median over
    ``rounds`` is reported, with the spread.
    """
    runners = {}
    for loss in losses:
        state, keys, run, _ = _trainer(
            loss,
            tuple(seeds),
            task=task,
            train_config=train_config,
            learning_rate=learning_rates[loss],
            chunk=chunk,
            mesh=mesh,
        )
        runners[loss] = [jax.block_until_ready(run(state, keys, 0)), keys, run]  # compiled, warm
    times: dict[str, list[float]] = {loss: [] for loss in losses}
    steps = chunk * chunks_per_round
    for r in range(rounds):
        for loss in losses:
            state, keys, run = runners[loss]
            t = time.perf_counter()
            for c in range(chunks_per_round):
                state = run(state, keys, (r * chunks_per_round + c + 1) * chunk)
            jax.block_until_ready(state)
            times[loss].append((time.perf_counter() - t) / steps)
            runners[loss][0] = state
    return {
        loss: {
            "median_s_per_step": float(np.median(t)),
            "min_s_per_step": float(np.min(t)),
            "max_s_per_step": float(np.max(t)),
            "rounds": rounds,
            "steps_per_round": steps,
            "seeds": len(seeds),
        }
        for loss, t in times.items()
    }
