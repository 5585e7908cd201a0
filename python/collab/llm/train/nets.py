"""Torch versions of the two nets, trained in standardised coordinates and exported with the
standardisation folded into the first/last layer (collab.llm.artifact.FcNet holds plain W, b).

Shortcut (Eq. 3's projection v): y = x + s * MLP((x - mx) / sx) + m, MLP = 4 FC layers
d -> d -> 4d -> d -> d with GELU between; (mx, sx) standardise the embeddings, (m, s) the
residual target - x, so at init (last layer zero) y = x + m.
Codec (Eq. 1's omega): encoder (x - mx) / sx -> d/2 -> k, decoder k -> d/2 -> (x' - mx) / sx.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..artifact import KIND_CODEC, KIND_SHORTCUT, FcNet

__all__ = ["Shortcut", "Codec", "stats"]


def _gelu(x):
    return F.gelu(x, approximate="tanh")


def stats(x: torch.Tensor, floor: float = 1e-3):
    m = x.mean(0)
    s = x.std(0).clamp_min(floor)
    return m, s


class _Affine(torch.nn.Module):
    def __init__(self, m, s):
        super().__init__()
        self.register_buffer("m", torch.as_tensor(m, dtype=torch.float32).clone())
        self.register_buffer("s", torch.as_tensor(s, dtype=torch.float32).clone())


class Shortcut(torch.nn.Module):
    def __init__(self, d: int, in_stats, out_stats):
        super().__init__()
        dims = [d, d, 4 * d, d, d]
        self.fc = torch.nn.ModuleList(torch.nn.Linear(dims[i], dims[i + 1]) for i in range(4))
        torch.nn.init.zeros_(self.fc[3].weight)
        torch.nn.init.zeros_(self.fc[3].bias)
        self.inp = _Affine(*in_stats)
        self.out = _Affine(*out_stats)

    def mlp(self, x):  # standardised residual
        h = (x - self.inp.m) / self.inp.s
        for i, fc in enumerate(self.fc):
            h = fc(h)
            if i < 3:
                h = _gelu(h)
        return h

    def forward(self, x):
        return x + self.mlp(x) * self.out.s + self.out.m

    def export(self, **hdr) -> FcNet:
        W = [fc.weight.detach().double().numpy() for fc in self.fc]
        B = [fc.bias.detach().double().numpy() for fc in self.fc]
        mx, sx = self.inp.m.double().numpy(), self.inp.s.double().numpy()
        m, s = self.out.m.double().numpy(), self.out.s.double().numpy()
        W[0], B[0] = W[0] / sx[None, :], B[0] - W[0] @ (mx / sx)
        W[3], B[3] = W[3] * s[:, None], B[3] * s + m
        t = {}
        for i in range(4):
            t[f"w{i + 1}"], t[f"b{i + 1}"] = W[i].astype(np.float32), B[i].astype(np.float32)
        return FcNet(KIND_SHORTCUT, W[0].shape[1], tensors=t, **hdr)


class Codec(torch.nn.Module):
    def __init__(self, d: int, k: int, row_stats):
        super().__init__()
        h = d // 2
        self.enc1, self.enc2 = torch.nn.Linear(d, h), torch.nn.Linear(h, k)
        self.dec1, self.dec2 = torch.nn.Linear(k, h), torch.nn.Linear(h, d)
        self.norm = _Affine(*row_stats)

    def encode(self, x):
        return self.enc2(_gelu(self.enc1((x - self.norm.m) / self.norm.s)))

    def decode_std(self, c):
        return self.dec2(_gelu(self.dec1(c)))

    def decode(self, c):
        return self.decode_std(c) * self.norm.s + self.norm.m

    def forward(self, x):
        return self.decode(self.encode(x))

    def export(self, **hdr) -> FcNet:
        g = lambda l: (l.weight.detach().double().numpy(), l.bias.detach().double().numpy())  # noqa: E731
        (e1, eb1), (e2, eb2), (d1, db1), (d2, db2) = g(self.enc1), g(self.enc2), g(self.dec1), g(self.dec2)
        m, s = self.norm.m.double().numpy(), self.norm.s.double().numpy()
        e1, eb1 = e1 / s[None, :], eb1 - e1 @ (m / s)
        d2, db2 = d2 * s[:, None], db2 * s + m
        t = {"enc1.w": e1, "enc1.b": eb1, "enc2.w": e2, "enc2.b": eb2, "dec1.w": d1, "dec1.b": db1,
             "dec2.w": d2, "dec2.b": db2}
        return FcNet(KIND_CODEC, e1.shape[1], tensors={k: v.astype(np.float32) for k, v in t.items()},
                     code_dim=e2.shape[0], **hdr)
