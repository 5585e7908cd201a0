"""A ViT classifier (collab.vit.torch_vit body + linear head) whose forward can apply
structured masks, so that d loss / d mask gives each head / MLP neuron / residual channel its
loss-based importance (Michel et al. 2019, Voita et al. 2019, Hou et al. 2020)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from collab.vit.torch_vit import TorchViT

HEAD_DIM = 64  # DINOv2 / DeiT: width = heads * 64, MLP = 4 * width


class VitClassifier(nn.Module):
    def __init__(self, body: TorchViT, num_classes: int = 10):
        super().__init__()
        self.body = body
        self.head = nn.Linear(body.dim, num_classes)
        for p in self.parameters():
            p.requires_grad_(True)

    @property
    def heads(self) -> int:
        return self.body.blocks[0].heads

    def forward(self, images=None, *, tokens=None, start: int = 0, masks=None):
        """images (B, 3, H, W), or tokens (B, T, C) entering block `start` (cached features).
        masks: None or dict(head=(L, H), neuron=(L, M), channel=(C,)) tensors of ones."""
        b = self.body
        x = b.embed(images) if tokens is None else tokens
        if masks is None:
            x = b.run_blocks(x, start, len(b.blocks))
            return self.head(b.features(x))
        cm = masks["channel"]
        x = x * cm
        for i in range(start, len(b.blocks)):
            x = _masked_block(b.blocks[i], x, masks["head"][i], masks["neuron"][i], cm)
        return self.head(b.features(x))


def _masked_block(blk, x, hm, nm, cm):
    bsz, t, c = x.shape
    h = blk.ln1(x)
    d = blk.q.out_features // blk.heads
    q = blk.q(h).view(bsz, t, blk.heads, d).transpose(1, 2)
    k = blk.k(h).view(bsz, t, blk.heads, d).transpose(1, 2)
    v = blk.v(h).view(bsz, t, blk.heads, d).transpose(1, 2)
    a = ((q @ k.transpose(-1, -2)) / math.sqrt(d)).softmax(-1)
    out = (a @ v) * hm[None, :, None, None]
    x = (x + blk.ls1 * blk.o(out.transpose(1, 2).reshape(bsz, t, -1))) * cm
    u = F.gelu(blk.fc1(blk.ln2(x))) * nm
    return (x + blk.ls2 * blk.fc2(u)) * cm


def ones_masks(model: VitClassifier):
    b = model.body
    return {"head": torch.ones(len(b.blocks), model.heads, requires_grad=True),
            "neuron": torch.ones(len(b.blocks), b.blocks[0].fc1.out_features, requires_grad=True),
            "channel": torch.ones(b.dim, requires_grad=True)}
