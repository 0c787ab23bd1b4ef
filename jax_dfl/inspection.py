"""Gradient inspection: what a loss tells the prediction at each error.

These helpers use only ``jax.grad`` and ``jax.vmap`` on the loss you pass, so
they work for any differentiable loss, including your own.

Every public function here follows the input rules written once in the README
("Input rules") and enforced by ``jax_dfl._checks``: dtypes, exact shapes,
named hyper-parameter errors, NaN in -> NaN out, masked elements 0 value and 0 gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_dfl.decoding import decode


def gradient_profile(
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    errors: ArrayLike,
    *,
    target: float = 0.0,
) -> jax.Array:
    """``d loss(prediction, target) / d prediction`` at ``prediction = target + error``.

    Examples:
      L1's gradient is the sign of the error, whatever its size:

      >>> import jax.numpy as jnp
      >>> l1 = lambda pred, y: jnp.abs(pred - y)
      >>> print(gradient_profile(l1, jnp.array([-2.0, -0.01, 0.01, 3.0])))
      [-1. -1.  1.  1.]

    Args:
      loss_fn: scalar loss of a scalar prediction and a scalar target.
      errors: signed errors ``prediction - target``, any shape.
      target: the target the errors are measured from.

    Returns:
      The gradient at each error, shape ``errors.shape``.
    """
    errors = jnp.asarray(errors, dtype=jnp.result_type(float))
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


def gaussian_logits(location: ArrayLike, num_bins: int, *, width: float = 1.0) -> jax.Array:
    """Logits of a discretised Gaussian centred on ``location`` (in bin units)."""
    bins = jnp.arange(num_bins, dtype=jnp.result_type(float))
    location = jnp.asarray(location, bins.dtype)
    return -0.5 * jnp.square((bins - location[..., None]) / width)


def distribution_gradient_profile(
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    errors: ArrayLike,
    *,
    target: float,
    num_bins: int,
    width: float = 1.0,
) -> DistributionGradients:
    """Gradients of a distribution loss at predictions ``target + error``.

    The prediction is parameterised as a discretised Gaussian over the bins
    centred at ``mu = target + error`` (``width`` in bins). The gradient with
    respect to the prediction is taken along that family,
    ``(d loss / d mu) / (d decode / d mu)``, so that it is comparable with a
    scalar loss's; the gradient with respect to the logits is the raw one.

    Examples:
      DFL's logit gradient is ``softmax - two_hot``:

      >>> import jax.numpy as jnp, jax_dfl
      >>> out = distribution_gradient_profile(
      ...     jax_dfl.distribution_focal_loss, jnp.array([0.0, 3.0]), target=8.3, num_bins=17)
      >>> print(out.grad_logits.shape, bool(out.grad_prediction[1] > out.grad_prediction[0]))
      (2, 17) True

    Args:
      loss_fn: scalar loss of ``(num_bins,)`` logits and a scalar target.
      errors: signed errors of the distribution's centre from the target.
      target: the target, in bin units.
      num_bins: number of bins.
      width: the Gaussian's standard deviation, in bins.
    """
    errors = jnp.asarray(errors, dtype=jnp.result_type(float))
    target = jnp.asarray(target, errors.dtype)

    def family(mu):
        return gaussian_logits(mu, num_bins, width=width)

    def at(location):
        # d loss / d mu by chain rule through the logits; d decode / d mu by forward mode.
        grad_logits = jax.grad(loss_fn)(family(location), target)
        logits, d_logits_d_mu = jax.jvp(family, (location,), (jnp.ones_like(location),))
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
