"""Turning a predicted bin distribution back into a value.

Inputs follow the input rules of ``docs/conventions.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jax_dfl import _checks


def decode(logits: ArrayLike, *, bin_values: ArrayLike | None = None) -> jax.Array:
    r"""Expected bin value of ``softmax(logits)``: :math:`\sum_i v_i\, p_i`, ``v_i = i`` by default.

    This is the "integral" step of GFL/DFL heads at inference. With
    :math:`e = \exp(x - \max_i x_i)` it is computed as

    .. math::
      \hat y = \frac{\sum_i v_i\, e_i}{\sum_i e_i},

    so it costs about what a logsumexp costs and never stores the softmax.

    .. seealso::
      :func:`jax_dfl.decode_boxes` (side logits to boxes in pixels),
      :func:`distribution_stats` (the spread around this value).

    Args:
      logits: ``(..., num_bins)`` floating logits; ``-inf`` marks a bin of
        probability 0.
      bin_values: optional strictly increasing bin positions (one per bin);
        default ``0 .. num_bins - 1``.

    Returns:
      Shape ``logits.shape[:-1]``, in bin units, with the logits' dtype
      promoted to at least float32.

    Examples:
      A distribution with 0.2 on bin 4 and 0.8 on bin 5 decodes to
      ``4 * 0.2 + 5 * 0.8 = 4.8``:

      >>> import jax.numpy as jnp, jax_dfl
      >>> p = jnp.array([0.0, 0.0, 0.0, 0.0, 0.2, 0.8])
      >>> print(f"{jax_dfl.decode(jnp.log(p)):.4f}")
      4.8000

    References:
      Li et al., `Generalized Focal Loss: Learning Qualified and Distributed
      Bounding Boxes for Dense Object Detection <https://arxiv.org/abs/2006.04388>`_,
      NeurIPS 2020.
    """
    logits, bins = _checks.arrays(
        "decode",
        logits=(logits, "float", "... num_bins"),
        bin_values=(bin_values, "real | None", "num_bins"),
        minimum={"num_bins": 2},
    )
    num_bins = logits.shape[-1]
    x = logits.astype(_checks.compute_dtype(logits.dtype))
    # The result does not depend on the shift, so no gradient flows through it.
    shift = lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    e = jnp.exp(x - shift)
    bins = _checks.bin_values(bins, x.dtype)
    if bins is None:
        bins = jnp.arange(num_bins, dtype=x.dtype)
    # Both sums, sum(v_i e_i) and sum(e_i), in one small matmul: one pass over
    # the exponentials (two separate reductions were slower on XLA:CPU).
    # HIGHEST keeps full float32 on TPU/GPU, whose default may round to bf16/TF32.
    sums = jnp.matmul(e, jnp.stack([bins, jnp.ones_like(bins)], axis=-1), precision=lax.Precision.HIGHEST)
    return sums[..., 0] / sums[..., 1]


class DistributionStats(NamedTuple):
    """Per-distribution statistics of ``softmax(logits)`` (see :func:`distribution_stats`)."""

    topk_probs: jax.Array
    """The ``k`` largest probabilities, descending, shape ``(..., k)``."""
    topk_mean: jax.Array
    """Their mean, shape ``(...)``."""
    mean: jax.Array
    """Expected bin value (what :func:`decode` returns)."""
    variance: jax.Array
    """Variance of the bin value, in bin units squared (or ``bin_values`` units)."""
    entropy: jax.Array
    """Shannon entropy in nats: 0 for a one-hot, ``log(num_bins)`` for uniform."""


def distribution_stats(
    logits: ArrayLike, *, k: int = 4, bin_values: ArrayLike | None = None
) -> DistributionStats:
    r"""Shape statistics of each predicted bin distribution: localisation confidence.

    A sharp distribution (high top-k mass, low variance and entropy) signals a
    confident box side. With :math:`p = \mathrm{softmax}(x)` and bin values
    :math:`v_i`:

    .. math::
      \mu = \sum_i v_i p_i, \qquad
      \sigma^2 = \sum_i p_i (v_i - \mu)^2, \qquad
      H = -\sum_i p_i \log p_i \quad (0 \log 0 = 0).

    GFLv2's Distribution-Guided Quality Predictor feeds the top-``k``
    probabilities and their mean of each side (``k = 4``) to a small MLP that
    predicts the box's IoU.

    Args:
      logits: ``(..., num_bins)`` floating logits.
      k: number of top probabilities (``1 <= k <= num_bins``).
      bin_values: optional bin positions for the mean and variance.

    Returns:
      A :class:`DistributionStats` of ``topk_probs (..., k)``, ``topk_mean``,
      ``mean``, ``variance`` and ``entropy`` (each of shape ``logits.shape[:-1]``).

    Examples:
      >>> import jax.numpy as jnp, numpy as np
      >>> stats = distribution_stats(jnp.log(jnp.array([0.0, 0.0, 0.0, 0.0, 0.2, 0.8])), k=2)
      >>> print(np.asarray(stats.topk_probs).round(4), f"{stats.variance:.2f}", f"{stats.entropy:.4f}")
      [0.8 0.2] 0.16 0.5004

    References:
      Li et al., `Generalized Focal Loss V2: Learning Reliable Localization Quality
      Estimation for Dense Object Detection <https://arxiv.org/abs/2011.12885>`_, CVPR 2021.
    """
    logits, bins = _checks.arrays(
        "distribution_stats",
        logits=(logits, "float", "... num_bins"),
        bin_values=(bin_values, "real | None", "num_bins"),
        minimum={"num_bins": 2},
    )
    num_bins = logits.shape[-1]
    k = _checks.positive_int("k", k)
    if k > num_bins:
        raise ValueError(
            f"k must be in [1, num_bins]; got {k}, but num_bins is {num_bins} (the last axis of logits)"
        )
    x = logits.astype(_checks.compute_dtype(logits.dtype))
    log_p = jax.nn.log_softmax(x, axis=-1)
    p = jnp.exp(log_p)
    bins = _checks.bin_values(bins, x.dtype)
    if bins is None:
        bins = jnp.arange(num_bins, dtype=x.dtype)
    mean = jnp.sum(p * bins, axis=-1)
    variance = jnp.sum(p * jnp.square(bins - mean[..., None]), axis=-1)
    # 0 log 0 = 0, with the log replaced *before* the product (a double where): with a single
    # where around p * log p, the unselected branch's 0 * -inf = NaN reaches every gradient.
    # NaN probabilities fail p == 0 and stay NaN.
    zero = p == 0
    entropy = -jnp.sum(p * jnp.where(zero, 0, log_p), axis=-1)
    topk_probs, _ = lax.top_k(p, k)
    return DistributionStats(topk_probs, jnp.mean(topk_probs, axis=-1), mean, variance, entropy)
