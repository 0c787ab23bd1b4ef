"""The task: a synthetic 1-D localisation problem, and its noise floor.

A noisy 1-D signal holds a blurred step (an "edge") at a sub-bin position ``y`` in
``[0, num_bins - 1]``; predict ``y``. It is what a detector's box-side regression does, reduced
to one coordinate. Data are drawn on the fly with :mod:`jax.random` (:func:`make_batch`).

The generative model is known, so :func:`bayes_estimates` gives the posterior median of ``y``
(the estimator with the least expected absolute error) as a floor for every learned model's MAE.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """The synthetic edge-localisation task."""

    num_bins: int = 17
    signal_length: int = 64
    blur_range: tuple[float, float] = (0.3, 1.5)  # edge softness, in bins
    noise_std: float = 0.15


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


def target_moments(task: TaskConfig) -> tuple[float, float]:
    """Mean and standard deviation of the targets' distribution, ``y ~ U[0, num_bins - 1]``.

    What a standardised head predicts in: ``z = (y - mean) / sd``.

      >>> mean, sd = target_moments(TaskConfig())
      >>> mean, round(sd, 4)  # 16 / sqrt(12)
      (8.0, 4.6188)
    """
    top = task.num_bins - 1
    return top / 2, top / math.sqrt(12.0)


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
