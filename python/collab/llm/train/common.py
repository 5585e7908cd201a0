"""Shared pieces of the two training recipes: paths, the activation cache, checkpoints, progress.

Frozen LLM, so the head's rows are a pure function of the tokens: they are computed once with
the torch mirror and cached (``cache_rows``) for the regression stage; the Eq. 2 / Eq. 3 stage
runs the tail (frozen) on the fly because its loss goes through the model's output.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from .args import DEFAULT_DATA

__all__ = ["DEFAULT_DATA", "DEFAULT_MODELS", "mirror", "cache_rows", "Checkpoint", "Progress", "artifact_path",
           "set_threads", "CACHE_LAYERS"]

DEFAULT_MODELS = Path("models/llm")
CACHE_LAYERS = (1, 2, 4, 8, 15)
_MIRROR = {}


def set_threads(n: int) -> None:
    torch.set_num_threads(max(1, int(n)))


def model_path(p=None) -> Path:
    from ..models import default_model_path

    return Path(p) if p else default_model_path()


def mirror(path=None):
    from .mirror import LlamaMirror

    key = str(model_path(path))
    if key not in _MIRROR:
        _MIRROR[key] = LlamaMirror.from_gguf(key)
    return _MIRROR[key]


def artifact_path(kind: str, at: int, ratio: int = 0, out_dir=None) -> Path:
    stem = f"smollm2-135m.{kind}-{at}" + (f"-r{ratio}" if ratio else "") + ".clfn"
    return Path(out_dir or DEFAULT_MODELS) / stem


def cache_rows(data_dir, recs, layers=CACHE_LAYERS, extra_per_sample: int = 48, ctx_per_sample: int = 32,
               model=None, progress=True) -> dict:
    """{l: {"tok": token ids, "rows": rows entering layer l at those tokens, "ctx": context rows}}.
    tok/rows: every fed-back answer token (answer[:-1], the decode inputs) plus up to
    extra_per_sample prompt positions >= 1 (more token -> row pairs of the same kind: a row
    is a function of its token and the context before it). ctx: up to ctx_per_sample rows
    from [1, q_start) per prompt (the codec's rows)."""
    path = Path(data_dir) / ("cache-" + "-".join(map(str, layers)) + f"-n{len(recs)}.npz")
    if path.exists():
        z = np.load(path)
        return {l: {"tok": z["tok"], "rows": z[f"rows{l}"], "ctx": z[f"ctx{l}"]} for l in layers}
    m = mirror(model)
    rng = np.random.default_rng(0)
    toks, rows, ctx = [], {l: [] for l in layers}, {l: [] for l in layers}
    t0 = time.time()
    with torch.no_grad():
        for i, r in enumerate(recs):
            seq = r["tokens"] + r["answer"][:-1]
            n_p = len(r["tokens"])
            hs = m.rows(seq, upto=max(layers), keep=layers)
            extra = np.arange(1, n_p)
            if extra.size > extra_per_sample:
                extra = np.sort(rng.choice(extra, extra_per_sample, replace=False))
            pos = np.concatenate([extra, np.arange(n_p, len(seq))])
            pick = np.arange(1, r["q_start"])
            if pick.size > ctx_per_sample:
                pick = np.sort(rng.choice(pick, ctx_per_sample, replace=False))
            toks.append(np.asarray(seq, np.int64)[pos])
            for l in layers:
                rows[l].append(hs[l][pos].numpy())
                ctx[l].append(hs[l][pick].numpy())
            if progress and (i % 20 == 0 or i == len(recs) - 1):
                print(f"[cache] {i + 1}/{len(recs)} prompts, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    out = {"tok": np.concatenate(toks)}
    for l in layers:
        out[f"rows{l}"] = np.concatenate(rows[l]).astype(np.float32)
        out[f"ctx{l}"] = np.concatenate(ctx[l]).astype(np.float32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return {l: {"tok": out["tok"], "rows": out[f"rows{l}"], "ctx": out[f"ctx{l}"]} for l in layers}


class Checkpoint:
    """torch.save of {net, opt, stage, step, best, history} every few seconds; load() resumes."""

    def __init__(self, path, every_s: float = 60.0):
        self.path = Path(path)
        self.every_s = every_s
        self._last = time.time()

    def load(self):
        if self.path.exists():
            return torch.load(self.path, weights_only=False)
        return None

    def maybe_save(self, state: dict, force: bool = False) -> None:
        if force or time.time() - self._last >= self.every_s:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            torch.save(state, tmp)
            tmp.replace(self.path)
            self._last = time.time()


class Progress:
    def __init__(self, tag: str, total: int, every_s: float = 10.0):
        self.tag, self.total, self.every_s = tag, total, every_s
        self.t0 = self._last = time.time()

    def __call__(self, step: int, **vals) -> None:
        now = time.time()
        if now - self._last >= self.every_s or step == self.total:
            self._last = now
            rate = step / max(now - self.t0, 1e-9)
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            kv = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in vals.items())
            print(f"[{self.tag}] {step}/{self.total} {kv} ({rate:.2f} it/s, eta {eta:.0f} s)", file=sys.stderr, flush=True)


def fit_stage(net, opt, loss_on, n_train: int, *, steps: int, start: int, batch: int, lr: float, val, hist: list,
              save, tag: str) -> int:
    """Regression stage on cached rows: cosine-decayed lr, minibatches of train indices;
    loss_on(index tensor) -> loss. Returns the step reached (== steps)."""
    import math

    prog = Progress(tag, steps)
    g = torch.Generator().manual_seed(start)
    step = start
    while step < steps:
        for pg in opt.param_groups:
            pg["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = loss_on(torch.randint(n_train, (batch,), generator=g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0 or step == steps:
            v = val()
            hist.append((step, float(loss.detach()), *v))
            prog(step, loss=float(loss), val=v[0])
        save(step)
    return step


def sample_stage(opt, loss_of, recs, *, steps: int, start: int, minutes: float, hist: list, save, tag: str,
                 seed: int) -> int:
    """Stage whose loss goes through the frozen tail, one prompt per step (loss_of(rec) -> loss
    tensor or None to skip), stopped after ``steps`` or ``minutes``. Returns the step reached."""
    prog = Progress(tag, steps)
    t_end = time.time() + 60 * minutes if minutes else float("inf")
    order = np.random.default_rng(seed).permutation(len(recs))
    run, step = [], start
    while step < steps and time.time() < t_end:
        loss = loss_of(recs[order[step % len(order)]])
        step += 1
        if loss is not None:
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(float(loss))
        if step % 10 == 0 and run:
            hist.append((step, float(np.mean(run[-10:]))))
            prog(step, loss=float(np.mean(run[-10:])))
        save(step)
    save(step, force=True)
    return step


def write_artifact(net, out: Path, *, at: int, n_layer: int, model, meta: dict, tag: str, summary: str) -> Path:
    """Export a trained torch net to its CLFN file (weights stored as float16: half the
    bytes; the runtime computes in float32), atomically."""
    from ..artifact import model_digest

    f = net.export(split_at=at, n_layer_total=n_layer, model_digest=model_digest(model_path(model)),
                   meta={**meta, "trained": True}, storage="f16")
    out.parent.mkdir(parents=True, exist_ok=True)
    f.save(out)
    print(f"[{tag}] wrote {out} ({summary})", file=sys.stderr)
    return out
