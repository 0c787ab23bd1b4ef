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
