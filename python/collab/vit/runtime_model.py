"""Numpy ViT for the device/server runtime (no torch). Same math and the same patch point
(collab.vit.hooks) as collab.vit.torch_vit."""
from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidArgument
from .hooks import Attention, BlockHook, pool_of
from .weights import HEADS, LN_EPS, VitWeights


def _erf(x):
    """erf to 1.5e-7 absolute (Abramowitz & Stegun 7.1.26), enough for float32 GELU."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return (sign * y).astype(x.dtype)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))


def _layernorm(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + np.float32(LN_EPS)) * w + b


class NumpyViT:
    """Flat float32 parameter dict; blocks numbered from 0 (block 0 = "layer 1" in the paper)."""

    def __init__(self, params: dict, grid: int):
        self.p = params
        self.grid = grid
        self.heads = int(params["heads"])
        self.depth = sum(1 for k in params if k.endswith(".q_w"))
        self.dim = params["cls"].shape[0]
        self.patch = params["patch_w"].shape[-1]
        self.hooks: dict[int, BlockHook] = {}

    def set_hook(self, i: int, hook: BlockHook | None):
        if not 0 <= i < self.depth:
            raise InvalidArgument(f"block {i} out of range [0, {self.depth})")
        if hook is None:
            self.hooks.pop(i, None)
        else:
            self.hooks[i] = hook

    def clear_hooks(self):
        self.hooks.clear()

    @classmethod
    def from_weights(cls, w: VitWeights, grid: int) -> "NumpyViT":
        flat = {"patch_w": w.patch_w, "patch_b": w.patch_b, "cls": w.cls, "pos": w.pos_embed(grid),
                "norm_w": w.norm_w, "norm_b": w.norm_b, "heads": HEADS}
        for i, b in enumerate(w.blocks):
            for k, v in b.items():
                flat[f"b{i}.{k}"] = v
        return cls(flat, grid)

    @property
    def image_size(self) -> int:
        return self.grid * self.patch

    def embed(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        s = self.image_size
        if images.ndim != 4 or images.shape[1:] != (3, s, s):
            raise InvalidArgument(f"images must be (B, 3, {s}, {s}), got {images.shape}")
        b = images.shape[0]
        g, p = self.grid, self.patch
        patches = images.reshape(b, 3, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(b, g * g, 3 * p * p)
        w = self.p["patch_w"].reshape(self.dim, -1)
        x = patches @ w.T + self.p["patch_b"]
        cls = np.broadcast_to(self.p["cls"], (b, 1, self.dim))
        return (np.concatenate([cls, x], 1) + self.p["pos"]).astype(np.float32)

    def block(self, x: np.ndarray, i: int, need_attn: bool = False):
        """Block i on x (B, T, C); with need_attn also the attention output before the residual."""
        p = lambda k: self.p[f"b{i}.{k}"]  # noqa: E731
        hook = self.hooks.get(i)
        if hook is not None:
            x = hook.enter(x)
        b, t, c = x.shape
        h = _layernorm(x, p("ln1_w"), p("ln1_b"))
        d = c // self.heads
        q = (h @ p("q_w") + p("q_b")).reshape(b, t, self.heads, d).transpose(0, 2, 1, 3)
        k = (h @ p("k_w") + p("k_b")).reshape(b, t, self.heads, d).transpose(0, 2, 1, 3)
        v = (h @ p("v_w") + p("v_b")).reshape(b, t, self.heads, d).transpose(0, 2, 1, 3)
        logits = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / math.sqrt(d))
        bias = None if hook is None else hook.attn_bias(x)
        if bias is not None:
            logits = logits + bias
        logits -= logits.max(-1, keepdims=True)
        a = np.exp(logits)
        a /= a.sum(-1, keepdims=True)
        ao = (a @ v).transpose(0, 2, 1, 3).reshape(b, t, c) @ p("o_w") + p("o_b")
        x = x + p("ls1") * ao
        if hook is not None:
            x = hook.after_attention(x, Attention(ao.astype(np.float32), k.mean(1), a))
        m = _gelu(_layernorm(x, p("ln2_w"), p("ln2_b")) @ p("fc1_w") + p("fc1_b")) @ p("fc2_w") + p("fc2_b")
        x = (x + p("ls2") * m).astype(np.float32)
        return (x, ao.astype(np.float32)) if need_attn else x

    def run_blocks(self, x: np.ndarray, start: int, end: int) -> np.ndarray:
        for i in range(start, end):
            x = self.block(x, i)
        return x

    def features(self, x: np.ndarray, pool: str = "cls") -> np.ndarray:
        """Final LayerNorm, then CLS ("cls") or CLS beside the mean of the other tokens ("cls+mean")."""
        h = _layernorm(x, self.p["norm_w"], self.p["norm_b"])
        if pool_of(pool) == "cls":
            return h[:, 0].astype(np.float32)
        return np.concatenate([h[:, 0], h[:, 1:].mean(1)], -1).astype(np.float32)

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Normalised CLS features of images (B, 3, S, S) through every block (and their hooks)."""
        return self.features(self.run_blocks(self.embed(images), 0, self.depth))
