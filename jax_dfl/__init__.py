"""jax_dfl: Distribution Focal Loss and the rest of Generalized Focal Loss in JAX."""

from jax_dfl.decoding import decode
from jax_dfl.losses import distribution_focal_loss, two_hot, validate_targets

__all__ = [
    "decode",
    "distribution_focal_loss",
    "two_hot",
    "validate_targets",
]

__version__ = "0.1.0"
