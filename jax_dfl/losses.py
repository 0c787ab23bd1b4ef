"""Distribution Focal Loss and its two-hot target.

Bins are the integers ``0 .. num_bins - 1`` and targets are given in bin units.
A target ``y`` with ``k = floor(y)`` is split between its two neighbouring bins
by linear interpolation, ``w_k = (k + 1) - y`` and ``w_{k+1} = y - k``, so the
expectation of the two-hot distribution is ``y`` itself.

Inputs follow the input rules of ``docs/conventions.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.experimental import checkify
from jax.typing import ArrayLike

from jax_dfl import _checks


def _bracket(targets: jax.Array, num_bins: int, bin_values: jax.Array | None = None):
    """Left bin ``k``, the weights ``(w_k, w_{k+1})`` and the bin spacing of clipped targets.

    Uniform bins (``bin_values=None``) are the integers ``0 .. num_bins - 1``.
    ``k`` is capped at ``num_bins - 2`` so that the last bin value is exact
    (all weight on the last bin) instead of needing a ``- 0.01`` clamp.
    Non-finite targets (NaN, +-inf) give NaN weights (and an arbitrary but
    in-range ``k``): an infinite target is not clipped to the end bin.
    """
    # +-inf would clip to a confident end-bin target; the input rules make it NaN like NaN.
    targets = jnp.where(jnp.isinf(targets), jnp.nan, targets)
    if bin_values is None:
        y = jnp.clip(targets, 0, num_bins - 1)
        left = jnp.clip(jnp.floor(y), 0, num_bins - 2)
        # Second clip on the integer: a NaN cast to int is platform-defined.
        index = jnp.clip(left.astype(jnp.int32), 0, num_bins - 2)
        return index, (left + 1) - y, y - left, None
    y = jnp.clip(targets, bin_values[0], bin_values[-1])
    index = jnp.clip(jnp.searchsorted(bin_values, y, side="right") - 1, 0, num_bins - 2)
    lo, hi = bin_values[index], bin_values[index + 1]
    spacing = hi - lo
    # Linear interpolation between the two neighbouring bin values.
    return index, (hi - y) / spacing, (y - lo) / spacing, spacing


def _two_hot_from_bracket(index, w_left, w_right, num_bins: int, dtype):
    # Compared against an iota so that XLA fuses this into whatever consumes it.
    bins = lax.broadcasted_iota(jnp.int32, index.shape + (num_bins,), index.ndim)
    index = index[..., None]
    return (
        jnp.where(bins == index, w_left[..., None], 0) + jnp.where(bins == index + 1, w_right[..., None], 0)
    ).astype(dtype)


@jax.custom_jvp
def _row_max_and_pair(logits, index):
    """``(max_i x_i, x_k, x_{k+1})`` per row in one variadic reduction (one read of the logits).

    ``x_k`` and ``x_{k+1}`` are picked by comparing an iota with ``k``: no
    gather, no one-hot in memory. The max is returned as a shift only: its
    tangent is 0 (DFL's value does not depend on the shift, and callers stop
    its gradient). Wrapped in a custom JVP because the JVP of a variadic
    ``lax.reduce`` fails when some operand has no tangent (a second derivative
    in the targets alone); the tangents here are plain masked sums, which also
    transpose, so every order of differentiation works.
    """
    bins = lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
    lowest, zero = jnp.array(-jnp.inf, logits.dtype), jnp.array(0, logits.dtype)
    left = jnp.where(bins == index[..., None], logits, zero)
    right = jnp.where(bins == index[..., None] + 1, logits, zero)
    return lax.reduce(
        (logits, left, right),
        (lowest, zero, zero),
        lambda a, b: (jnp.maximum(a[0], b[0]), a[1] + b[1], a[2] + b[2]),
        (logits.ndim - 1,),
    )


@_row_max_and_pair.defjvp
def _row_max_and_pair_jvp(primals, tangents):
    logits, index = primals
    d_logits, _ = tangents
    bins = lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
    row_max, x_left, x_right = _row_max_and_pair(logits, index)
    d_left = jnp.sum(jnp.where(bins == index[..., None], d_logits, 0), axis=-1)
    d_right = jnp.sum(jnp.where(bins == index[..., None] + 1, d_logits, 0), axis=-1)
    return (row_max, x_left, x_right), (jnp.zeros_like(row_max), d_left, d_right)


def _dfl_forward(logits, targets, where, bin_values):
    """The loss and what its derivative reuses (the bracket, exp(x - max) and its sum).

    With ``m`` the row max, the loss is written as a sum of non-negative terms,

        L = w_k (m - x_k) + w_{k+1} (m - x_{k+1}) + log sum_i exp(x_i - m),

    so nothing cancels: ``m - x_k`` is a difference of two logits, exact to
    rounding (not ``m + log sum - sum_i w_i x_i``, which loses every digit of
    precision to a large common offset such as logits ``+ 1e6``). Two passes
    over the logits, as in a logsumexp: the row max with ``x_k, x_{k+1}``, then
    the exponentials and their sum.
    """
    num_bins = logits.shape[-1]
    index, w_left, w_right, spacing = _bracket(targets, num_bins, bin_values)
    row_max, x_left, x_right = _row_max_and_pair(logits, index)
    shift = lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0))
    # A logsumexp written out, so that the gradient can reuse exp(x - max) and its
    # row sum: XLA then computes the exponentials once and writes the gradient in
    # place of them, as it does for logsumexp's own gradient.
    exp_shifted = jnp.exp(logits - shift[..., None])
    row_sum = jnp.sum(exp_shifted, axis=-1)

    def term(weight, x):
        # weight 0 contributes 0 even where x = -inf (a zero-probability bin).
        return jnp.where(weight == 0, 0, weight * (shift - x))

    # -(w_l log p_l + w_r log p_r) with log p_i = x_i - m - log(row_sum), w_l + w_r = 1.
    loss = term(w_left, x_left) + term(w_right, x_right) + jnp.log(row_sum)
    if where is not None:
        loss = jnp.where(where, loss, 0)
    return loss, (index, w_left, w_right, spacing, exp_shifted, row_sum, x_left, x_right)


@jax.custom_jvp
def _dfl(logits, targets, where, bin_values):
    return _dfl_forward(logits, targets, where, bin_values)[0]


def _dfl_jvp(primals, tangents):
    # Written as a JVP (not a VJP) so forward mode and Hessians keep working;
    # JAX transposes it for reverse mode, giving grad = g * (softmax - two_hot).
    # The softmax reuses the forward pass's exponentials, so no (rows, bins)
    # temporary beyond what logsumexp's own gradient keeps. bin_values arrive
    # through stop_gradient, so their tangent is always zero.
    logits, targets, where, bin_values = primals
    d_logits, d_targets, _, _ = tangents
    num_bins = logits.shape[-1]
    loss, (index, w_left, w_right, spacing, exp_shifted, row_sum, x_left, x_right) = _dfl_forward(
        logits, targets, where, bin_values
    )

    d_loss = jnp.zeros_like(loss)
    if not isinstance(d_logits, SymbolicZero):
        probs = exp_shifted / row_sum[..., None]
        # softmax - two_hot, spelled with selects rather than by reusing the
        # forward's two-hot expression: shared, XLA would store that as a
        # (rows, bins) temporary; separate, each fuses into its own pass.
        bins = lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
        grad = jnp.where(
            bins == index[..., None],
            probs - w_left[..., None],
            jnp.where(bins == index[..., None] + 1, probs - w_right[..., None], probs),
        )
        if where is not None:
            grad = jnp.where(where[..., None], grad, 0)
        d_loss += jnp.sum(grad * d_logits, axis=-1)
    if not isinstance(d_targets, SymbolicZero):
        # d/dy of (w_l, w_r) is (-1, +1) / spacing; zero where the target was clipped.
        low, high = (0, num_bins - 1) if bin_values is None else (bin_values[0], bin_values[-1])
        # Non-finite targets are "inside" so that their gradient is NaN too (NaN in, NaN out).
        inside = ((targets >= low) & (targets <= high)) | ~jnp.isfinite(targets)
        if where is not None:
            inside &= where
        # x_k and x_{k+1} come from the forward pass: no gathers.
        slope = x_left - x_right if spacing is None else (x_left - x_right) / spacing
        slope = jnp.where(jnp.isfinite(targets), slope, jnp.nan)
        d_loss += jnp.where(inside, slope, 0) * d_targets
    return loss, d_loss


_dfl.defjvp(_dfl_jvp, symbolic_zeros=True)


def two_hot(targets: ArrayLike, num_bins: int, *, bin_values: ArrayLike | None = None) -> jax.Array:
    r"""Two-hot encoding of continuous targets over integer (or given) bins.

    For ``y`` clipped to ``[0, num_bins - 1]`` and ``k = floor(y)`` (``k`` at
    most ``num_bins - 2``), the encoding puts weight :math:`(k + 1) - y` on bin
    ``k`` and :math:`y - k` on bin ``k + 1``; all other bins are 0. It is the
    distribution over the two nearest bins whose mean is ``y``.

    With ``bin_values`` ``v`` (increasing, one per bin) the weights are the
    linear interpolation between the neighbouring values, targets clipped to
    ``[v_0, v_{K-1}]``:

    .. math::
      w_k = \frac{v_{k+1} - y}{v_{k+1} - v_k}, \qquad
      w_{k+1} = \frac{y - v_k}{v_{k+1} - v_k},

    and the expectation :math:`\sum_i v_i w_i` is again ``y``.

    The loss never builds this array; it is provided for inspection, tests and
    for losses that want a dense target.

    .. seealso::
      :func:`distribution_focal_loss` (the cross-entropy against this target),
      :func:`two_hot_entropy` (its entropy).

    Args:
      targets: real targets in bin units (or in the units of ``bin_values``).
      num_bins: number of bins (a Python int, at least 2).
      bin_values: optional strictly increasing 1-D array of ``num_bins`` bin
        positions; default ``0 .. num_bins - 1``.

    Returns:
      An array of shape ``targets.shape + (num_bins,)``, float32 (float64 for
      float64 targets). Rows sum to 1; NaN targets give NaN rows.

    Examples:
      A target of 2.37 lies between bins 2 and 3, one of 4.8 between bins 4 and 5:

      >>> import numpy as np, jax_dfl
      >>> print(np.asarray(jax_dfl.two_hot(2.37, 6)).round(4))
      [0.   0.   0.63 0.37 0.   0.  ]
      >>> print(np.asarray(jax_dfl.two_hot(4.8, 6)).round(4))
      [0.  0.  0.  0.  0.2 0.8]
      >>> print(jax_dfl.two_hot(5.0, 6))  # num_bins - 1 is exact, no clamp needed
      [0. 0. 0. 0. 0. 1.]

      Log-spaced bins, finer near 0:

      >>> print(jax_dfl.two_hot(6.0, 6, bin_values=[0, 1, 2, 4, 8, 16]))
      [0.  0.  0.  0.5 0.5 0. ]

    References:
      Li et al., `Generalized Focal Loss: Learning Qualified and Distributed
      Bounding Boxes for Dense Object Detection <https://arxiv.org/abs/2006.04388>`_,
      NeurIPS 2020.
    """
    num_bins = _checks.check_num_bins(num_bins)
    targets, bin_values = _checks.arrays(
        "two_hot",
        targets=(targets, "real", "..."),
        bin_values=(bin_values, "real | None", "num_bins"),
        dims={"num_bins": num_bins},
    )
    targets = targets.astype(_checks.compute_dtype(targets.dtype))
    bin_values = _checks.bin_values(bin_values, targets.dtype)
    index, w_left, w_right, _ = _bracket(targets, num_bins, bin_values)
    encoded = _two_hot_from_bracket(index, w_left, w_right, num_bins, targets.dtype)
    return jnp.where(jnp.isfinite(targets)[..., None], encoded, jnp.nan)


def distribution_focal_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    where: ArrayLike | None = None,
    bin_values: ArrayLike | None = None,
) -> jax.Array:
    r"""Distribution Focal Loss (DFL), unreduced.

    With :math:`p = \mathrm{softmax}(x)` of the logits :math:`x` over the last
    axis and the two-hot weights :math:`w_k = (k+1) - y`, :math:`w_{k+1} = y - k`
    of the target :math:`y` (see :func:`two_hot`),

    .. math::
      \mathcal{L}(y) = -\left(w_k \log p_k + w_{k+1} \log p_{k+1}\right)
                     = \mathrm{logsumexp}(x) - w_k x_k - w_{k+1} x_{k+1},

    the cross-entropy between the two-hot target and ``p``. Its minimum is the
    entropy of the two-hot target (0 only for integer targets), reached when
    ``p`` equals the two-hot. Its gradient with respect to the logits is
    :math:`p - \mathrm{two\_hot}(y)`, implemented as a custom JVP rule so that
    reverse mode, forward mode and Hessians all work; the two-hot is never
    stored. With respect to the targets the gradient is :math:`x_k - x_{k+1}`
    (zero where a target was clipped).

    Bins are the integers ``0 .. num_bins - 1``, ``num_bins = logits.shape[-1]``:
    ultralytics' ``reg_max``, mmdetection/GFocal/nanodet's ``reg_max + 1``.
    bf16/f16 logits are computed in float32.

    .. warning::
      Targets outside ``[0, num_bins - 1]`` are clipped into it silently (the
      end point ``num_bins - 1`` is exact, no margin needed), and NaN targets
      give a NaN loss. Use :func:`validate_targets` under ``checkify`` to make
      either an error.

    .. seealso::
      :doc:`/conventions` for ``num_bins`` against the ``reg_max`` of ultralytics
      and mmdetection and the input rules; :func:`distribution_focal_kl` for the
      same loss shifted to 0 at its optimum; :func:`jax_dfl.decode` to read a
      value off the logits.

    Args:
      logits: ``(..., num_bins)`` floating logits.
      targets: targets in bin units, shape exactly ``logits.shape[:-1]``.
      where: optional boolean mask of shape ``logits.shape[:-1]``; masked-out
        elements give loss 0 and gradient 0, whatever their logits or targets.
      bin_values: optional strictly increasing bin positions, one per bin
        (e.g. log-spaced for fine resolution near 0). Targets are then in
        those units and the two-hot weights interpolate linearly between
        neighbouring values (see :func:`two_hot`). Constants: no gradient
        flows into them. ``None`` (the integers) takes the fastest path.

    Returns:
      The loss per element, shape ``logits.shape[:-1]``, in the logits' dtype
      promoted to at least float32; the gradient has the logits' dtype.

    Examples:
      A hand-written prediction ``p`` for a target of 2.37 that sums to 1.05,
      so no softmax produces it. Passed as logits ``log(p)``, it is
      renormalised by the softmax, so the loss is 0.7096 rather than the 0.6608
      of :math:`-(0.63 \ln 0.60 + 0.37 \ln 0.40)` on the unnormalised numbers:

      >>> import jax.numpy as jnp, jax_dfl
      >>> p = jnp.array([0.0, 0.05, 0.60, 0.40, 0.0, 0.0])
      >>> loss = jax_dfl.distribution_focal_loss(jnp.log(p), jnp.array(2.37))
      >>> print(f"{loss:.4f}")
      0.7096

      A prediction equal to the two-hot target of 4.8 is the optimum, yet it
      still costs the target's entropy, not 0:

      >>> p = jnp.array([0.0, 0.0, 0.0, 0.0, 0.2, 0.8])
      >>> print(f"{jax_dfl.distribution_focal_loss(jnp.log(p), jnp.array(4.8)):.4f}")
      0.5004

    References:
      Li et al., `Generalized Focal Loss: Learning Qualified and Distributed
      Bounding Boxes for Dense Object Detection <https://arxiv.org/abs/2006.04388>`_,
      NeurIPS 2020.
    """
    logits, targets, where, bin_values = _checks.arrays(
        "distribution_focal_loss",
        logits=(logits, "float", "... num_bins"),
        targets=(targets, "real", "..."),
        where=(where, "bool | None", "..."),
        bin_values=(bin_values, "real | None", "num_bins"),
        minimum={"num_bins": 2},
    )
    dtype = _checks.compute_dtype(logits.dtype)
    logits = logits.astype(dtype)
    targets = targets.astype(dtype)
    bin_values = _checks.bin_values(bin_values, dtype)
    if where is not None:
        # Padding rows often carry garbage targets: keep them out of the maths.
        safe = 0 if bin_values is None else bin_values[0]
        targets = jnp.where(where, targets, safe)
    return _dfl(logits, targets, where, bin_values)


def validate_targets(
    targets: ArrayLike,
    num_bins: int,
    *,
    where: ArrayLike | None = None,
    bin_values: ArrayLike | None = None,
) -> None:
    """Opt-in runtime check that targets are finite and inside ``[0, num_bins - 1]``.

    :func:`distribution_focal_loss` clips out-of-range targets silently (and
    NaN propagates). Call this inside the function you jit and wrap it with
    :func:`jax.experimental.checkify.checkify` to turn either into an error
    that names the offending minimum and maximum.

    .. warning::
      Outside ``checkify`` a jitted call fails to trace, as for any
      ``checkify.check``.

    Args:
      targets: targets in bin units.
      num_bins: number of bins.
      where: optional boolean mask; masked-out targets are not checked.
      bin_values: optional bin positions; the range is then ``[v_0, v_{K-1}]``.

    Returns:
      ``None``; the check is recorded for ``checkify``.

    Examples:
      >>> import jax, jax.numpy as jnp, jax_dfl
      >>> from jax.experimental import checkify
      >>> def loss_fn(logits, targets):
      ...   jax_dfl.validate_targets(targets, logits.shape[-1])
      ...   return jax_dfl.distribution_focal_loss(logits, targets).mean()
      >>> err, _ = checkify.checkify(jax.jit(loss_fn))(jnp.zeros((2, 4)), jnp.array([0.5, 7.0]))
      >>> print(err.get())  # doctest: +ELLIPSIS
      targets must be finite and in [0, 3]; got min=0.5, max=7.0...
    """
    num_bins = _checks.check_num_bins(num_bins)
    targets, where, values = _checks.arrays(
        "validate_targets",
        targets=(targets, "real", "..."),
        where=(where, "bool | None", "..."),
        bin_values=(bin_values, "real | None", "num_bins"),
        dims={"num_bins": num_bins},
    )
    targets = targets.astype(_checks.compute_dtype(targets.dtype))  # ints too: min/max start at +-inf
    values = _checks.bin_values(values, jnp.float32)
    low, high = (0, num_bins - 1) if values is None else (values[0], values[-1])
    valid = jnp.isfinite(targets) & (targets >= low) & (targets <= high)
    if where is not None:
        valid |= ~where
    lo = jnp.min(targets, where=where, initial=jnp.inf)
    hi = jnp.max(targets, where=where, initial=-jnp.inf)
    checkify.check(
        jnp.all(valid),
        "targets must be finite and in [{low}, {high}]; got min={lo}, max={hi}",
        low=jnp.asarray(low),
        high=jnp.asarray(high),
        lo=lo,
        hi=hi,
    )


def two_hot_entropy(targets: ArrayLike, num_bins: int, *, bin_values: ArrayLike | None = None) -> jax.Array:
    r"""Entropy of :func:`two_hot` ``(targets)``: DFL's minimum over all predictions.

    .. math::
      H(y) = -\left(w_k \log w_k + w_{k+1} \log w_{k+1}\right), \qquad 0 \log 0 = 0,

    0 for targets on a bin, :math:`\log 2` half-way between two bins.

    .. seealso::
      :func:`distribution_focal_kl`, which subtracts it from the loss.

    Args:
      targets: real targets in bin units (or in the units of ``bin_values``).
      num_bins: number of bins (a Python int, at least 2).
      bin_values: optional strictly increasing bin positions, one per bin.

    Returns:
      The entropy in nats, shape ``targets.shape``, float32 (float64 for
      float64 targets).

    Examples:
      >>> import jax_dfl
      >>> print(f"{jax_dfl.two_hot_entropy(4.8, 6):.4f}")  # the weights 0.2 and 0.8
      0.5004
    """
    num_bins = _checks.check_num_bins(num_bins)
    targets, bin_values = _checks.arrays(
        "two_hot_entropy",
        targets=(targets, "real", "..."),
        bin_values=(bin_values, "real | None", "num_bins"),
        dims={"num_bins": num_bins},
    )
    targets = targets.astype(_checks.compute_dtype(targets.dtype))
    bin_values = _checks.bin_values(bin_values, targets.dtype)
    _, w_left, w_right, _ = _bracket(targets, num_bins, bin_values)
    return -(jax.scipy.special.xlogy(w_left, w_left) + jax.scipy.special.xlogy(w_right, w_right))


def distribution_focal_kl(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    where: ArrayLike | None = None,
    bin_values: ArrayLike | None = None,
) -> jax.Array:
    r"""DFL shifted to be 0 at its optimum: :math:`\mathrm{KL}(\text{two\_hot}(y)\,\|\,p)`.

    .. math::
      \mathrm{KL}(\text{two\_hot}(y)\,\|\,p) = \mathcal{L}_{\mathrm{DFL}}(y) - H(y),

    :func:`distribution_focal_loss` minus :func:`two_hot_entropy`, so it has
    the same gradient with respect to the logits (``softmax - two_hot``) and
    reads 0 for a perfect prediction, which makes logged values comparable
    across targets. The entropy term is a constant of the target: no gradient
    flows through it (its derivative is singular at integer targets), so the
    gradient with respect to the targets is DFL's.

    Args:
      logits: ``(..., num_bins)`` floating logits.
      targets: targets in bin units, shape exactly ``logits.shape[:-1]``.
      where: optional boolean mask of shape ``logits.shape[:-1]``; masked-out
        elements give 0 and gradient 0.
      bin_values: optional strictly increasing bin positions, one per bin.

    Returns:
      The divergence per element, shape ``logits.shape[:-1]``, as for
      :func:`distribution_focal_loss`.

    Examples:
      >>> import jax.numpy as jnp, jax_dfl
      >>> p = jnp.array([0.0, 0.0, 0.0, 0.0, 0.2, 0.8])
      >>> print(f"{jax_dfl.distribution_focal_kl(jnp.log(p), jnp.array(4.8)):.4f}")
      0.0000
    """
    logits, targets, where, bin_values = _checks.arrays(
        "distribution_focal_kl",
        logits=(logits, "float", "... num_bins"),
        targets=(targets, "real", "..."),
        where=(where, "bool | None", "..."),
        bin_values=(bin_values, "real | None", "num_bins"),
        minimum={"num_bins": 2},
    )
    loss = distribution_focal_loss(logits, targets, where=where, bin_values=bin_values)
    num_bins = logits.shape[-1]
    targets = targets.astype(loss.dtype)
    if where is not None:
        targets = jnp.where(where, targets, 0 if bin_values is None else bin_values[0])
    entropy = lax.stop_gradient(two_hot_entropy(targets, num_bins, bin_values=bin_values))
    return loss - (entropy if where is None else jnp.where(where, entropy, 0))
