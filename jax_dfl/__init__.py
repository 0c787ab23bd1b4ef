"""jax_dfl: Distribution Focal Loss and the rest of Generalized Focal Loss in JAX."""

from jax_dfl.boxes import bbox2distance, box_iou, decode_boxes, distance2bbox, giou_loss
from jax_dfl.classification import quality_focal_loss
from jax_dfl.decoding import DistributionStats, decode, distribution_stats
from jax_dfl.distillation import distribution_distillation_loss
from jax_dfl.losses import (
    distribution_focal_kl,
    distribution_focal_loss,
    two_hot,
    two_hot_entropy,
    validate_targets,
)

__all__ = [
    "DistributionStats",
    "bbox2distance",
    "box_iou",
    "decode",
    "decode_boxes",
    "distance2bbox",
    "distribution_distillation_loss",
    "distribution_focal_kl",
    "distribution_focal_loss",
    "distribution_stats",
    "giou_loss",
    "quality_focal_loss",
    "two_hot",
    "two_hot_entropy",
    "validate_targets",
]

__version__ = "0.1.0"
