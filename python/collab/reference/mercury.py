"""Pure-numpy reference of Mercury's regionally decentralized token pruning (Algorithm 1).

Conventions shared with the native kernel (cpp/src/vit/regional_prune.cpp):
  * attn_out: (T, C) or (B, T, C) attention outputs of the first transformer layer; with
    has_cls, token 0 is CLS (never pruned, not part of the grid) and the other N = T - 1
    tokens form a k x k grid in row-major order (k = sqrt(N), region l must divide k).
  * Eq. 11: cosine similarity in float64; a zero vector has similarity 0 with everything
    (its norm is clamped to 1e-300 before dividing, so it normalises to the zero vector).
  * Eq. 12: s_i = sum_j Sim_ij over the N grid tokens (j = i included).
  * All sums run sequentially (channel / token order) in float64, as in C++, so exact ties
    (duplicated or zero tokens) resolve identically in both.
  * Eq. 15: argmax of s inside each l x l subregion; ties go to the first token in row-major
    order inside the subregion.
  * Eq. 18: every other token gets m_i = max over the preserved tokens of Sim_ij; the K tokens
    with the largest m_i are pruned, ties going to the lower token index.
  * K = n_prune_for(N, rate, l) = floor(rate * N + 0.5), at most N - N / l^2.
  * Output: kept indices into the T input tokens, ascending (CLS first), T - K of them.
NaN or Inf inputs raise InvalidArgument (a ValueError).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidArgument


def grid_side(n_tokens: int, region: int) -> int:
    if region < 1:
        raise InvalidArgument("region must be >= 1")
    k = math.isqrt(n_tokens)
    if n_tokens < 1 or k * k != n_tokens:
        raise InvalidArgument(f"{n_tokens} grid tokens do not form a square grid")
    if k % region:
        raise InvalidArgument(f"grid side {k} is not divisible by region {region}")
    return k


def n_prune_for(n_patches: int, rate: float, region: int = 2) -> int:
    """Number of tokens K pruned at this rate (0 <= rate <= 1 - 1/region^2)."""
    rate = float(rate)
    if not math.isfinite(rate) or rate < 0:
        raise InvalidArgument(f"rate must be a finite number >= 0, got {rate}")
    max_k = n_patches - n_patches // (region * region)
    k = int(math.floor(rate * n_patches + 0.5))
    if k > max_k:
        raise InvalidArgument(f"rate {rate} prunes {k} of {n_patches} tokens; region {region} allows at most "
                              f"{max_k} ({100 * (1 - 1 / region ** 2):.0f}%)")
    return k


def _cosine(o: np.ndarray) -> np.ndarray:
    """Cosine similarity with the native kernel's exact rounding: float64, sums run
    sequentially over channels (no pairwise / BLAS reassociation), divide by the norm."""
    o = o.astype(np.float64)
    nn = np.zeros(len(o))
    for c in range(o.shape[1]):
        nn += o[:, c] * o[:, c]
    u = o / np.maximum(np.sqrt(nn), 1e-300)[:, None]
    sim = np.zeros((len(o), len(o)))
    for c in range(o.shape[1]):
        sim += u[:, c, None] * u[None, :, c]
    return sim


def _row_sums(sim: np.ndarray) -> np.ndarray:
    s = np.zeros(len(sim))
    for j in range(sim.shape[1]):
        s += sim[:, j]
    return s


def prune_order(attn_out: np.ndarray, region: int = 2, has_cls: bool = True):
    """For one image (T, C): (preserved grid indices (Eq. 16), the other grid indices in
    pruning order (Eq. 18)). Grid indices exclude the CLS offset."""
    o = np.asarray(attn_out)
    if o.ndim != 2:
        raise InvalidArgument(f"expected (T, C), got {o.shape}")
    if not np.all(np.isfinite(o)):
        raise InvalidArgument("attention outputs contain NaN or Inf")
    g = o[1:] if has_cls else o
    n = g.shape[0]
    k = grid_side(n, region)
    sim = _cosine(g)
    s = _row_sums(sim)
    grid = s.reshape(k, k)
    kept = []
    for p in range(k // region):
        for q in range(k // region):
            sub = grid[p * region:(p + 1) * region, q * region:(q + 1) * region]
            u, v = divmod(int(np.argmax(sub)), region)   # first max in row-major order
            kept.append((p * region + u) * k + (q * region + v))
    kept = np.array(sorted(kept), np.int64)
    rest = np.setdiff1d(np.arange(n), kept)
    msim = sim[np.ix_(rest, kept)].max(1)
    order = rest[np.lexsort((rest, -msim))]   # largest max-similarity first, then lower index
    return kept, order


def regional_prune(attn_out: np.ndarray, rate: float, region: int = 2, has_cls: bool = True) -> np.ndarray:
    """Kept token indices: (T - K,) for (T, C) input, (B, T - K) for (B, T, C)."""
    o = np.asarray(attn_out)
    if o.ndim not in (2, 3):
        raise InvalidArgument(f"attn_out must be (T, C) or (B, T, C), got shape {o.shape}")
    if o.shape[-1] < 1 or o.shape[-2] < 1 + int(has_cls):
        raise InvalidArgument(f"attn_out shape {o.shape} has no grid tokens")
    single = o.ndim == 2
    if single:
        o = o[None]
    t = o.shape[1]
    n = t - int(has_cls)
    grid_side(n, region)
    kk = n_prune_for(n, rate, region)
    off = int(has_cls)
    out = np.empty((o.shape[0], t - kk), np.int64)
    for b in range(o.shape[0]):
        _, order = prune_order(o[b], region, has_cls)
        pruned = set((order[:kk] + off).tolist())
        out[b] = [i for i in range(t) if i not in pruned]
    return out[0] if single else out
