"""Per-token statistics of the head's rows over offline text: the decoding shortcut's data.

The shortcut is a function of the token alone, so under squared error the best it can do is
the token's mean row; E||f(t) - r||^2 = E||f(t) - mean_t||^2 + (within-token variance). The
regression on every (token, row) pair is therefore the same as a count-weighted regression
on the per-token means, and those are cheap to keep for any amount of text: a running sum
and a count per token and split point (plus the sum of squared norms, for the within-token
part no context-free map can remove). The first chunks are kept aside as raw rows, the
validation set (never summed).

    python -m collab.llm.train.rowstats --out DIR [--minutes 12] [--max-tokens N] [--layers 1 2 4 8 15]

Resumable: DIR/rowstats.npz holds the sums and how many chunks are done; it is rewritten
every few minutes and at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .corpus import SYSTEM_PREFIX, chat_chunk, chunks, documents

__all__ = ["collect", "load_stats", "tokenizer", "STATS_FILE"]

STATS_FILE = "rowstats.npz"
VAL_CHUNKS = 24
MAX_TOKENS = 384


def tokenizer(model_path):
    """tokens(text) -> ids with SmolLM2's special tokens parsed (collab's llama.cpp runner)."""
    from ..runtime import Model

    m = Model(model_path)
    return lambda text: [int(t) for t in m.tokenize(text, add_special=False)]


def all_chunks(max_docs: int = 0):
    out = []
    for name, text in documents(max_docs):
        out += [(f"{name}#{i}", c) for i, c in enumerate(chunks(text)) if i < 8]  # many documents, not a few long ones
    # ordered by a hash of the chunk's name, not by position: an installed package more or less
    # (site-packages METADATA) must not reshuffle the chunks a resumed run has already summed
    return sorted(out, key=lambda nc: hashlib.sha256(nc[0].encode()).digest())


def load_stats(out_dir):
    p = Path(out_dir) / STATS_FILE
    if not p.exists():
        return None
    z = np.load(p)
    return {k: z[k] for k in z.files}


def collect(out_dir, *, model_path, mirror, layers=(1, 2, 4, 8, 15), minutes: float = 12.0, max_tokens: int = 0,
            save_every_s: float = 180.0, tokenize=None, progress=sys.stderr) -> dict:
    """Sum rows until ``minutes`` (0: no limit) or ``max_tokens`` summed tokens (0: no limit) or the
    end of the corpus; resumes from and rewrites out_dir/rowstats.npz."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / STATS_FILE
    prev = load_stats(out_dir)
    if prev is not None and ((max_tokens and int(prev["tokens"]) >= max_tokens)
                             or int(prev["chunks_done"]) >= int(prev["chunks_total"])):
        return prev
    tokenize = tokenize or tokenizer(model_path)
    n_sys = len(tokenize(SYSTEM_PREFIX))
    V, d = mirror.w("token_embd.weight").shape
    L = list(layers)
    if prev is not None and list(prev["layers"]) != L:
        raise SystemExit(f"{path} was collected for layers {list(prev['layers'])}, not {L}")
    sums = {l: torch.zeros(V, d) for l in L}
    sq = {l: torch.zeros(V, dtype=torch.float64) for l in L}
    cnt = torch.zeros(V, dtype=torch.float64)
    done, n_tok = 0, 0
    val = {"tok": [], **{f"val{l}": [] for l in L}}
    if prev is not None:
        ids = torch.as_tensor(prev["ids"])
        cnt[ids] = torch.as_tensor(prev["cnt"])
        for l in L:
            sums[l][ids] = torch.as_tensor(prev[f"sum{l}"])
            sq[l][ids] = torch.as_tensor(prev[f"sq{l}"])
        done, n_tok = int(prev["chunks_done"]), int(prev["tokens"])
        val = {k: [prev[k]] for k in val}
    items = all_chunks()

    def save():
        ids = torch.nonzero(cnt).flatten()
        arrs = {"layers": np.asarray(L), "ids": ids.numpy(), "cnt": cnt[ids].numpy(), "chunks_done": done,
                "tokens": n_tok, "chunks_total": len(items), "n_sys": n_sys}
        for l in L:
            arrs[f"sum{l}"] = sums[l][ids].numpy()
            arrs[f"sq{l}"] = sq[l][ids].numpy()
        for k, v in val.items():
            arrs[k] = np.concatenate(v) if v else np.zeros((0,) if k == "tok" else (0, d), np.float16)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrs)
        tmp.replace(path)

    t0 = last = time.time()
    t_end = t0 + 60 * minutes if minutes else float("inf")
    with torch.no_grad():
        while done < len(items) and time.time() < t_end and not (max_tokens and n_tok >= max_tokens):
            name, chunk = items[done]
            text, _ = chat_chunk(name, chunk)
            toks = tokenize(text)[:MAX_TOKENS]
            if len(toks) > n_sys + 8:
                hs = mirror.rows(toks, upto=max(L), keep=tuple(L))
                pos = torch.arange(n_sys, len(toks))
                tk = torch.as_tensor(toks)[pos]
                if done < VAL_CHUNKS:
                    val["tok"].append(tk.numpy())
                    for l in L:
                        val[f"val{l}"].append(hs[l][pos].numpy().astype(np.float16))
                else:
                    cnt.index_add_(0, tk, torch.ones(len(tk), dtype=torch.float64))
                    for l in L:
                        r = hs[l][pos]
                        sums[l].index_add_(0, tk, r)
                        sq[l].index_add_(0, tk, r.double().pow(2).sum(1))
                    n_tok += len(tk)
            done += 1
            now = time.time()
            if now - last >= save_every_s:
                save()
                last = now
                if progress:
                    print(f"[rowstats] {done}/{len(items)} chunks, {n_tok} tokens, {int((cnt > 0).sum())} distinct, "
                          f"{n_tok / (now - t0):.0f} tok/s", file=progress, flush=True)
    save()
    if progress:
        print(f"[rowstats] done: {done}/{len(items)} chunks, {n_tok} tokens summed -> {path}", file=progress, flush=True)
    return load_stats(out_dir)


def main(argv=None) -> int:
    from . import common

    ap = argparse.ArgumentParser(description="per-token row statistics over offline text (the shortcut's data)")
    ap.add_argument("--out", default=str(common.DEFAULT_DATA))
    ap.add_argument("--model", default=None)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--max-tokens", type=int, default=0, help="stop after this many summed tokens (0: no limit)")
    ap.add_argument("--layers", type=int, nargs="+", default=list(common.CACHE_LAYERS))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    common.set_threads(a.threads)
    collect(a.out, model_path=common.model_path(a.model), mirror=common.mirror(a.model), layers=a.layers,
            minutes=a.minutes, max_tokens=a.max_tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
