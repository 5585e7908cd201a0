"""What Mercury is compared against (torch, training / evaluation only).

Token reduction:
  ToMe          bipartite soft matching in every block (Bolya et al., ICLR 2023), applied to a
                model by apply_tome() with a per-block schedule: 'constant' r (OTAS-style) or
                'decay' r_i = r0 * 0.7^i (Janus-style, most merging in the first blocks).
  top-k         attention-score pruning after layer 1: keep the tokens the CLS attends to most
                (ATS-like, the paper's [17]).
Reconstruction of the pruned tokens on the server (Mercury Table II), besides the meta tokens of
collab.vit.mercury:
  zero_fill     K zero tokens,
  duplicate_fill  every pruned position filled with its region's preserved token,
  DeconvGenerator a conv + deconvolution generator regenerating the grid.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from . import prune_count
from .hooks import Attention, BlockHook

# --- ToMe --------------------------------------------------------------------------------------


def tome_merge(x, metric, size, r):
    """ToMe bipartite soft matching (Bolya et al., ICLR 2023, Sec. 3): alternate tokens into
    sets A and B, match each A token to its most similar B token (cosine of keys), merge the r
    most similar edges into B by size-weighted average. The CLS token (index 0) is never merged."""
    b, t, c = x.shape
    if size is None:
        size = torch.ones(b, t, 1, dtype=x.dtype, device=x.device)
    r = min(r, (t - 1) // 2)
    if r <= 0:
        return x, size
    m = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    a_m, b_m = m[:, ::2], m[:, 1::2]
    scores = a_m @ b_m.transpose(-1, -2)
    scores[:, 0, :] = -math.inf  # CLS sits in A at index 0: protect it
    node_max, node_idx = scores.max(-1)
    order = node_max.argsort(-1, descending=True)[..., None]
    unm_idx = order[:, r:]
    src_idx = order[:, :r]
    dst_idx = node_idx[..., None].gather(1, src_idx)
    xs = x * size
    a_x, b_x = xs[:, ::2], xs[:, 1::2]
    a_s, b_s = size[:, ::2], size[:, 1::2]
    unm_x = a_x.gather(1, unm_idx.expand(-1, -1, c))
    unm_s = a_s.gather(1, unm_idx)
    src_x = a_x.gather(1, src_idx.expand(-1, -1, c))
    src_s = a_s.gather(1, src_idx)
    b_x = b_x.scatter_add(1, dst_idx.expand(-1, -1, c), src_x)
    b_s = b_s.scatter_add(1, dst_idx, src_s)
    # keep CLS first: unm_idx is sorted by similarity; put index-0 back in front
    unm_sorted, perm = unm_idx.sort(1)
    unm_x = unm_x.gather(1, perm.expand(-1, -1, c))
    unm_s = unm_s.gather(1, perm)
    new_x = torch.cat([unm_x, b_x], 1)
    new_s = torch.cat([unm_s, b_s], 1)
    return new_x / new_s, new_s


def tome_schedule(kind: str, r: float, depth: int = 12, tokens: int = 65):
    """Per-block merge counts. 'constant' (OTAS-style): r tokens in every block.
    'decay' (Janus-style): r_i = r * a^i with a = 0.7, most merging in the first blocks.
    Counts are clipped so at least the CLS and one patch token remain."""
    if kind == "constant":
        raw = [r] * depth
    elif kind == "decay":
        raw = [r * 0.7 ** i for i in range(depth)]
    else:
        raise ValueError(f"ToMe schedule kind must be 'constant' or 'decay', got {kind!r}")
    out, t = [], tokens
    for v in raw:
        m = min(int(round(v)), (t - 1) // 2)
        out.append(m)
        t -= m
    return out


class TomeState:
    """Per-model ToMe state: the merge schedule and the token sizes of the batch in flight (reset
    when images enter block 0; a split run carries .size from the device part to the server part)."""

    def __init__(self, schedule):
        self.schedule = list(schedule)
        self.size = None


class _TomeHook(BlockHook):
    def __init__(self, state: TomeState, i: int):
        self.state, self.i = state, i

    def enter(self, x):
        if self.i == 0:
            self.state.size = None
        return x

    def attn_bias(self, x):
        s = self.state.size   # proportional attention: log(size) on the logits
        return None if s is None else s.log().transpose(1, 2)[:, None]

    def after_attention(self, x, att: Attention):
        r = self.state.schedule[self.i]
        if r > 0:
            x, self.state.size = tome_merge(x, att.key_mean, self.state.size, r)
        return x


def apply_tome(model, r: float, kind: str = "constant"):
    """Patch a TorchViT with ToMe (schedule tome_schedule(kind, r)) and return it; model.tome is
    the TomeState. model.clear_hooks() restores the plain model."""
    state = TomeState(tome_schedule(kind, r, model.depth, 1 + model.grid * model.grid))
    model.clear_hooks()
    for i in range(model.depth):
        model.set_hook(i, _TomeHook(state, i))
    model.tome = state
    return model


# --- attention top-k ----------------------------------------------------------------------------

def cls_attention(att: Attention):
    """CLS -> grid token attention (B, N), mean over heads, from a block's Attention."""
    return att.probs.mean(1)[:, 0, 1:]


def kept_topk(cls_attn: np.ndarray, rate: float, region: int = 2) -> np.ndarray:
    """Keep the N - K grid tokens the CLS attends to most (K as for regional pruning at this rate):
    kept indices (B, 1 + N - K), CLS first, ascending."""
    b, n = cls_attn.shape
    k = prune_count(n, rate, region)
    order = np.argsort(-cls_attn, axis=1, kind="stable")[:, : n - k]
    kept = np.sort(order, 1) + 1
    return np.concatenate([np.zeros((b, 1), np.int64), kept], 1)


# --- reconstruction alternatives (Table II) ------------------------------------------------------

def zero_fill(x: torch.Tensor, k: int) -> torch.Tensor:
    """K zero tokens appended to x (B, T', C)."""
    return torch.cat([x, torch.zeros(x.shape[0], k, x.shape[-1], dtype=x.dtype)], 1)


def duplicate_fill(x: torch.Tensor, kept: np.ndarray, grid: int, region: int = 2) -> torch.Tensor:
    """Append, for every pruned grid position, a copy of the kept token nearest in its region
    (the region's preserved token for regional pruning; CLS if the region kept none)."""
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
            r0, c0 = r - r % region, c - c % region
            cand = [1 + (r0 + u) * grid + c0 + v for u in range(region) for v in range(region)]
            cand = [c_ for c_ in cand if c_ in ks] or [0]
            src.append(pos[cand[0]])
        outs.append(x[i, src])
    return torch.cat([x, torch.stack(outs)], 1)


class DeconvGenerator(nn.Module):
    """Generation baseline (Table II): kept tokens scattered onto the grid (zeros elsewhere),
    then a ConvTranspose(k=2, s=2) after a stride-2 conv regenerates a full grid; the pruned
    positions are read from it. The convolutions work on the tokens divided by their standard
    deviation (DINOv2's residual stream has channels in the hundreds, which made the generator
    diverge within a few hundred Adam steps), and the deconvolution weights start at zero (the
    training recipe sets its bias to the mean token, so training starts from mean-token padding)."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.down = nn.Conv2d(dim, hidden, 2, 2)
        self.up = nn.ConvTranspose2d(hidden, dim, 2, 2)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor, kept: np.ndarray, grid: int) -> torch.Tensor:
        b, t, c = x.shape
        canvas = torch.zeros(b, grid * grid, c)
        idx = torch.from_numpy(kept[:, 1:] - 1).long()
        canvas = canvas.scatter(1, idx[:, :, None].expand(-1, -1, c), x[:, 1:])
        scale = x[:, 1:].detach().float().std().clamp_min(1e-6)
        g = canvas.transpose(1, 2).reshape(b, c, grid, grid) / scale
        full = (self.up(torch.relu(self.down(g))) * scale).reshape(b, c, grid * grid).transpose(1, 2)
        full = full.to(x.dtype)
        mask = torch.ones(b, grid * grid, dtype=torch.bool)
        mask.scatter_(1, idx, False)
        gen = full[mask].reshape(b, -1, c)
        return torch.cat([x, gen], 1)


def deconv_flops(grid: int, dim: int, hidden: int) -> float:
    """Multiply-add FLOPs (x2) of DeconvGenerator on one image: the 2x2 conv and the 2x2 deconv
    per coarse cell."""
    return 2.0 * (grid // 2) ** 2 * (dim * hidden * 4) * 2


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
