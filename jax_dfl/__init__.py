"""jax_dfl: Distribution Focal Loss and the rest of Generalized Focal Loss in JAX.

Dense detectors (GFL, YOLOv8/v11, PP-YOLOE, NanoDet) predict each box side as a distribution over
``num_bins`` integer positions, train it with Distribution Focal Loss (cross-entropy against the
two-hot label of the target) and decode it as the expectation over the bins. This package holds
that loss, with a fused ``softmax - two_hot`` gradient, and the pieces around it, as pure functions
that work under ``jit``, ``vmap``, ``grad`` and sharded ``jit`` and return unreduced values.

What lives where (everything in the first group is importable from ``jax_dfl`` itself):

- ``jax_dfl.losses``: ``distribution_focal_loss``, ``distribution_focal_kl``, ``two_hot``,
  ``two_hot_entropy``, ``validate_targets`` (an opt-in ``checkify`` check).
- ``jax_dfl.decoding``: ``decode``, ``distribution_stats`` (GFLv2's statistics).
- ``jax_dfl.histogram_losses``: HL-Gauss labels and loss; ``jax_dfl.classification``: Quality
  Focal Loss; ``jax_dfl.distillation``: Localization Distillation.
- ``jax_dfl.boxes``: box <-> distance conversion, IoU / GIoU / DIoU / CIoU, anchor points;
  ``jax_dfl.assignment``: YOLOv8's task-aligned assigner; ``jax_dfl.yolo``: YOLOv8's box loss;
  ``jax_dfl.nms``: non-maximum suppression at static shapes; ``jax_dfl.box_range``: whether the
  bins cover the boxes (counts, a report, the clipped fraction of training targets).

Imported on their own:

- ``jax_dfl.nn``: Flax NNX modules (a distribution head, a parameter-free decode); needs flax,
  the ``nn`` extra.
- ``jax_dfl.evaluation``: COCO AP/AR through pycocotools, the ``eval`` extra.
- ``jax_dfl.inspection``: the gradient a loss gives at each error.
- ``jax_dfl.parallel``: data parallelism on a 1-D device mesh, one or several processes.

Every function follows the same input rules (dtypes, exact shapes, a NaN or infinite input gives
a non-finite output, masked elements give 0 value and 0 gradient); the documentation's Conventions
page states them, along
with ``num_bins`` against other libraries' ``reg_max`` (16 bins for YOLOv8's ``reg_max=16``, 17
for mmdetection's).

Examples:
  >>> import jax, jax.numpy as jnp
  >>> import jax_dfl
  >>> logits = jax.random.normal(jax.random.PRNGKey(0), (8, 4, 16))  # (anchors, sides, bins)
  >>> targets = jnp.full((8, 4), 3.7)  # distances in bin units (pixels / stride)
  >>> jax_dfl.distribution_focal_loss(logits, targets).shape  # unreduced
  (8, 4)
  >>> jax_dfl.decode(logits).shape  # expected bin value
  (8, 4)
"""

from jax_dfl.assignment import Assignment, task_aligned_assign, validate_assignment_inputs
from jax_dfl.box_range import (
    BoxRangeCounts,
    BoxRangeReport,
    box_range_counts,
    box_range_report,
    clipped_fraction,
    representable_range,
)
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
    "BoxRangeCounts",
    "BoxRangeReport",
    "DistributionStats",
    "anchor_points",
    "bbox2distance",
    "box_iou",
    "box_range_counts",
    "box_range_report",
    "ciou_loss",
    "clipped_fraction",
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
    "representable_range",
    "task_aligned_assign",
    "two_hot",
    "two_hot_entropy",
    "validate_assignment_inputs",
    "validate_foreground",
    "validate_targets",
    "yolo_box_loss",
]

__version__ = "0.3.0"  # the one place the version is written (pyproject.toml reads it)
