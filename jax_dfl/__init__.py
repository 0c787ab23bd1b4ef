"""jax_dfl: Distribution Focal Loss and the rest of Generalized Focal Loss in JAX."""

from jax_dfl.assignment import Assignment, task_aligned_assign
from jax_dfl.boxes import (
    anchor_points,
    bbox2distance,
    box_iou,
    ciou_loss,
    decode_boxes,
    diou_loss,
    distance2bbox,
    giou_loss,
    pairwise_iou,
)
from jax_dfl.classification import quality_focal_loss
from jax_dfl.decoding import DistributionStats, decode, distribution_stats
from jax_dfl.distillation import distribution_distillation_loss
from jax_dfl.histogram_losses import hl_gauss, hl_gauss_loss
from jax_dfl.losses import (
    distribution_focal_kl,
    distribution_focal_loss,
    two_hot,
    two_hot_entropy,
    validate_targets,
)
from jax_dfl.nms import non_max_suppression
from jax_dfl.yolo import validate_foreground, yolo_box_loss

__all__ = [
    "Assignment",
    "DistributionStats",
    "anchor_points",
    "bbox2distance",
    "box_iou",
    "ciou_loss",
    "decode",
    "decode_boxes",
    "diou_loss",
    "distance2bbox",
    "distribution_distillation_loss",
    "distribution_focal_kl",
    "distribution_focal_loss",
    "distribution_stats",
    "giou_loss",
    "hl_gauss",
    "hl_gauss_loss",
    "non_max_suppression",
    "pairwise_iou",
    "quality_focal_loss",
    "task_aligned_assign",
    "two_hot",
    "two_hot_entropy",
    "validate_foreground",
    "validate_targets",
    "yolo_box_loss",
]

__version__ = "0.2.0"
