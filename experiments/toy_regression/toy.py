"""A synthetic 1-D localisation task and a toy model to compare regression losses.

The task: a noisy 1-D signal holds a blurred step (an "edge") at a sub-bin
position ``y`` in ``[0, num_bins - 1]``; predict ``y``. It is what a detector's
box-side regression does, reduced to one coordinate. Data are drawn on the fly
with :mod:`jax.random`.

The model: one MLP trunk and a swappable head:

==================  ============  ================================================
loss                head          training signal
==================  ============  ================================================
``l1``              scalar        ``|pred - y|``
``smooth_l1``       scalar        Huber/Smooth-L1 with ``beta = 1`` bin
``l2``              scalar        ``(pred - y)^2 / 2`` (MSE)
``dist_l1``         distribution  ``|decode(logits) - y|``: the head without a target distribution
``onehot``          distribution  cross-entropy on the nearest bin ``round(y)``
``hl_gauss_<s>``    distribution  cross-entropy on :func:`jax_dfl.hl_gauss` with ``sigma = s``
``dfl``             distribution  :func:`jax_dfl.distribution_focal_loss`
==================  ============  ================================================

Distribution heads are decoded by expectation for evaluation. The task's
generative model is known, so :func:`bayes_estimates` gives the posterior
median of ``y`` (the estimator with the least expected absolute error) as a
floor for every learned model's MAE. Training runs
several seeds at once with :func:`jax.vmap` over stacked model states and
:func:`jax.lax.scan` over steps, the NNX functional pattern (``nnx.split`` /
``nnx.merge``) that keeps Python out of the inner loop.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from jax.typing import ArrayLike

from jax_dfl.decoding import decode
from jax_dfl.histogram_losses import hl_gauss_loss
from jax_dfl.losses import distribution_focal_loss
from jax_dfl.nn import DistributionHead, Integral
from jax_dfl.parallel import constrain_batch

# The default arms. hl_gauss takes any sigma as ``hl_gauss_<sigma>`` (in bins): 0.75 is
# Farebrother et al.'s recommendation; 0.5 is the narrowest whose decoded mean is still
# unbiased (to 2e-3 bins) between bins, about as wide as the two-hot target (std <= 0.5).
SCALAR_LOSSES = ("l1", "smooth_l1", "l2")
DISTRIBUTION_LOSSES = ("dist_l1", "onehot", "hl_gauss_0.5", "hl_gauss_0.75", "dfl")
LOSSES = SCALAR_LOSSES + DISTRIBUTION_LOSSES
_HL_GAUSS = re.compile(r"hl_gauss_(\d+(?:\.\d*)?(?:e-?\d+)?)$")


def hl_gauss_sigma(loss: str) -> float | None:
    """``sigma`` of an ``hl_gauss_<sigma>`` arm, else None."""
    match = _HL_GAUSS.match(loss)
    return float(match.group(1)) if match else None


def check_loss(loss: str) -> str:
    """A known arm: one of :data:`LOSSES` or ``hl_gauss_<sigma>`` with sigma > 0."""
    sigma = hl_gauss_sigma(loss)
    if loss in LOSSES or (sigma is not None and sigma > 0):
        return loss
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES} or hl_gauss_<sigma>")


def is_distribution(loss: str) -> bool:
    """Whether an arm uses the distribution head (decoded by expectation)."""
    return check_loss(loss) not in SCALAR_LOSSES


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
        self.loss = check_loss(loss)
        sizes = [task.signal_length] + [train.hidden] * train.depth
        # Trunk first, so every head shares the same trunk initialisation per seed.
        self.trunk = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
        if is_distribution(loss):
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
        return out[..., 0, :] if is_distribution(self.loss) else out[..., 0]

    def predict(self, x: jax.Array) -> jax.Array:
        out = self(x)
        return self.integral(out) if is_distribution(self.loss) else out


def training_loss(loss: str, output: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example training loss of a head's raw output against targets ``y``."""
    if loss == "l1":
        return jnp.abs(output - y)
    if loss == "smooth_l1":
        return optax.huber_loss(output, y, delta=1.0)
    if loss == "l2":
        return 0.5 * jnp.square(output - y)
    if loss == "dist_l1":
        # The distribution head trained only through its expectation: no target distribution.
        return jnp.abs(decode(output) - y)
    if loss == "onehot":
        nearest = jnp.round(y).astype(jnp.int32)
        return optax.softmax_cross_entropy_with_integer_labels(output, nearest)
    if loss == "dfl":
        return distribution_focal_loss(output, y)
    sigma = hl_gauss_sigma(check_loss(loss))
    if sigma is not None:
        return hl_gauss_loss(output, y, sigma=sigma)
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
    seconds_per_step: float  # after compilation, for all seeds together (includes evaluations)
    test_curves: np.ndarray | None = None  # (seeds, evals): test MAE at `steps`, given test targets


def log_eval_steps(total: int, *, every: int = 10, ratio: float = 1.1) -> list[int]:
    """Evaluation steps ``0, every, 2 every, ...`` growing geometrically by ``ratio``, ending at ``total``.

    Consecutive steps differ by at most ``ratio - 1`` of the later one once past
    ``every / (ratio - 1)``, and by ``every`` before: steps-to-target read from
    them is resolved to about ``ratio - 1`` (10 %) beyond the first hundred
    steps. All are multiples of ``every``, which must divide ``total``.

    Examples:
      >>> log_eval_steps(500)[18:]
      [180, 190, 200, 220, 240, 260, 280, 300, 330, 360, 390, 420, 460, 500]
    """
    if total % every:
        raise ValueError(f"every={every} must divide total={total}")
    steps, step = [0], 0
    while step < total:
        step = min(total, max(step + every, every * math.floor(step * ratio / every)))
        steps.append(step)
    return steps


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
):
    """Stacked initial per-seed state, data keys, jitted ``run(state, keys, start) -> state`` and
    ``predict(state, x)``.

    Cached: the arrays are immutable and the functions pure, so the timing pass
    reuses the training runs' compiled steps instead of compiling them again.
    """
    if mesh is not None and train_config.batch_size % mesh.size:
        raise ValueError(
            f"batch_size {train_config.batch_size} is not divisible by the {mesh.size} devices of the mesh"
        )
    check_loss(loss)
    tx = make_optimizer(train_config, learning_rate)

    def init(seed):
        model = ToyRegressor(loss, task, train_config, rngs=nnx.Rngs(seed))
        return nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))

    graphdef, _ = init(seeds[0])  # the same structure for every seed
    # Seeds stacked on a leading axis, trained together under vmap.
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *(init(seed)[1] for seed in seeds))
    data_keys = jnp.stack([jax.random.key(seed) for seed in seeds])

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

    def evaluate(state, x):
        model, _ = nnx.merge(graphdef, state)
        return model.predict(x)

    @jax.jit
    def run(state, keys, start):
        # keys: (seeds,) base keys; each step folds in its global step number, so the
        # data stream does not depend on how the steps are chunked.
        def one_seed(state, key):
            step_keys = jax.vmap(lambda i: jax.random.fold_in(key, start + i))(jnp.arange(chunk))
            return jax.lax.scan(step, state, step_keys)[0]

        return jax.vmap(one_seed)(state, keys)

    predict = jax.jit(jax.vmap(evaluate, in_axes=(0, None)))
    return state, data_keys, run, predict


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
    eval_steps: Sequence[int] | None = None,
    test_targets: jax.Array | None = None,
) -> RunResult:
    """Train one loss for several seeds at once.

    Records the validation MAE on ``eval_data`` every ``eval_every`` steps (or
    at ``eval_steps``, e.g. :func:`log_eval_steps`) and returns the final
    model's predictions on ``test_inputs``. Seed ``s`` sets both the
    initialisation and the training data stream, so every loss sees the same
    data and the same trunk initialisation for the same seed.

    With a ``mesh`` (see :func:`jax_dfl.parallel.data_mesh`), each training
    batch is split over its devices (data parallel; parameters replicated) and
    XLA inserts the gradient all-reduce. The batch size must divide evenly.
    ``progress`` is called with the number of steps done after each chunk.
    With ``test_targets``, the test MAE is recorded at the same steps too.
    """
    lr = train_config.learning_rate if learning_rate is None else learning_rate
    total = train_config.steps
    if eval_steps is None:
        every = train_config.eval_every
        eval_steps = [every * c for c in range(max(1, total // every) + 1)]
    eval_steps = sorted(set(int(s) for s in eval_steps) | {0})
    # Steps run in chunks of the largest size that lands on every evaluation step.
    chunk = math.gcd(*eval_steps[1:]) if len(eval_steps) > 1 else total
    x_eval, y_eval = eval_data
    state, keys, run, predict = _trainer(
        loss, tuple(seeds), task=task, train_config=train_config, learning_rate=lr, chunk=chunk, mesh=mesh
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
        learning_rate=lr,
        seeds=list(seeds),
        steps=eval_steps,
        curves=np.asarray(jnp.stack(curves, axis=1)),
        test_predictions=np.asarray(test_predictions),
        seconds=seconds,
        seconds_per_step=per_step,
        test_curves=np.asarray(jnp.stack(test_curves, axis=1)) if test_curves else None,
    )


def time_steps(
    losses: Sequence[str],
    seeds: Sequence[int],
    *,
    task: TaskConfig,
    train_config: TrainConfig,
    learning_rates: dict[str, float] | None = None,
    chunk: int = 10,
    chunks_per_round: int = 5,
    rounds: int = 7,
    mesh: Mesh | None = None,
) -> dict[str, dict]:
    """Seconds per training step of each loss, measured round-robin.

    Training runs share the machine with whatever else runs on it at that
    moment, so their own timings are not comparable across losses. Here every
    loss is compiled (or found compiled, with the same ``chunk`` and learning
    rate as a :func:`train` call) first, then each round runs
    ``chunks_per_round`` chunks of ``chunk`` steps of every loss in turn (all
    seeds together, as in :func:`train`); the median over ``rounds`` is
    reported, with the spread.
    """
    learning_rates = learning_rates or {}
    runners = {}
    for loss in losses:
        lr = learning_rates.get(loss, train_config.learning_rate)
        state, keys, run, _ = _trainer(
            loss, tuple(seeds), task=task, train_config=train_config, learning_rate=lr, chunk=chunk, mesh=mesh
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


def steps_to_reach(steps: Sequence[int], curve: np.ndarray, threshold: float) -> int | None:
    """First evaluated step whose validation MAE is at or below ``threshold``."""
    hit = np.nonzero(np.asarray(curve) <= threshold)[0]
    return int(steps[hit[0]]) if hit.size else None


def area_under_curve(steps: Sequence[int], curve: np.ndarray) -> float:
    """Validation MAE averaged over training: ``(1 / T) * integral_0^T MAE(step) d step``, by trapezoids.

    The learning-rate criterion for convergence speed: a curve that gets low
    early scores lower. Trapezoids over the step itself (not its log), so
    unevenly spaced evaluations are weighted by the steps they stand for.

    Examples:
      >>> print(round(area_under_curve([0, 10, 30], np.array([1.0, 0.5, 0.5])), 4))  # (7.5 + 10) / 30
      0.5833
    """
    steps = np.asarray(steps, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    widths = np.diff(steps)
    return float(np.sum(widths * 0.5 * (curve[1:] + curve[:-1])) / (steps[-1] - steps[0]))


class BayesEstimates(NamedTuple):
    """Posterior summaries of ``y`` per signal under the task's generative model."""

    median: np.ndarray
    """Posterior median: the estimator with the least expected absolute error."""
    mean: np.ndarray
    """Posterior mean: the least expected squared error."""
    mode: np.ndarray
    """Posterior mode, i.e. the maximum of the likelihood marginalised over blur and polarity."""
    mass_outside: np.ndarray
    """Coarse-grid posterior mass outside the fine window (should be ~0)."""
    grid: np.ndarray
    """``(signals, points)`` the fine grid of ``y`` values around each signal's mode."""
    posterior: np.ndarray
    """``(signals, points)`` posterior probabilities on ``grid`` (0 outside the range)."""

    def expectation(self, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``E[fn(y) | signal]`` per signal, e.g. the mean of a soft label of ``y``."""
        return np.sum(self.posterior * fn(self.grid), axis=-1)


def grid_median(ys: jax.Array, post: jax.Array, step: float) -> jax.Array:
    """Median of a distribution given as probabilities ``post`` on an even grid ``ys`` of spacing ``step``.

    Each point's mass is spread uniformly over its cell ``[ys[i] - step / 2, ys[i] + step / 2]``,
    so the CDF is linear within a cell and reaches ``cdf[i]`` at the cell's right edge.

    Examples:
      >>> ys = jnp.arange(5.0)  # mass 0.2 each: the CDF crosses 0.5 in the middle of the middle cell
      >>> print(float(grid_median(ys, jnp.full(5, 0.2), 1.0)))
      2.0
    """
    cdf = jnp.cumsum(post)
    i = jnp.clip(jnp.searchsorted(cdf, 0.5), 0, ys.shape[0] - 1)  # the cell where the CDF crosses 0.5
    below = jnp.where(i > 0, cdf[i - 1], 0.0)
    frac = (0.5 - below) / jnp.maximum(post[i], 1e-30)
    return ys[i] - step / 2 + jnp.clip(frac, 0, 1) * step


@functools.lru_cache(maxsize=8)
def _bayes_batch(task: TaskConfig, coarse_step: float, fine_step: float, window: float, blur_points: int):
    """The jitted per-batch posterior summaries, built once per configuration (one compilation)."""
    top = task.num_bins - 1
    positions = jnp.linspace(-0.5, top + 0.5, task.signal_length)
    lo, hi = task.blur_range
    blurs = lo + (hi - lo) * (jnp.arange(blur_points) + 0.5) / blur_points
    var = task.noise_std**2

    coarse = jnp.arange(0.0, top + coarse_step / 2, coarse_step)
    offsets = jnp.arange(-window, window + fine_step / 2, fine_step)

    def one(x):
        def ll(ys):
            # (len(ys),) log p(x | y) up to a constant, marginalised over blur and polarity:
            # ||x - s c||^2 = ||x||^2 - 2 s <x, c> + ||c||^2 for polarity s = +-1.
            clean = jnp.tanh((positions - ys[:, None, None]) / blurs[None, :, None])
            cross = jnp.einsum("ybj,j->yb", clean, x) / var
            norm = jnp.sum(clean * clean, axis=-1) / (2 * var)
            return jax.nn.logsumexp(jnp.logaddexp(cross, -cross) - norm, axis=-1)

        lc = ll(coarse)
        centre = coarse[jnp.argmax(lc)]
        ys = centre + offsets
        inside = (ys >= 0) & (ys <= top)
        lf = jnp.where(inside, ll(jnp.clip(ys, 0, top)), -jnp.inf)
        post = jax.nn.softmax(lf)
        median = grid_median(ys, post, fine_step)
        coarse_post = jax.nn.softmax(lc)
        outside = jnp.sum(jnp.where(jnp.abs(coarse - centre) > window - coarse_step, coarse_post, 0))
        ys = jnp.clip(ys, 0, top)
        return median, jnp.sum(post * ys), ys[jnp.argmax(lf)], outside, ys, post

    return jax.jit(lambda xs: jax.lax.map(one, xs))


def bayes_estimates(
    signals: ArrayLike,
    task: TaskConfig,
    *,
    coarse_step: float = 0.05,
    fine_step: float = 0.004,
    window: float = 1.0,
    blur_points: int = 24,
    batch: int = 64,
) -> BayesEstimates:
    """Posterior of ``y`` for each signal under :func:`make_batch`'s generative model.

    The model: ``y ~ U[0, num_bins - 1]``, ``blur ~ U[blur_range]``, polarity
    ``+-1`` with equal odds, and ``x_j = polarity * tanh((t_j - y) / blur) + noise_std * N(0, 1)``.
    The likelihood of ``y`` is marginalised over polarity exactly and over
    blur by the midpoint rule on ``blur_points`` cells; the posterior is
    evaluated on a coarse grid over the whole range, then on a fine grid
    (``fine_step``) within ``window`` bins of the coarse mode, and the median
    is read from the fine grid's CDF with each point's mass spread over its cell (:func:`grid_median`).

    The posterior median minimises the expected absolute error given the
    signal, so its MAE on a test set is the floor that any predictor of ``y``
    from the signal can reach on average (up to sampling noise of the set).
    :meth:`BayesEstimates.expectation` gives what a loss's own optimum
    predicts: a cross-entropy against a soft label ``q(y)`` is minimised by
    ``p = E[q(y) | x]``, which decodes to ``E[mean of q(y) | x]``.
    """
    run = _bayes_batch(task, coarse_step, fine_step, window, blur_points)
    signals = jnp.asarray(signals, jnp.float32)
    n = signals.shape[0]
    pad = (-n) % batch
    padded = jnp.concatenate([signals, jnp.zeros((pad, signals.shape[1]), signals.dtype)])
    outs = [run(padded[i : i + batch]) for i in range(0, n + pad, batch)]
    fields = (np.concatenate([np.asarray(o[k]) for o in outs])[:n] for k in range(6))
    return BayesEstimates(*fields)
