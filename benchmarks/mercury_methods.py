"""Token-reduction methods on cached layer-1 tokens (torch, training/evaluation only).

Every method maps cached layer-1 outputs (B, 65, C) to server-side logits; what differs:
  ours        regional pruning (collab.vit.regional_prune, native) after layer 1
  topk        attention-score top-k pruning after layer 1 (CLS attention of layer 1, ATS-like)
  tome        ToMe bipartite merging in every block with a per-block schedule (OTAS / Janus)
Reconstruction on the server at the split: meta tokens (ours), zeros, duplication of the
region's preserved token, or a deconvolution generator (Mercury Table II).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

import collab.vit as cv

REGION = 2


def kept_ours(ao: np.ndarray, rate: float) -> np.ndarray:
    return cv.regional_prune(np.ascontiguousarray(ao), rate, REGION)


def kept_topk(cls_attn: np.ndarray, rate: float) -> np.ndarray:
    """cls_attn (B, N): CLS->token attention of layer 1 (mean over heads); keep the N-K largest."""
    b, n = cls_attn.shape
    k = cv.prune_count(n, rate, REGION)
    order = np.argsort(-cls_attn, axis=1, kind="stable")[:, : n - k]
    kept = np.sort(order, 1) + 1
    return np.concatenate([np.zeros((b, 1), np.int64), kept], 1)


def gather(x: torch.Tensor, kept: np.ndarray) -> torch.Tensor:
    idx = torch.from_numpy(kept).long()[:, :, None].expand(-1, -1, x.shape[-1])
    return x.gather(1, idx)


def tome_schedule(kind: str, r: float, depth: int = 12, tokens: int = 65):
    """Per-block merge counts. 'constant' (OTAS-style): r tokens in every block.
    'decay' (Janus-style): r_i = r * a^i with a = 0.7, most merging in the first blocks.
    Counts are clipped so at least the CLS and one patch token remain."""
    if kind == "constant":
        raw = [r] * depth
    elif kind == "decay":
        raw = [r * 0.7 ** i for i in range(depth)]
    else:
        raise ValueError(kind)
    out, t = [], tokens
    for v in raw:
        m = min(int(round(v)), (t - 1) // 2)
        out.append(m)
        t -= m
    return out


def duplicate_fill(x: torch.Tensor, kept: np.ndarray, grid: int) -> torch.Tensor:
    """Append, for every pruned grid position, a copy of the kept token nearest in its region
    (the region's preserved token for regional pruning)."""
    b = x.shape[0]
    n = grid * grid
    outs = []
    for i in range(b):
        ks = set(kept[i].tolist())
        pos = {t: j for j, t in enumerate(kept[i].tolist())}
        src = []
        for t in range(1, n + 1):
            if t in ks:
                continue
            r, c = divmod(t - 1, grid)
            r0, c0 = r - r % REGION, c - c % REGION
            cand = [1 + (r0 + u) * grid + c0 + v for u in range(REGION) for v in range(REGION)]
            cand = [c_ for c_ in cand if c_ in ks] or [0]
            src.append(pos[cand[0]])
        outs.append(x[i, src])
    return torch.cat([x, torch.stack(outs)], 1)


class DeconvGenerator(nn.Module):
    """Generation baseline (Table II): kept tokens scattered onto the grid (zeros elsewhere),
    then a ConvTranspose(k=4, s=2) after a stride-2 conv regenerates a full grid; the pruned
    positions are read from it."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.down = nn.Conv2d(dim, hidden, 2, 2)
        self.up = nn.ConvTranspose2d(hidden, dim, 2, 2)

    def forward(self, x: torch.Tensor, kept: np.ndarray, grid: int) -> torch.Tensor:
        b, t, c = x.shape
        canvas = torch.zeros(b, grid * grid, c)
        idx = torch.from_numpy(kept[:, 1:] - 1).long()
        canvas = canvas.scatter(1, idx[:, :, None].expand(-1, -1, c), x[:, 1:])
        g = canvas.transpose(1, 2).reshape(b, c, grid, grid)
        full = self.up(torch.relu(self.down(g))).reshape(b, c, grid * grid).transpose(1, 2)
        mask = torch.ones(b, grid * grid, dtype=torch.bool)
        mask.scatter_(1, idx, False)
        gen = full[mask].reshape(b, -1, c)
        return torch.cat([x, gen], 1)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def server_flops(tokens_per_block, dim=384, mlp=1536) -> float:
    """Multiply-add FLOPs (x2) of ViT blocks with the given token counts."""
    f = 0.0
    for t in tokens_per_block:
        f += 2 * t * (4 * dim * dim + 2 * dim * mlp) + 2 * 2 * t * t * dim
    return f


def accuracy(logits: torch.Tensor, y: np.ndarray) -> float:
    return float((logits.argmax(1).numpy() == y).mean())


def sqrt_int(n):
    return int(math.isqrt(n))
