"""Flax NNX building blocks for distribution regression heads.

Needs flax, the optional extra ``nn`` (``pip install "flax>=0.10.2"``, or ``pip install ".[nn]"``
from a checkout); importing this module without it raises an ``ImportError`` that says so.

Inputs follow the input rules of ``docs/conventions.md``.
"""

from __future__ import annotations

import jax
from jax.typing import ArrayLike

try:
    from flax import nnx
except ImportError as error:  # flax is the optional extra `nn`; the rest of jax_dfl works without it
    raise ImportError(
        "jax_dfl.nn needs flax (Flax NNX), an optional dependency that is not installed. Install it "
        'with: pip install "flax>=0.10.2"  (what the extra jax_dfl[nn] installs; from a checkout: '
        'pip install ".[nn]")'
    ) from error

from jax_dfl import _checks
from jax_dfl.decoding import decode


class DistributionHead(nnx.Module):
    """Maps features to per-output bin logits, shape ``(..., num_outputs, num_bins)``.

    One linear layer, as in GFL/YOLOv8 heads (a conv there; a dense layer on
    feature vectors here). Weights start at zero-mean small values and the
    bias at 0, so the initial distribution is close to uniform. Calling it on
    floating ``features`` of shape ``(..., in_features)`` returns the logits.

    .. seealso::
      :class:`Integral` or :func:`jax_dfl.decode` to read values off the
      logits; :func:`jax_dfl.distribution_focal_loss` to train them.

    Args:
      in_features: size of the features' last axis (a Python int).
      num_outputs: number of distributions per feature vector (4 for box sides).
      num_bins: bins per distribution (at least 2).
      rngs: the ``nnx.Rngs`` that initialise the layer.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> head = DistributionHead(32, num_outputs=4, num_bins=16, rngs=nnx.Rngs(0))
      >>> head(jnp.ones((8, 32))).shape
      (8, 4, 16)
    """

    def __init__(self, in_features: int, *, num_outputs: int, num_bins: int, rngs: nnx.Rngs) -> None:
        in_features = _checks.positive_int("in_features", in_features)
        num_outputs = _checks.positive_int("num_outputs", num_outputs)
        num_bins = _checks.check_num_bins(num_bins)
        self.num_outputs = num_outputs
        self.num_bins = num_bins
        self.linear = nnx.Linear(in_features, num_outputs * num_bins, rngs=rngs)

    def __call__(self, features: ArrayLike) -> jax.Array:
        (features,) = _checks.arrays(
            "DistributionHead",
            features=(features, "float", "... in_features"),
            dims={"in_features": self.linear.in_features},
        )
        logits = self.linear(features)
        return logits.reshape(*logits.shape[:-1], self.num_outputs, self.num_bins)


class Integral(nnx.Module):
    r"""Parameter-free decode: expected bin value of ``softmax(logits)`` (GFL's "Integral").

    Calling it on ``(..., num_bins)`` logits returns :math:`\sum_i i\, p_i`,
    shape ``logits.shape[:-1]``: :func:`jax_dfl.decode` as a module, for
    models that compose modules.

    Examples:
      >>> import jax.numpy as jnp
      >>> print(Integral()(jnp.zeros((2, 5))))  # uniform over bins 0..4
      [2. 2.]

    References:
      Li et al., `Generalized Focal Loss: Learning Qualified and Distributed
      Bounding Boxes for Dense Object Detection <https://arxiv.org/abs/2006.04388>`_,
      NeurIPS 2020.
    """

    def __call__(self, logits: ArrayLike) -> jax.Array:
        # Checked here too, so that an error names Integral, not the decode it calls.
        (logits,) = _checks.arrays(
            "Integral", logits=(logits, "float", "... num_bins"), minimum={"num_bins": 2}
        )
        return decode(logits)
