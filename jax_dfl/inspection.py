"""Gradient inspection: what a loss tells the prediction at each error.

These helpers use only ``jax.grad`` and ``jax.vmap`` on the loss you pass, so
they work for any differentiable loss, including your own.

Inputs follow the input rules of ``docs/conventions.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_dfl import _checks
from jax_dfl.decoding import decode


def gradient_profile(
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    errors: ArrayLike,
    *,
    target: float | ArrayLike = 0.0,
) -> jax.Array:
    r"""``d loss(prediction, target) / d prediction`` at ``prediction = target + error``.

    .. math::
      g(e) = \frac{\partial \mathcal{L}(\hat y, y)}{\partial \hat y}\Big|_{\hat y = y + e}

    for each error :math:`e`, by ``jax.grad`` of ``loss_fn`` vmapped over the errors.

    .. seealso::
      :func:`distribution_gradient_profile` for losses of a distribution;
      :doc:`/tutorials/gradients`.

    Args:
      loss_fn: scalar loss of a scalar prediction and a scalar target.
      errors: signed errors ``prediction - target``, any shape.
      target: the target the errors are measured from.

    Returns:
      The gradient at each error, shape ``errors.shape``.

    Examples:
      L1's gradient is the sign of the error, whatever its size:

      >>> import jax.numpy as jnp
      >>> l1 = lambda pred, y: jnp.abs(pred - y)
      >>> print(gradient_profile(l1, jnp.array([-2.0, -0.01, 0.01, 3.0])))
      [-1. -1.  1.  1.]
    """
    (errors,) = _checks.in_compute_dtype(*_checks.arrays("gradient_profile", errors=(errors, "real", "...")))
    target = jnp.asarray(target, errors.dtype)
    grad = jax.grad(loss_fn)
    flat = jax.vmap(grad, in_axes=(0, None))(target + errors.ravel(), target)
    return flat.reshape(errors.shape)


class DistributionGradients(NamedTuple):
    """What :func:`distribution_gradient_profile` measures at each error."""

    prediction: jax.Array
    """Decoded prediction (expectation) of the distribution at each error."""
    grad_prediction: jax.Array
    """``d loss / d prediction`` along the family of distributions."""
    grad_logits: jax.Array
    """``d loss / d logits``, shape ``errors.shape + (num_bins,)``."""
    grad_logits_norm: jax.Array
    """Euclidean norm of ``grad_logits`` per error."""


def _family_grid(fn: str, location: ArrayLike, num_bins: int, width) -> tuple[jax.Array, jax.Array]:
    """``(bins, location[..., None])`` in one float dtype, with the checks of the family ``fn``."""
    (location,) = _checks.in_compute_dtype(*_checks.arrays(fn, location=(location, "real", "...")))
    num_bins = _checks.check_num_bins(num_bins)
    _checks.positive("width", width)
    return jnp.arange(num_bins, dtype=location.dtype), location[..., None]


def gaussian_logits(location: ArrayLike, num_bins: int, *, width: float | ArrayLike = 1.0) -> jax.Array:
    r"""Logits of a discretised Gaussian centred on ``location`` (in bin units).

    .. math::
      x_i = -\frac{1}{2} \left(\frac{i - \mu}{w}\right)^2

    Args:
      location: the centre :math:`\mu`, in bin units, any shape.
      num_bins: number of bins (a Python int, at least 2).
      width: the standard deviation :math:`w` in bins, > 0.

    Returns:
      Logits of shape ``location.shape + (num_bins,)``, at least float32.

    Examples:
      >>> print(gaussian_logits(1.0, 3))
      [-0.5 -0.  -0.5]
    """
    bins, location = _family_grid("gaussian_logits", location, num_bins, width)
    return -0.5 * jnp.square((bins - location) / width)


def laplace_logits(location: ArrayLike, num_bins: int, *, width: float | ArrayLike = 1.0) -> jax.Array:
    r"""Logits ``-|i - location| / width``: a discretised Laplace, peaked, with exponential tails.

    .. math::
      x_i = -\frac{|i - \mu|}{w}

    Args:
      location: the centre :math:`\mu`, in bin units, any shape.
      num_bins: number of bins (a Python int, at least 2).
      width: the scale :math:`w` in bins, > 0.

    Returns:
      Logits of shape ``location.shape + (num_bins,)``, at least float32.

    Examples:
      >>> print(laplace_logits(1.0, 3, width=2.0))
      [-0.5 -0.  -0.5]
    """
    bins, location = _family_grid("laplace_logits", location, num_bins, width)
    return -jnp.abs(bins - location) / width


def skewed_logits(
    location: ArrayLike, num_bins: int, *, width: float | ArrayLike = 1.0, skew: float | ArrayLike = 2.0
) -> jax.Array:
    r"""A two-piece Gaussian: mode at ``location``, scale ``width / skew`` left of it, ``width * skew`` right.

    .. math::
      x_i = -\frac{1}{2} \left(\frac{i - \mu}{s_i}\right)^2, \qquad
      s_i = \begin{cases} w / \kappa & i < \mu \\ w \kappa & i \ge \mu \end{cases}

    Asymmetric (its mean lies right of its mode for ``skew > 1``) with Gaussian
    tails on both sides.

    Args:
      location: the mode :math:`\mu`, in bin units, any shape.
      num_bins: number of bins (a Python int, at least 2).
      width: the scale :math:`w` in bins, > 0.
      skew: the asymmetry :math:`\kappa`, > 0 (1 is the Gaussian).

    Returns:
      Logits of shape ``location.shape + (num_bins,)``, at least float32.

    Examples:
      >>> print(skewed_logits(1.0, 3))
      [-2.    -0.    -0.125]
    """
    bins, location = _family_grid("skewed_logits", location, num_bins, width)
    _checks.positive("skew", skew)
    d = bins - location
    scale = jnp.where(d < 0, width / skew, width * skew)
    return -0.5 * jnp.square(d / scale)


def bimodal_logits(
    location: ArrayLike,
    num_bins: int,
    *,
    width: float | ArrayLike = 1.0,
    offset: float | ArrayLike = 3.0,
    weight: float | ArrayLike = 0.3,
) -> jax.Array:
    r"""Logits of a Gaussian mixture: ``1 - weight`` at ``location``, ``weight`` at ``location + offset``.

    .. math::
      x_i = \log\left((1 - a)\, e^{-\frac{1}{2}((i - \mu)/w)^2}
            + a\, e^{-\frac{1}{2}((i - \mu - o)/w)^2}\right)

    Args:
      location: the main mode :math:`\mu`, in bin units, any shape.
      num_bins: number of bins (a Python int, at least 2).
      width: both components' standard deviation :math:`w` in bins, > 0.
      offset: the second mode's distance :math:`o` from the first, in bins.
      weight: the second mode's share :math:`a`, in ``(0, 1)``.

    Returns:
      Logits of shape ``location.shape + (num_bins,)``, at least float32.

    Examples:
      >>> import jax, numpy as np
      >>> p = jax.nn.softmax(bimodal_logits(0.0, 4, width=0.1, offset=3.0, weight=0.3))
      >>> print(np.asarray(p).round(3))
      [0.7 0.  0.  0.3]
    """
    bins, location = _family_grid("bimodal_logits", location, num_bins, width)
    _checks.positive("weight", weight)
    if _checks.is_concrete(weight) and not float(np.asarray(weight)) < 1:
        raise ValueError(f"weight must be in (0, 1) (the second mode's share); got {weight!r}")
    main = jnp.log1p(jnp.negative(weight)) - 0.5 * jnp.square((bins - location) / width)
    side = jnp.log(weight) - 0.5 * jnp.square((bins - location - offset) / width)
    return jnp.logaddexp(main, side)


FAMILIES: dict[str, Callable[..., jax.Array]] = {
    "gaussian": gaussian_logits,
    "laplace": laplace_logits,
    "skewed": skewed_logits,
    "bimodal": bimodal_logits,
}
"""Location families of logits for :func:`distribution_gradient_profile`, by name."""


def _checked_family(
    family: Callable[[jax.Array], jax.Array], num_bins: int
) -> Callable[[jax.Array], jax.Array]:
    """A custom ``family`` whose logits are checked to have ``num_bins`` bins, at trace time.

    Its output, not an argument: the error names the family and ``num_bins`` instead of failing
    in a reshape further on.
    """

    def make(location: jax.Array) -> jax.Array:
        (logits,) = _checks.arrays(
            "distribution_gradient_profile",
            dims={"num_bins": num_bins},
            family_logits=(family(location), "float", "num_bins"),
        )
        return logits

    return make


def distribution_gradient_profile(
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    errors: ArrayLike,
    *,
    target: float | ArrayLike,
    num_bins: int,
    width: float | ArrayLike = 1.0,
    family: str | Callable[[jax.Array], jax.Array] = "gaussian",
) -> DistributionGradients:
    r"""Gradients of a distribution loss at distributions centred ``error`` away from the target.

    The prediction is parameterised as a location family of logits over the
    bins, ``family(mu)`` with ``mu = target + error``: by default a
    discretised Gaussian of standard deviation ``width`` bins; ``"laplace"``,
    ``"skewed"`` (asymmetric) and ``"bimodal"`` (see :data:`FAMILIES`) are the
    same with other shapes, or pass any function of ``mu`` returning
    ``(num_bins,)`` logits. The gradient with respect to the prediction is
    taken along the family,

    .. math::
      \frac{\partial \mathcal{L}}{\partial \hat y}
      = \frac{\partial \mathcal{L} / \partial \mu}{\partial\, \mathrm{decode} / \partial \mu},

    so that it is comparable with a scalar loss's; the gradient with respect to
    the logits is the raw one.

    .. warning::
      The gradient with respect to the decoded prediction depends on the
      family as much as on the loss (for DFL it grows linearly with the error
      along the Gaussian family but is nearly constant, like L1's, along the
      Laplace one), and a trained network's distributions belong to none of
      these families. The gradient with respect to the logits
      (``softmax - target``) is what the network actually receives.

    .. seealso::
      :doc:`/tutorials/gradients`.

    Args:
      loss_fn: scalar loss of ``(num_bins,)`` logits and a scalar target.
      errors: signed errors of the distribution's location from the target.
      target: the target, in bin units.
      num_bins: number of bins.
      width: the family's scale, in bins (the Gaussian's standard deviation).
      family: a name from :data:`FAMILIES` or a function ``mu -> logits``.

    Returns:
      A :class:`DistributionGradients` of ``prediction``, ``grad_prediction``
      and ``grad_logits_norm`` (shape ``errors.shape``) and ``grad_logits``
      (``errors.shape + (num_bins,)``).

    Examples:
      DFL's logit gradient is ``softmax - two_hot``; along the Gaussian family its
      gradient per unit of prediction grows with the error, along the Laplace one
      it stays below 1:

      >>> import jax.numpy as jnp, jax_dfl
      >>> dfl = jax_dfl.distribution_focal_loss
      >>> out = distribution_gradient_profile(dfl, jnp.array([1.0, 3.0]), target=8.3, num_bins=17)
      >>> print(out.grad_logits.shape, out.grad_prediction.round(2))
      (2, 17) [1. 3.]
      >>> out = distribution_gradient_profile(
      ...     dfl, jnp.array([1.0, 3.0]), target=8.3, num_bins=17, family="laplace")
      >>> print(out.grad_prediction.round(2))
      [0.77 0.78]
    """
    (errors,) = _checks.in_compute_dtype(
        *_checks.arrays("distribution_gradient_profile", errors=(errors, "real", "..."))
    )
    target = jnp.asarray(target, errors.dtype)
    num_bins = _checks.check_num_bins(num_bins)
    _checks.positive("width", width)
    if callable(family):
        make = _checked_family(family, num_bins)
    elif family in FAMILIES:
        make = functools.partial(FAMILIES[family], num_bins=num_bins, width=width)
    else:
        raise ValueError(f"unknown family {family!r}; expected a callable or one of {sorted(FAMILIES)}")

    def at(location):
        # d loss / d mu by chain rule through the logits; d decode / d mu by forward mode.
        logits, d_logits_d_mu = jax.jvp(make, (location,), (jnp.ones_like(location),))
        grad_logits = jax.grad(loss_fn)(logits, target)
        prediction, d_pred_d_mu = jax.jvp(decode, (logits,), (d_logits_d_mu,))
        d_loss_d_mu = jnp.vdot(grad_logits, d_logits_d_mu)
        return prediction, d_loss_d_mu / d_pred_d_mu, grad_logits

    prediction, grad_prediction, grad_logits = jax.vmap(at)((target + errors).ravel())
    shape = errors.shape
    grad_logits = grad_logits.reshape(*shape, num_bins)
    return DistributionGradients(
        prediction=prediction.reshape(shape),
        grad_prediction=grad_prediction.reshape(shape),
        grad_logits=grad_logits,
        grad_logits_norm=jnp.linalg.norm(grad_logits, axis=-1),
    )
