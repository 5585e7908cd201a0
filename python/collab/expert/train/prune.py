"""Structured pruning of a ViT classifier by loss-based importance.

Importance of a unit = |d loss / d mask| of a mask of ones on its output (heads: the head's
attention output; neurons: the GELU output; embedding channels: the residual stream after the
embedding and after every residual add), accumulated over batches (Michel et al. 2019 / Voita et
al. 2019 / Hou et al. 2020, the metric the paper cites). We take |.| of each batch's gradient
(batch of 32) rather than per sample, to keep it at one backward pass per batch.

A student with h heads keeps, per block, the h most important heads; per block the 4*64*h most
important MLP neurons; and overall the 64*h most important residual channels (embedding width),
so it has the DeiT-style shape width = 64 h, MLP = 4 width and runs in the unchanged ViT code.
"""
from __future__ import annotations

import numpy as np
import torch

from collab.vit.torch_vit import TorchViT

from .masked import HEAD_DIM, VitClassifier, ones_masks


def importance(model: VitClassifier, batches, loss_fn):
    """batches: iterable of (images, labels, weights); loss_fn(logits, labels, weights) -> scalar.
    Returns dict head (L, H), neuron (L, M), channel (C,) numpy float64."""
    masks = ones_masks(model)
    acc = {k: np.zeros(tuple(v.shape)) for k, v in masks.items()}
    model.eval()
    for x, y, w in batches:
        for v in masks.values():
            v.grad = None
        loss = loss_fn(model(x, masks=masks), y, w)
        loss.backward()
        for k, v in masks.items():
            acc[k] += v.grad.detach().abs().double().numpy()
    model.zero_grad(set_to_none=True)
    return acc


def keep_indices(imp, heads: int):
    width, mlp = HEAD_DIM * heads, 4 * HEAD_DIM * heads
    head_idx = [np.sort(np.argsort(-h, kind="stable")[:heads]) for h in imp["head"]]
    neuron_idx = [np.sort(np.argsort(-n, kind="stable")[:mlp]) for n in imp["neuron"]]
    chan_idx = np.sort(np.argsort(-imp["channel"], kind="stable")[:width])
    return head_idx, neuron_idx, chan_idx


@torch.no_grad()
def prune(model: VitClassifier, imp, heads: int) -> VitClassifier:
    """A new VitClassifier with `heads` heads per block, sliced from `model` by importance."""
    head_idx, neuron_idx, ch = keep_indices(imp, heads)
    b = model.body
    ch_t = torch.as_tensor(ch)
    body = TorchViT(None, grid=b.grid, dim=len(ch), depth=len(b.blocks), heads=heads,
                    mlp=4 * HEAD_DIM * heads, patch=b.patch)
    body.patch_embed.weight.copy_(b.patch_embed.weight[ch_t])
    body.patch_embed.bias.copy_(b.patch_embed.bias[ch_t])
    body.cls.copy_(b.cls[ch_t])
    body.pos.copy_(b.pos[:, ch_t])
    body.norm.weight.copy_(b.norm.weight[ch_t])
    body.norm.bias.copy_(b.norm.bias[ch_t])
    for i, (src, dst) in enumerate(zip(b.blocks, body.blocks)):
        d = src.q.out_features // src.heads
        qi = torch.as_tensor(np.concatenate([np.arange(h * d, (h + 1) * d) for h in head_idx[i]]))
        ni = torch.as_tensor(neuron_idx[i])
        for ln in ("ln1", "ln2"):
            getattr(dst, ln).weight.copy_(getattr(src, ln).weight[ch_t])
            getattr(dst, ln).bias.copy_(getattr(src, ln).bias[ch_t])
        for name in ("q", "k", "v"):
            getattr(dst, name).weight.copy_(getattr(src, name).weight[qi][:, ch_t])
            getattr(dst, name).bias.copy_(getattr(src, name).bias[qi])
        dst.o.weight.copy_(src.o.weight[ch_t][:, qi])
        dst.o.bias.copy_(src.o.bias[ch_t])
        dst.fc1.weight.copy_(src.fc1.weight[ni][:, ch_t])
        dst.fc1.bias.copy_(src.fc1.bias[ni])
        dst.fc2.weight.copy_(src.fc2.weight[ch_t][:, ni])
        dst.fc2.bias.copy_(src.fc2.bias[ch_t])
        dst.ls1.copy_(src.ls1[ch_t])
        dst.ls2.copy_(src.ls2[ch_t])
    out = VitClassifier(body, model.head.out_features)
    out.head.weight.copy_(model.head.weight[:, ch_t])
    out.head.bias.copy_(model.head.bias)
    return out
