"""Quality Focal Loss: the classification half of Generalized Focal Loss.

Inputs follow the input rules of ``docs/conventions.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_dfl import _checks


def quality_focal_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    beta: float | ArrayLike = 2.0,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Sigmoid Quality Focal Loss (QFL), element-wise and unreduced.

    For a logit :math:`x`, :math:`\sigma = \mathrm{sigmoid}(x)` and a soft
    target :math:`q \in [0, 1]` (the IoU of the box for the positive class,
    0 for negatives),

    .. math::
      \mathcal{L} = \mathrm{BCE}(x, q)\, |\sigma - q|^{\beta},\qquad
      \mathrm{BCE}(x, q) = \max(x, 0) - x q + \log(1 + e^{-|x|}).

    The BCE is computed in that stable form, so logits of magnitude 1e4 are
    finite. The modulating factor down-weights examples whose score already
    matches their quality. Sigmoid, not softmax: each class answers its own
    yes/no question ("is this an object of class c, and how well localised?"),
    so a location may score high or low for every class at once, whereas DFL's
    softmax picks one position within one distribution.

    .. warning::
      For ``beta < 1`` the gradient is unbounded where ``sigmoid(x) == q``; the
      default ``beta = 2`` (as in GFL) is smooth.

    Args:
      logits: per-class logits, any shape, floating.
      targets: soft targets in ``[0, 1]``, same shape as ``logits``.
      beta: focusing exponent ``>= 0`` (keyword-only; 0 gives the plain BCE). May be traced.
      where: optional boolean mask of ``logits.shape``; masked elements give 0
        value and 0 gradient, whatever they hold.

    Returns:
      The loss per element, shape ``logits.shape``, at least float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> loss = quality_focal_loss(jnp.array([0.0, 3.0]), jnp.array([0.5, 0.0]))
      >>> print(loss.round(4))  # first: sigmoid(0) = 0.5 = q, no loss
      [0.     2.7663]

    References:
      Li et al., `Generalized Focal Loss: Learning Qualified and Distributed
      Bounding Boxes for Dense Object Detection <https://arxiv.org/abs/2006.04388>`_,
      NeurIPS 2020.
    """
    logits, targets, where = _checks.arrays(
        "quality_focal_loss",
        logits=(logits, "float", "..."),
        targets=(targets, "real", "..."),
        where=(where, "bool | None", "..."),
    )
    beta = _checks.positive("beta", beta, allow_zero=True)
    dtype = _checks.compute_dtype(logits.dtype)
    x = logits.astype(dtype)
    q = targets.astype(dtype)
    if where is not None:
        # Masked elements may hold inf/NaN: replace them before the maths, so
        # that no NaN reaches the gradient through the unselected branch.
        x = jnp.where(where, x, 0)
        q = jnp.where(where, q, 0)
    bce = jnp.maximum(x, 0) - x * q + jnp.log1p(jnp.exp(-jnp.abs(x)))
    loss = bce * jnp.abs(jax.nn.sigmoid(x) - q) ** beta
    return loss if where is None else jnp.where(where, loss, 0)
