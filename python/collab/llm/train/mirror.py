"""A torch copy of a llama-architecture GGUF (training only; inference runs in llama.cpp).

Weights are dequantized from the GGUF with the gguf package (``gguf.quants.dequantize``), so
the mirror computes with the same weights llama.cpp holds, in float32 (llama.cpp quantizes the
activations to 8 bits inside Q4/Q8 matmuls, so logits agree closely but not bit for bit; see
``collab.llm.train.check``). GGUF's Q/K weights are already permuted for llama.cpp's
"normal" RoPE (rotation of adjacent pairs), which is what ``_rope`` implements.

    m = LlamaMirror.from_gguf(path)
    h = m.rows(tokens, upto=l)          # residual rows entering layer l (the head's output)
    logits = m.tail(h, at=l)            # layers l..L-1, output norm, LM head
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LlamaMirror"]


def _deq(gguf, t) -> np.ndarray:
    a = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
    return np.asarray(a, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)])


class LlamaMirror(torch.nn.Module):
    def __init__(self, cfg: dict, weights: dict):
        super().__init__()
        self.cfg = cfg
        self.n_layer = cfg["n_layer"]
        self.n_embd = cfg["n_embd"]
        self.n_head = cfg["n_head"]
        self.n_head_kv = cfg["n_head_kv"]
        self.head_dim = self.n_embd // self.n_head
        self.eps = cfg["eps"]
        for k, v in weights.items():
            self.register_buffer(k.replace(".", "_"), torch.from_numpy(np.array(v)), persistent=False)
        self.requires_grad_(False)
        hd = self.head_dim
        inv = 1.0 / (cfg["rope_base"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        self._inv_freq = inv

    @classmethod
    def from_gguf(cls, path) -> "LlamaMirror":
        import gguf

        r = gguf.GGUFReader(str(path))
        arch = str(r.fields["general.architecture"].contents())
        if arch != "llama":
            raise ValueError(f"the mirror implements the llama architecture, {path} is {arch}")

        def f(key, default=None):
            fld = r.fields.get(f"{arch}.{key}")
            return default if fld is None else fld.contents()

        cfg = dict(n_layer=int(f("block_count")), n_embd=int(f("embedding_length")), n_head=int(f("attention.head_count")),
                   n_head_kv=int(f("attention.head_count_kv")), eps=float(f("attention.layer_norm_rms_epsilon")),
                   rope_base=float(f("rope.freq_base", 10000.0)))
        w = {t.name: _deq(gguf, t) for t in r.tensors}
        if "output.weight" not in w:
            w["output.weight"] = w["token_embd.weight"]  # tied embeddings
        return cls(cfg, w)

    def w(self, name):
        return getattr(self, name.replace(".", "_"))

    def embed(self, tokens) -> torch.Tensor:
        return F.embedding(torch.as_tensor(tokens, dtype=torch.long), self.w("token_embd.weight"))

    def _norm(self, x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w(name)

    def _rope(self, x, pos):  # x (n, heads, hd); adjacent pairs rotate (llama.cpp NORM rope)
        ang = (pos.to(torch.float64)[:, None] * self._inv_freq[None, :])
        cos, sin = ang.cos().float()[:, None, :], ang.sin().float()[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)

    def layer(self, i: int, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.layer_kv(i, x, pos)[0]

    def layer_kv(self, i: int, x: torch.Tensor, pos: torch.Tensor, past=None):
        """Layer i over rows x at positions pos -> (rows out, K, V of these rows). With past =
        (K, V) of the positions before pos[0] (e.g. a prompt cached without gradient), x attends
        to them as well: the same result as running the whole sequence, at the cost of x alone."""
        n = x.shape[0]
        p = f"blk.{i}."
        h = self._norm(x, p + "attn_norm.weight")
        q = (h @ self.w(p + "attn_q.weight").T).view(n, self.n_head, self.head_dim)
        k = (h @ self.w(p + "attn_k.weight").T).view(n, self.n_head_kv, self.head_dim)
        v = (h @ self.w(p + "attn_v.weight").T).view(n, self.n_head_kv, self.head_dim)
        q, k = self._rope(q, pos), self._rope(k, pos)
        ka, va, mask = k, v, None
        if past is not None:
            P = past[0].shape[0]
            ka, va = torch.cat([past[0], k]), torch.cat([past[1], v])
            mask = torch.ones(n, P + n, dtype=torch.bool).tril(diagonal=P)  # row j sees keys 0..P+j
        rep = self.n_head // self.n_head_kv
        ka = ka.repeat_interleave(rep, dim=1)
        va = va.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(q.transpose(0, 1), ka.transpose(0, 1), va.transpose(0, 1),
                                           attn_mask=mask, is_causal=mask is None)
        x = x + a.transpose(0, 1).reshape(n, self.n_embd) @ self.w(p + "attn_output.weight").T
        h = self._norm(x, p + "ffn_norm.weight")
        g = F.silu(h @ self.w(p + "ffn_gate.weight").T) * (h @ self.w(p + "ffn_up.weight").T)
        return x + g @ self.w(p + "ffn_down.weight").T, k, v

    def rows(self, tokens, upto: int, keep=()) -> torch.Tensor | dict:
        """Residual rows entering layer ``upto`` (= the head part's output when split at upto).
        With keep=(l1, l2, ...): a dict {l: rows entering layer l}."""
        x = self.embed(tokens)
        pos = torch.arange(x.shape[0])
        out = {0: x} if 0 in keep else {}
        for i in range(upto):
            x = self.layer(i, x, pos)
            if i + 1 in keep:
                out[i + 1] = x
        return out if keep else x

    def tail(self, x: torch.Tensor, at: int, logits_from: int = 0) -> torch.Tensor:
        """Layers at..L-1 over rows x (positions 0..n-1), then logits of rows logits_from.."""
        pos = torch.arange(x.shape[0])
        for i in range(at, self.n_layer):
            x = self.layer(i, x, pos)
        x = self._norm(x[logits_from:], "output_norm.weight")
        return x @ self.w("output.weight").T

    def tail_prefill(self, x: torch.Tensor, at: int):
        """Layers at..L-1 over rows x -> (per-layer (K, V) of x, logits of x's last row); feed
        the K/V to tail_extend to continue after x."""
        pos = torch.arange(x.shape[0])
        kv = []
        for i in range(at, self.n_layer):
            x, k, v = self.layer_kv(i, x, pos)
            kv.append((k, v))
        return kv, self._norm(x[-1:], "output_norm.weight") @ self.w("output.weight").T

    def tail_extend(self, x: torch.Tensor, at: int, kv) -> torch.Tensor:
        """Logits of rows x placed right after the rows tail_prefill made kv from."""
        P = kv[0][0].shape[0]
        pos = torch.arange(P, P + x.shape[0])
        for j, i in enumerate(range(at, self.n_layer)):
            x = self.layer_kv(i, x, pos, past=kv[j])[0]
        return self._norm(x, "output_norm.weight") @ self.w("output.weight").T

    def logits(self, tokens) -> torch.Tensor:
        return self.tail(self.embed(tokens), 0)
