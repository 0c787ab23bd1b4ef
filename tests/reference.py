"""Float64 NumPy brute-force references, written independently of jax_dfl.

Loops over rows and bins on purpose: nothing here shares code or tricks with
the library it checks.
"""

from __future__ import annotations

import math

import numpy as np


def two_hot(targets, num_bins: int) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.float64)
    out = np.zeros(targets.shape + (num_bins,), dtype=np.float64)
    for pos in np.ndindex(targets.shape):
        y = min(max(float(targets[pos]), 0.0), num_bins - 1.0)
        if y == num_bins - 1:
            out[pos + (num_bins - 1,)] = 1.0
            continue
        k = math.floor(y)
        out[pos + (k,)] = (k + 1) - y
        out[pos + (k + 1,)] = y - k
    return out


def softmax(logits) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def dfl(logits, targets) -> np.ndarray:
    """Cross-entropy of the two-hot target against softmax(logits), per row."""
    logp = log_softmax(logits)
    t = two_hot(targets, logp.shape[-1])
    # 0 * log 0 counts as 0, as in the definition of cross-entropy.
    terms = np.where(t == 0, 0.0, t * np.where(t == 0, 0.0, logp))
    return -terms.sum(axis=-1)


def entropy(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    return -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=-1)


def decode(logits) -> np.ndarray:
    p = softmax(logits)
    return (p * np.arange(p.shape[-1])).sum(axis=-1)


def two_hot_values(targets, values) -> np.ndarray:
    """Linear interpolation weights between neighbouring (non-uniform) bin values."""
    values = np.asarray(values, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    out = np.zeros(targets.shape + values.shape, dtype=np.float64)
    for pos in np.ndindex(targets.shape):
        y = min(max(float(targets[pos]), values[0]), values[-1])
        for k in range(len(values) - 1):
            lo, hi = values[k], values[k + 1]
            if lo <= y <= hi:
                out[pos + (k,)] = (hi - y) / (hi - lo)
                out[pos + (k + 1,)] = (y - lo) / (hi - lo)
                break
    return out


def cross_entropy(target_dist, logits) -> np.ndarray:
    t = np.asarray(target_dist, dtype=np.float64)
    logp = log_softmax(logits)
    return -np.where(t == 0, 0.0, t * np.where(t == 0, 0.0, logp)).sum(axis=-1)


def sigmoid(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def quality_focal(logits, q, beta) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    # BCE = -(q log s + (1-q) log(1-s)) with log s = -log(1+e^-x), log(1-s) = -log(1+e^x).
    bce = q * np.logaddexp(0, -x) + (1 - q) * np.logaddexp(0, x)
    return bce * np.abs(sigmoid(x) - q) ** beta


def kl(p, q) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np.log(q)), 0).sum(axis=-1)


def giou(a, b) -> float:
    """GIoU of two xyxy boxes, written out for one pair."""
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    area_a = max(ax2 - ax1, 0) * max(ay2 - ay1, 0)
    area_b = max(bx2 - bx1, 0) * max(by2 - by1, 0)
    iw = max(min(ax2, bx2) - max(ax1, bx1), 0)
    ih = max(min(ay2, by2) - max(ay1, by1), 0)
    inter = iw * ih
    union = area_a + area_b - inter
    cw = max(ax2, bx2) - min(ax1, bx1)
    ch = max(ay2, by2) - min(ay1, by1)
    enclosing = cw * ch
    return inter / union - (enclosing - union) / enclosing
