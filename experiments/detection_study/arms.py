"""The compared box-regression arms: head type, bins and box loss, in one registry.

=================  ===========================================================================
``l1``             scalar head (softplus distances); L1 on the four distances in bins
``ciou``           scalar head; 1 - CIoU of the decoded box
``ciou_l1``        scalar head; 1 - CIoU, plus gain x L1 on the four distances in bins
``ciou_dist``      distribution head decoded by expectation, 1 - CIoU only (no DFL): the head's
                   effect without the loss's
``ciou_dist_l1``   distribution head decoded by expectation; 1 - CIoU, plus gain x L1 on the decoded
                   distances, targets clipped to the bins as DFL clips them (no two-hot target)
``ciou_dfl``       distribution head, :func:`jax_dfl.yolo_box_loss` (CIoU + DFL, YOLOv8's box loss)
``ciou_dfl_log``   as ``ciou_dfl`` with log-spaced bin values (DFL with ``bin_values``)
``ciou_hl_gauss``  distribution head, CIoU + HL-Gauss cross-entropy (:func:`jax_dfl.hl_gauss_loss`)
=================  ===========================================================================

Every arm's per-image loss is ``(box_term, distribution_term)`` summed over the
foreground with the assigner's soft score of each point as its weight, divided
by the batch's summed target score (``normalizer``), as YOLOv8 normalises. The
trainer multiplies the first by ``box_gain`` and the second (the auxiliary term) by
the run's gain, a traced value (default ``TrainConfig.dist_gain``); arms without an
auxiliary term (``Arm.auxiliary`` false) return 0 for it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jax_dfl import (
    bbox2distance,
    ciou_loss,
    distance2bbox,
    distribution_focal_loss,
    hl_gauss_loss,
    yolo_box_loss,
)
from jax_dfl.decoding import decode

NUM_BINS = 16  # ultralytics' reg_max: distances 0..15 bins
HL_GAUSS_SIGMA = 0.75  # in bins; Farebrother et al. (2024) recommend sigma / bin width = 0.75


def log_bin_values(num_bins: int = NUM_BINS) -> np.ndarray:
    """0, then geometric from 1/4 bin to ``num_bins - 1``: fine steps at short distances (small objects)."""
    return np.concatenate([[0.0], np.geomspace(0.25, num_bins - 1, num_bins - 1)])


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    distribution: bool
    log_bins: bool = False
    requires: str | None = None  # a module that must import for the arm to run

    @property
    def auxiliary(self) -> bool:
        """Whether the arm has a second box term weighed by the (tuned) auxiliary gain."""
        return self.name not in ("l1", "ciou", "ciou_dist")

    @property
    def num_bins(self) -> int | None:
        return NUM_BINS if self.distribution else None

    @property
    def bin_values(self) -> np.ndarray | None:
        return log_bin_values() if self.log_bins else None

    def distances(self, box_out: jax.Array) -> jax.Array:
        """Predicted side distances in bins (stride units) from the head's raw output."""
        if not self.distribution:
            return jax.nn.softplus(box_out)
        return decode(box_out, bin_values=self.bin_values)


ARMS: dict[str, Arm] = {
    arm.name: arm
    for arm in (
        Arm("l1", distribution=False),
        Arm("ciou", distribution=False),
        Arm("ciou_l1", distribution=False),
        Arm("ciou_dist", distribution=True),
        Arm("ciou_dist_l1", distribution=True),
        Arm("ciou_dfl", distribution=True),
        Arm("ciou_dfl_log", distribution=True, log_bins=True),
        Arm("ciou_hl_gauss", distribution=True),
    )
}
REFERENCES = ("ciou", "ciou_dist")  # the paired differences are taken against these


def unavailable_reason(name: str) -> str | None:
    """Why an arm cannot run here (its module does not import), or None."""
    arm = ARMS[name]
    if arm.requires is None:
        return None
    try:
        importlib.import_module(arm.requires)
    except ImportError as error:
        return f"arm {name!r} skipped: {arm.requires} is not available ({error})"
    return None


def available(names) -> tuple[list[str], list[str]]:
    """``(runnable arms, messages for the skipped ones)``."""
    runnable, skipped = [], []
    for name in names:
        reason = unavailable_reason(name)
        (skipped if reason else runnable).append(reason or name)
    return runnable, skipped


def _weighted(values: jax.Array, weight: jax.Array, foreground: jax.Array, normalizer) -> jax.Array:
    return jnp.sum(jnp.where(foreground, values * weight, 0)) / jnp.maximum(normalizer, 1)


def box_loss(
    arm: Arm,
    box_out: jax.Array,
    pred_boxes: jax.Array,
    points: jax.Array,
    point_strides: jax.Array,
    target_boxes: jax.Array,
    target_scores: jax.Array,
    foreground: jax.Array,
    normalizer: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """``(box_term, distribution_term)`` for one image (vmap over the batch)."""
    weight = jnp.sum(target_scores, axis=-1)
    if arm.name == "ciou_dfl":
        # The library's YOLOv8 box loss, exactly (its own foreground gather and normalisation).
        return yolo_box_loss(
            box_out,
            pred_boxes,
            points,
            target_boxes,
            target_scores,
            foreground,
            point_strides=point_strides,
            normalizer=normalizer,
        )
    # Background points hold slot 0's box (or zeros): keep them well-formed for CIoU's maths.
    safe_targets = jnp.where(foreground[:, None], target_boxes, jnp.array([0.0, 0.0, 2.0, 2.0]))
    safe_pred = jnp.where(foreground[:, None], pred_boxes, jnp.array([0.0, 0.0, 2.0, 2.0]))
    target_bins = bbox2distance(points, safe_targets) / point_strides[:, None]
    zero = jnp.zeros((), pred_boxes.dtype)
    if arm.name == "l1":
        pred_bins = arm.distances(box_out)
        return _weighted(jnp.mean(jnp.abs(pred_bins - target_bins), -1), weight, foreground, normalizer), zero
    iou_term = _weighted(ciou_loss(safe_pred, safe_targets), weight, foreground, normalizer)
    if arm.name in ("ciou", "ciou_dist"):
        return iou_term, zero
    if arm.name in ("ciou_l1", "ciou_dist_l1"):  # L1 on the (decoded) distances in bins
        pred_bins = arm.distances(box_out)
        # The distribution head's decoded distance lies in [0, NUM_BINS - 1]: its targets are
        # clipped there as DFL clips them, so ciou_dist_l1 differs from ciou_dfl only in the loss.
        target = jnp.clip(target_bins, 0, NUM_BINS - 1) if arm.distribution else target_bins
        return iou_term, _weighted(jnp.mean(jnp.abs(pred_bins - target), -1), weight, foreground, normalizer)
    sides = jnp.broadcast_to(foreground[:, None], target_bins.shape)
    if arm.name == "ciou_dfl_log":
        dist = distribution_focal_loss(box_out, target_bins, where=sides, bin_values=arm.bin_values)
    elif arm.name == "ciou_hl_gauss":
        # HL-Gauss does not clip: targets beyond the last bin keep mass at the end of the support.
        clipped = jnp.clip(target_bins, 0, NUM_BINS - 1)
        dist = hl_gauss_loss(box_out, clipped, sigma=HL_GAUSS_SIGMA, where=sides)
    else:
        raise ValueError(f"unknown arm {arm.name!r}")
    return iou_term, _weighted(jnp.mean(dist, -1), weight, foreground, normalizer)


def decoded_boxes(arm: Arm, box_out: jax.Array, points: jax.Array, point_strides: jax.Array) -> jax.Array:
    """xyxy pixel boxes of every point: distances in bins times the point's stride."""
    return distance2bbox(points, arm.distances(box_out) * point_strides[:, None])


BoxLoss = Callable[..., tuple[jax.Array, jax.Array]]
