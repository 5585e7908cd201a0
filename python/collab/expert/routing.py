"""Algorithm 1 of the paper (top-k routing) on a batch of edge-model logits."""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import InvalidArgument


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax in float64 (fewer spurious ties than float32)."""
    z = logits.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _check(logits, tau, k, partition_of):
    x = np.asarray(logits)
    if x.ndim != 2 or x.shape[1] < 1:
        raise InvalidArgument(f"logits must be (B, C) with C >= 1, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise InvalidArgument(f"logits must be numeric, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise InvalidArgument("logits contain NaN or Inf")
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not 0.0 <= float(tau) <= 1.0:
        raise InvalidArgument(f"tau must be a number in [0, 1], got {tau!r}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InvalidArgument(f"k must be an integer >= 1, got {k!r}")
    try:
        parts = np.asarray(partition_of)
    except (TypeError, ValueError):
        raise InvalidArgument("partition_of must be a sequence of integers") from None
    if parts.ndim != 1 or parts.shape[0] != x.shape[1]:
        raise InvalidArgument(f"partition_of must have one entry per class ({x.shape[1]}), got shape {parts.shape}")
    if parts.size and (not np.issubdtype(parts.dtype, np.integer) or parts.min() < 0):
        raise InvalidArgument("partition_of entries must be non-negative integers")
    return x, float(tau), int(k), parts.astype(np.int64)


def route(logits, *, tau, k=2, partition_of):
    """Algorithm 1 on a batch.

    logits (B, C); partition_of: length-C sequence of partition ids.
    Returns (local, pred, expert): local (B,) bool, True where the max softmax probability
    >= tau; pred (B,) int64 argmax; expert: list of B tuples, () for local samples, else the
    sorted partition ids of the top-k classes (k > C means all classes). Ties in probability
    rank the lower class index first (for pred too).
    """
    x, tau, k, parts = _check(logits, tau, k, partition_of)
    p = softmax(x)
    order = np.argsort(-p, axis=1, kind="stable")  # stable: equal probabilities keep class order
    pred = order[:, 0].astype(np.int64)
    conf = p[np.arange(len(p)), pred]
    local = conf >= tau
    top = parts[order[:, :min(k, x.shape[1])]]
    expert = [() if loc else tuple(sorted(set(int(v) for v in row))) for loc, row in zip(local, top)]
    return local, pred, expert
