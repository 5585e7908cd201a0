"""Token-dropping baselines on the image rows at the split (numpy, no torch).

Each one turns the m image rows entering layer l into k < m rows that travel (as float16,
text rows exact: ``KeptImageRows``), so they compare with the trained codec at the same bytes:
k = m / ratio rows of d float16 numbers = m codes of d / ratio float16 numbers.

  tome_merge        ToMe (Bolya et al.): bipartite soft matching on the rows' cosine
                    similarity, repeated until k groups are left; a group travels as the
                    size-weighted mean of its rows, at its first member's place.
  fastv_keep        FastV (Chen et al.): the k image rows the last prompt token attends to
                    most at layer 2 (``Layer2Attention``: scores computed here in numpy from
                    the rows entering layer 2 and the GGUF's layer-2 weights, since llama.cpp
                    does not expose attention probabilities).
  prumerge          LLaVA-PruMerge: the k patches the vision encoder's CLS token attends to
                    most (last DINOv2 block, ``cls_attention``), each merged with the pruned
                    patches whose ViT keys are closest to its own (weighted by CLS attention).

The rows stay in image order; the tail sees a shorter prompt (positions renumbered, as when
a VLM is given fewer image tokens). FastV proper drops after layer 2 on the same machine; here
the device still runs all image rows through its head and only the transmission is pruned.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidArgument
from ..llm.protocol import encode_rows_raw

__all__ = ["tome_merge", "fastv_keep", "prumerge", "topk_sorted", "Layer2Attention", "cls_attention",
           "KeptImageRows", "kept_rows"]


def kept_rows(m: int, ratio: int) -> int:
    """Rows that cost what m codes at 1/ratio width cost: m / ratio (at least 1)."""
    if m < 1 or ratio < 1:
        raise InvalidArgument(f"need m >= 1 and ratio >= 1, got {m}, {ratio}")
    return max(1, m // ratio)


def _check(x, k):
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or not 1 <= k <= x.shape[0]:
        raise InvalidArgument(f"need rows (m, d) and 1 <= k <= m, got {x.shape} and k={k}")
    return x


def topk_sorted(scores, k: int) -> np.ndarray:
    """Indices of the k largest scores (ties: the earlier), in increasing order."""
    s = np.asarray(scores, np.float64)
    if s.ndim != 1 or not 1 <= k <= s.size:
        raise InvalidArgument(f"need 1 <= k <= {s.size}, got {k}")
    return np.sort(np.argsort(-s, kind="stable")[:k])


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def tome_merge(x, k: int, metric=None) -> tuple[np.ndarray, list]:
    """(k merged rows in image order, groups: the image-row indices of each)."""
    x = _check(x, k)
    met = _unit(np.asarray(metric if metric is not None else x, np.float32))
    groups = [[i] for i in range(x.shape[0])]
    feats, sizes, mets = x.astype(np.float64), np.ones(x.shape[0]), met.astype(np.float64)
    while len(groups) > k:
        a, b = np.arange(0, len(groups), 2), np.arange(1, len(groups), 2)
        r = min(len(groups) - k, len(a), len(b))
        sim = mets[a] @ mets[b].T
        best, score = sim.argmax(1), sim.max(1)
        merge = np.argsort(-score, kind="stable")[:r]       # the r most similar a-rows go
        for ai in merge:
            src, dst = a[ai], b[best[ai]]
            w = sizes[src] + sizes[dst]
            feats[dst] = (feats[dst] * sizes[dst] + feats[src] * sizes[src]) / w
            mets[dst] = _unit((mets[dst] * sizes[dst] + mets[src] * sizes[src])[None])[0]
            sizes[dst] = w
            groups[dst] = sorted(groups[dst] + groups[src])
        keep = np.setdiff1d(np.arange(len(groups)), a[merge])
        groups, feats, sizes, mets = [groups[i] for i in keep], feats[keep], sizes[keep], mets[keep]
    order = np.argsort([g[0] for g in groups], kind="stable")
    return feats[order].astype(np.float32), [groups[i] for i in order]


def fastv_keep(x, scores, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(the k rows with the highest layer-2 attention scores, their indices)."""
    x = _check(x, k)
    idx = topk_sorted(scores, k)
    return x[idx], idx


def prumerge(x, cls_attn, keys, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(k rows: the top-k CLS-attention patches merged with their pruned neighbours, indices)."""
    x = _check(x, k)
    att = np.asarray(cls_attn, np.float64)
    keys = _unit(np.asarray(keys, np.float32))
    if att.shape != (x.shape[0],) or keys.shape[0] != x.shape[0]:
        raise InvalidArgument("cls_attn and keys need one entry per image row")
    idx = topk_sorted(att, k)
    pruned = np.setdiff1d(np.arange(x.shape[0]), idx)
    out = x[idx].astype(np.float64) * att[idx, None]
    wsum = att[idx].copy()
    if pruned.size:
        near = (keys[pruned] @ keys[idx].T).argmax(1)     # each pruned patch joins its closest kept one
        for p, j in zip(pruned, near):
            out[j] += att[p] * x[p]
            wsum[j] += att[p]
    return (out / np.maximum(wsum, 1e-12)[:, None]).astype(np.float32), idx


class Layer2Attention:
    """Attention probabilities of one query row over all positions in layer ``layer`` of a
    llama GGUF, from the rows entering that layer: RMSNorm, Q/K projections, llama.cpp's
    NORM RoPE (adjacent pairs), grouped-query heads, softmax, mean over heads."""

    def __init__(self, gguf_path, layer: int = 2):
        import gguf

        r = gguf.GGUFReader(str(gguf_path))
        arch = str(r.fields["general.architecture"].contents())
        f = lambda k, d=None: (r.fields[f"{arch}.{k}"].contents() if f"{arch}.{k}" in r.fields else d)  # noqa: E731
        self.n_head, self.n_head_kv = int(f("attention.head_count")), int(f("attention.head_count_kv"))
        self.eps, base = float(f("attention.layer_norm_rms_epsilon")), float(f("rope.freq_base", 10000.0))
        t = {x.name: x for x in r.tensors}
        w = {}
        for name in ("attn_norm", "attn_q", "attn_k"):
            x = t[f"blk.{layer}.{name}.weight"]
            a = gguf.quants.dequantize(np.asarray(x.data), x.tensor_type)
            w[name] = np.asarray(a, np.float32).reshape([int(s) for s in reversed(x.shape)])
        self.w = w
        self.hd = w["attn_q"].shape[0] // self.n_head
        self.inv = 1.0 / base ** (np.arange(0, self.hd, 2, dtype=np.float64) / self.hd)

    def _rope(self, x, pos):
        ang = pos[:, None].astype(np.float64) * self.inv[None, :]
        c, s = np.cos(ang)[:, None, :].astype(np.float32), np.sin(ang)[:, None, :].astype(np.float32)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return np.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).reshape(x.shape)

    def probs(self, rows, query: int = -1) -> np.ndarray:
        """(n,) attention of row ``query`` over positions 0..query (causal), mean over heads."""
        x = np.asarray(rows, np.float32)
        n = x.shape[0]
        q_i = query % n
        h = x * (1.0 / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + self.eps)).astype(np.float32)
        h = h * self.w["attn_norm"]
        pos = np.arange(n)
        q = self._rope((h[q_i:q_i + 1] @ self.w["attn_q"].T).reshape(1, self.n_head, self.hd), pos[q_i:q_i + 1])
        k = self._rope((h[:q_i + 1] @ self.w["attn_k"].T).reshape(q_i + 1, self.n_head_kv, self.hd), pos[:q_i + 1])
        k = np.repeat(k, self.n_head // self.n_head_kv, axis=1)           # (n, heads, hd)
        logits = np.einsum("hd,nhd->hn", q[0], k) / np.sqrt(self.hd)
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        return p.mean(0)


def cls_attention(vit, image_u8) -> tuple[np.ndarray, np.ndarray]:
    """(CLS attention over the patches (G*G,), patch keys (G*G, C/heads)) of the last block of
    a collab.vit NumpyViT (mean over heads), for one uint8 (S, S, 3) image."""
    from ..vit.hooks import BlockHook
    from .reference import normalise

    seen = {}

    class _Tap(BlockHook):
        def after_attention(self, x, att):
            seen["p"], seen["k"] = att.probs, att.key_mean
            return x

    last = vit.depth - 1
    vit.set_hook(last, _Tap())
    try:
        x = vit.embed(normalise(np.asarray(image_u8)[None]))
        vit.run_blocks(x, 0, vit.depth)
    finally:
        vit.set_hook(last, None)
    return seen["p"][0, :, 0, 1:].mean(0).astype(np.float32), seen["k"][0, 1:].astype(np.float32)


class KeptImageRows:
    """Row policy for the dropped prompt: text rows f32 (exact), the kept image rows f16."""

    def __init__(self, n_before: int, n_image: int):
        self.n_before, self.n_image = int(n_before), int(n_image)

    def encode(self, rows) -> bytes:
        n = np.asarray(rows).shape[0]
        return encode_rows_raw(rows, [(self.n_before, "f32"), (self.n_image, "f16"),
                                      (n - self.n_before - self.n_image, "f32")])
