"""Turning a predicted bin distribution back into a value."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jax_dfl import _checks


def decode(logits: ArrayLike) -> jax.Array:
    r"""Expected bin value of ``softmax(logits)``: :math:`\sum_i i\, p_i`.

    This is the "integral" step of GFL/DFL heads at inference. It is computed
    as ``sum(i * e_i) / sum(e_i)`` with ``e = exp(x - max(x))``, so it costs one
    pass like a logsumexp and never stores the softmax.

    Examples:
      The seed document's decode of ``0.2`` on bin 4 and ``0.8`` on bin 5:

      >>> import jax.numpy as jnp, jax_dfl
      >>> p = jnp.array([0.0, 0.0, 0.0, 0.0, 0.2, 0.8])
      >>> print(f"{jax_dfl.decode(jnp.log(p)):.4f}")
      4.8000

    Args:
      logits: ``(..., num_bins)`` floating logits; ``-inf`` marks a bin of
        probability 0.

    Returns:
      Shape ``logits.shape[:-1]``, in bin units, with the logits' dtype
      promoted to at least float32.
    """
    logits = jnp.asarray(logits)
    num_bins = _checks.check_logits(logits)
    x = logits.astype(_checks.compute_dtype(logits.dtype))
    # The result does not depend on the shift, so no gradient flows through it.
    shift = lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    e = jnp.exp(x - shift)
    bins = jnp.arange(num_bins, dtype=x.dtype)
    return jnp.sum(e * bins, axis=-1) / jnp.sum(e, axis=-1)
