"""HL-Gauss: cross-entropy against a Gaussian histogram of the target.

The "histogram loss" of Imani & White (2018) with a Gaussian, as used by
Farebrother et al. (2024) to train value functions by classification. Where
DFL's target is the two-hot distribution (all mass on the two bins around
``y``), HL-Gauss's is the mass that ``N(y, sigma^2)`` puts in each bin's
interval, renormalised over the support.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.typing import ArrayLike

from jax_dfl import _checks


def _edges(num_bins: int, bin_values: jax.Array | None, dtype) -> jax.Array:
    """``num_bins + 1`` interval edges: midway between bin values, half a spacing beyond the ends."""
    if bin_values is None:
        return jnp.arange(num_bins + 1, dtype=dtype) - 0.5
    mid = 0.5 * (bin_values[1:] + bin_values[:-1])
    first = bin_values[0] - 0.5 * (bin_values[1] - bin_values[0])
    last = bin_values[-1] + 0.5 * (bin_values[-1] - bin_values[-2])
    return jnp.concatenate([first[None], mid, last[None]])


def _hl_gauss_probs(targets: jax.Array, edges: jax.Array, sigma) -> jax.Array:
    """``(..., num_bins)`` normalised bin masses.

    Each element is its own two erfs of constants and its row's target (no
    slicing of a per-edge array along the bins axis), so XLA fuses the whole
    label into whatever consumes it instead of storing a ``(rows, bins)`` array.
    """
    # Clipped into the support, as DFL does: far outside it every erf saturates to
    # the same +-1 and the normaliser would be 0.
    low, high = edges[0] + 0.5 * (edges[1] - edges[0]), edges[-1] - 0.5 * (edges[-1] - edges[-2])
    # +-inf is NaN here, not clipped to a confident end bin (the input rules' non-finite rule).
    targets = jnp.clip(jnp.where(jnp.isinf(targets), jnp.nan, targets), low, high)[..., None]
    scale = jnp.asarray(sigma, targets.dtype) * math.sqrt(2.0)
    upper = lax.erf((edges[1:] - targets) / scale)  # 2 Phi - 1 at each bin's upper edge
    lower = lax.erf((edges[:-1] - targets) / scale)
    # Renormalise over the support: the Gaussian's mass beyond the outer edges is dropped.
    total = lax.erf((edges[-1] - targets) / scale) - lax.erf((edges[0] - targets) / scale)
    return (upper - lower) / total


def _cross_entropy(logits: jax.Array, targets: jax.Array, sigma, edges: jax.Array) -> jax.Array:
    """``sum_i q_i (m - x_i) + log sum_i exp(x_i - m)`` per row, ``m`` the row max."""
    row_max = jnp.max(logits, axis=-1, keepdims=True)
    shift = lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0))
    q = _hl_gauss_probs(targets, edges, sigma)
    # The label puts weight on every bin; capping m - x keeps a -inf logit where it puts
    # none (q_i = 0 after underflow) at 0 instead of 0 * inf = NaN. A single use of q,
    # so XLA fuses the label into this reduction.
    weighted = q * jnp.minimum(shift - logits, jnp.finfo(logits.dtype).max / 2)
    return jnp.sum(weighted, axis=-1) + jnp.log(jnp.sum(jnp.exp(logits - shift), axis=-1))


@jax.custom_jvp
def _hl_gauss_ce(logits, targets, sigma, edges):
    return _cross_entropy(logits, targets, sigma, edges)


def _hl_gauss_ce_jvp(primals, tangents):
    # d loss = (softmax - q) . d logits. The value is computed from a copy of the logits
    # behind an optimization barrier: otherwise XLA shares the label's erfs between
    # the value and the gradient and stores them as a (rows, bins) array; apart, each
    # fuses into its own pass and the gradient is written straight from exp(x - m).
    logits, targets, sigma, edges = primals
    d_logits, d_targets, d_sigma, _ = tangents
    loss = _cross_entropy(lax.optimization_barrier(logits), targets, sigma, edges)
    d_loss = jnp.zeros_like(loss)
    if not isinstance(d_logits, SymbolicZero):
        row_max = jnp.max(logits, axis=-1, keepdims=True)
        shift = jnp.where(jnp.isfinite(row_max), row_max, 0)
        exp_shifted = jnp.exp(logits - shift)
        probs = exp_shifted / jnp.sum(exp_shifted, axis=-1, keepdims=True)
        grad = probs - _hl_gauss_probs(targets, edges, sigma)
        d_loss += jnp.sum(grad * d_logits, axis=-1)
    if not (isinstance(d_targets, SymbolicZero) and isinstance(d_sigma, SymbolicZero)):
        # Derivatives through the label itself (rarely wanted): plain forward mode.
        d_targets = jnp.zeros_like(targets) if isinstance(d_targets, SymbolicZero) else d_targets
        d_sigma = jnp.zeros_like(sigma) if isinstance(d_sigma, SymbolicZero) else d_sigma
        _, extra = jax.jvp(
            lambda t, s: _cross_entropy(logits, t, s, edges), (targets, sigma), (d_targets, d_sigma)
        )
        d_loss += extra
    return loss, d_loss


_hl_gauss_ce.defjvp(_hl_gauss_ce_jvp, symbolic_zeros=True)


def hl_gauss(
    targets: ArrayLike,
    num_bins: int,
    *,
    sigma: float | ArrayLike,
    bin_values: ArrayLike | None = None,
) -> jax.Array:
    r"""The HL-Gauss soft label: a Gaussian's mass in each bin, renormalised.

    Bin ``i`` owns the interval ``[e_i, e_{i+1})`` whose edges lie midway
    between neighbouring bin values, the outer two half a spacing beyond the
    end bins (``i - 1/2`` and ``i + 1/2`` for the default integer bins). With
    :math:`\Phi` the standard normal CDF,

    .. math::
      q_i(y) = \frac{\Phi((e_{i+1} - y)/\sigma) - \Phi((e_i - y)/\sigma)}
                    {\Phi((e_K - y)/\sigma) - \Phi((e_0 - y)/\sigma)},

    computed by differences of ``erf``. As ``sigma -> 0`` it tends to the
    one-hot of the bin containing ``y``.

    .. warning::
      Decode bias: the expectation ``sum_i v_i q_i`` is ``y`` only approximately.
      Away from the ends, for integer bins, the error oscillates with the
      fractional part of ``y`` with an amplitude that falls like
      :math:`e^{-2\pi^2\sigma^2}` (about 2e-3 bins at ``sigma = 0.5``, 5e-6
      at ``sigma = 0.75``; at ``sigma = 0.25`` it is 0.09 bins, a
      staircase towards the bin centres). Within about ``2 sigma`` of either end
      the truncation pulls the expectation towards the middle: at ``y = 0``
      with ``sigma = 0.75`` it is 0.37 bins, not 0. Targets there are learned
      with that bias unless the support extends beyond the targets' range.

    .. seealso::
      :func:`hl_gauss_loss` (the cross-entropy against this label);
      :func:`jax_dfl.two_hot` (DFL's label).

    Args:
      targets: targets in bin units (or in the units of ``bin_values``).
      num_bins: number of bins (a Python int, at least 2).
      sigma: the Gaussian's standard deviation in target units, > 0.
        Farebrother et al. recommend 0.75 bin spacings.
      bin_values: optional strictly increasing bin positions, one per bin;
        default ``0 .. num_bins - 1``.

    Returns:
      Shape ``targets.shape + (num_bins,)``, float32 (float64 for float64
      targets). Rows sum to 1; targets outside the bin range are clipped into
      it; NaN targets give NaN rows.

    Examples:
      >>> import numpy as np, jax_dfl as hg
      >>> q = hg.hl_gauss(2.0, 5, sigma=0.75)
      >>> print(np.asarray(q).round(3), f"{float(q.sum()):.3f}")
      [0.022 0.23  0.495 0.23  0.022] 1.000
      >>> print(np.asarray(hg.hl_gauss(2.3, 5, sigma=1e-4)))  # sigma -> 0: one-hot
      [0. 0. 1. 0. 0.]

    References:
      Imani & White, `Improving Regression Performance with Distributional
      Losses <https://proceedings.mlr.press/v80/imani18a.html>`_, ICML 2018.
      Farebrother et al., `Stop Regressing: Training Value Functions via
      Classification for Scalable Deep RL <https://arxiv.org/abs/2403.03950>`_,
      ICML 2024.
    """
    _checks.positive("sigma", sigma)  # may be traced (a schedule under jit): checked when concrete
    num_bins = _checks.check_num_bins(num_bins)
    targets, bin_values = _checks.arrays(
        "hl_gauss",
        targets=(targets, "real", "..."),
        bin_values=(bin_values, "real | None", "num_bins"),
        dims={"num_bins": num_bins},
    )
    targets = targets.astype(_checks.compute_dtype(targets.dtype))
    bin_values = _checks.bin_values(bin_values, targets.dtype)
    return _hl_gauss_probs(targets, _edges(num_bins, bin_values, targets.dtype), sigma)


def hl_gauss_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    sigma: float | ArrayLike,
    where: ArrayLike | None = None,
    bin_values: ArrayLike | None = None,
) -> jax.Array:
    r"""Cross-entropy between :func:`hl_gauss` ``(targets)`` and ``softmax(logits)``, unreduced.

    .. math::
      \mathcal{L}(x, y) = -\sum_i q_i(y) \log p_i
        = \sum_i q_i(y)\,(m - x_i) + \log \sum_i e^{x_i - m},
      \qquad m = \max_i x_i,

    using :math:`\sum_i q_i = 1`. Written with the shift ``m`` inside the
    weighted sum, not as ``logsumexp(x) - sum_i q_i x_i``: the latter cancels
    two numbers of the logits' magnitude and loses the loss to rounding for
    large logit offsets. Its gradient with respect to the logits is
    ``softmax(x) - q``, a custom JVP rule (reverse and forward mode work);
    gradients with respect to the targets and ``sigma`` are the formula's
    own. The soft label is an elementwise function of the targets recomputed
    where it is used, so XLA fuses it into the reductions: no ``(rows, bins)``
    temporary is stored beyond what ``logsumexp``'s own gradient keeps.

    Its arguments follow the rules of :func:`jax_dfl.distribution_focal_loss`
    (see :doc:`/conventions`): ``targets.shape == logits.shape[:-1]`` exactly,
    masked elements give loss 0 and gradient 0 even when their logits or
    targets are NaN or infinite, bf16/f16 are computed in float32.

    .. warning::
      Targets outside ``[v_0, v_{K-1}]`` are clipped into it (as in DFL); NaN
      targets give a NaN loss. The label gives every bin some weight, so a
      ``-inf`` logit makes the loss huge (it is treated as the most negative
      float) unless its weight underflowed to 0, where it contributes 0.

    Args:
      logits: ``(..., num_bins)`` floating logits.
      targets: targets in bin units, shape exactly ``logits.shape[:-1]``.
      sigma: the Gaussian's standard deviation in target units, > 0 (checked
        when concrete).
      where: optional boolean mask of shape ``logits.shape[:-1]``.
      bin_values: optional strictly increasing bin positions, one per bin.

    Returns:
      The loss per element, shape ``logits.shape[:-1]``, in the logits' dtype
      promoted to at least float32.

    Examples:
      >>> import jax, jax.numpy as jnp, jax_dfl as hg
      >>> logits = jnp.log(hg.hl_gauss(jnp.array([3.2]), 8, sigma=0.75))
      >>> loss = hg.hl_gauss_loss(logits, jnp.array([3.2]), sigma=0.75)
      >>> grad = jax.grad(lambda x: hg.hl_gauss_loss(x, jnp.array([3.2]), sigma=0.75).sum())(logits)
      >>> print(f"{float(loss[0]):.4f}", bool(jnp.abs(grad).max() < 1e-6))  # the entropy; p = q
      1.2003 True

    References:
      Imani & White, `Improving Regression Performance with Distributional
      Losses <https://proceedings.mlr.press/v80/imani18a.html>`_, ICML 2018.
      Farebrother et al., `Stop Regressing: Training Value Functions via
      Classification for Scalable Deep RL <https://arxiv.org/abs/2403.03950>`_,
      ICML 2024.
    """
    _checks.positive("sigma", sigma)  # may be traced (a schedule under jit): checked when concrete
    logits, targets, where, bin_values = _checks.arrays(
        "hl_gauss_loss",
        logits=(logits, "float", "... num_bins"),
        targets=(targets, "real", "..."),
        where=(where, "bool | None", "..."),
        bin_values=(bin_values, "real | None", "num_bins"),
        minimum={"num_bins": 2},
    )
    num_bins = logits.shape[-1]
    dtype = _checks.compute_dtype(logits.dtype)
    logits = logits.astype(dtype)
    targets = targets.astype(dtype)
    bin_values = _checks.bin_values(bin_values, dtype)
    if where is not None:
        # Double where: masked rows get harmless inputs, so neither the value nor
        # the gradient (0 * NaN = NaN) sees their NaN/inf.
        targets = jnp.where(where, targets, 0 if bin_values is None else bin_values[0])
        logits = jnp.where(where[..., None], logits, 0)
    edges = lax.stop_gradient(_edges(num_bins, bin_values, dtype))
    loss = _hl_gauss_ce(logits, targets, jnp.asarray(sigma, dtype), edges)
    if where is not None:
        loss = jnp.where(where, loss, 0)
    return loss
