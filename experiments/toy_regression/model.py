"""The model: one MLP trunk and a swappable head, and each arm's training loss.

==================  ============  ================================================
loss                head          training signal
==================  ============  ================================================
``l1``              scalar        ``|pred - y|`` in bins (raw targets in ``[0, 16]``)
``l1_std``          scalar        ``|z - (y - mean) / sd|``: L1 in standard units
``smooth_l1``       scalar        Huber/Smooth-L1 with ``beta = 1`` bin
``l2``              scalar        ``(pred - y)^2 / 2`` (MSE)
``dist_l1``         distribution  ``|decode(logits) - y|``: the head without a target distribution
``onehot``          distribution  cross-entropy on the nearest bin ``round(y)``
``hl_gauss_<s>``    distribution  cross-entropy on :func:`jax_dfl.hl_gauss` with ``sigma = s``
``dfl``             distribution  :func:`jax_dfl.distribution_focal_loss`
==================  ============  ================================================

The raw scalar heads start at the middle of the range (bias ``(num_bins - 1) / 2``) and must
grow their output weights to the targets' spread (sd 4.6 bins). The standardised head
(``l1_std``) predicts ``z = (y - mean) / sd`` with ``mean``, ``sd`` the targets' distribution's
(:func:`task.target_moments`, known here, as a data set's statistics would be), starts at
``z = 0`` (the same middle) and is decoded to bins by ``mean + sd * z``; its loss is L1 in
standard units. For the same function (head weights ``w / sd`` and bias ``(b - mean) / sd``
for ``l1``'s ``w``, ``b``) the error has the same sign, so the gradients on the head's
parameters are those of ``l1`` (sign of the error times the features; the sign for the bias),
not smaller; only the trunk's gradients shrink, by ``sd``, which Adam's per-parameter scaling
removes (up to its epsilon). So under Adam ``l1_std`` is ``l1`` with the head's initial weights
and its effective learning rate (in bins) both multiplied by ``sd`` (4.6), together.
Distribution heads are decoded by expectation over the bins.
"""

from __future__ import annotations

import itertools
import re

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jax_dfl.decoding import decode
from jax_dfl.histogram_losses import hl_gauss_loss
from jax_dfl.losses import distribution_focal_loss
from jax_dfl.nn import DistributionHead, Integral

from .task import TaskConfig, target_moments

# The default arms. hl_gauss takes any sigma as ``hl_gauss_<sigma>`` (in bins): 0.75 is
# Farebrother et al.'s recommendation; 0.5 is the narrowest whose decoded mean is still
# unbiased (to 2e-3 bins) between bins, about as wide as the two-hot target (std <= 0.5).
SCALAR_LOSSES = ("l1", "l1_std", "smooth_l1", "l2")
STANDARDISED_LOSSES = ("l1_std",)
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


def is_standardised(loss: str) -> bool:
    """Whether an arm's scalar head predicts in standard units of the targets."""
    return check_loss(loss) in STANDARDISED_LOSSES


class ToyRegressor(nnx.Module):
    """MLP trunk (``depth`` GELU layers of ``hidden`` units) with a scalar or a distribution head."""

    def __init__(self, loss: str, task: TaskConfig, *, hidden: int, depth: int, rngs: nnx.Rngs):
        self.loss = check_loss(loss)
        sizes = [task.signal_length] + [hidden] * depth
        # Trunk first, so every head shares the same trunk initialisation per seed.
        self.trunk = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
        self.mean, self.sd = target_moments(task)
        if is_distribution(loss):
            self.head = DistributionHead(hidden, num_outputs=1, num_bins=task.num_bins, rngs=rngs)
            self.integral = Integral()
        else:
            # Start scalar heads at the middle of the range, as a uniform distribution decodes to:
            # (num_bins - 1) / 2 in bins, 0 in standard units.
            middle = nnx.initializers.constant(0.0 if is_standardised(loss) else self.mean)
            self.head = nnx.Linear(hidden, 1, bias_init=middle, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        for layer in self.trunk:
            x = nnx.gelu(layer(x))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        """Raw head output: logits ``(batch, num_bins)`` or predictions ``(batch,)`` in the head's units."""
        out = self.head(self.features(x))
        return out[..., 0, :] if is_distribution(self.loss) else out[..., 0]

    def targets(self, y: jax.Array) -> jax.Array:
        """Targets in the head's units: standard units for a standardised head, else bins."""
        return (y - self.mean) / self.sd if is_standardised(self.loss) else y

    def predict(self, x: jax.Array) -> jax.Array:
        """Predictions in bins."""
        out = self(x)
        if is_distribution(self.loss):
            return self.integral(out)
        return self.mean + self.sd * out if is_standardised(self.loss) else out


def training_loss(loss: str, output: jax.Array, target: jax.Array) -> jax.Array:
    """Per-example training loss of a head's raw output against ``target`` in the head's units
    (:meth:`ToyRegressor.targets`: bins, or standard units for ``l1_std``)."""
    if loss in ("l1", "l1_std"):
        return jnp.abs(output - target)
    if loss == "smooth_l1":
        return optax.huber_loss(output, target, delta=1.0)
    if loss == "l2":
        return 0.5 * jnp.square(output - target)
    if loss == "dist_l1":
        # The distribution head trained only through its expectation: no target distribution.
        return jnp.abs(decode(output) - target)
    if loss == "onehot":
        nearest = jnp.round(target).astype(jnp.int32)
        return optax.softmax_cross_entropy_with_integer_labels(output, nearest)
    if loss == "dfl":
        return distribution_focal_loss(output, target)
    sigma = hl_gauss_sigma(check_loss(loss))
    if sigma is not None:
        return hl_gauss_loss(output, target, sigma=sigma)
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
