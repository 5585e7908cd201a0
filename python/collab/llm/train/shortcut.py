"""Train MindFusion's decoding shortcut (Eq. 3) on a frozen GGUF LLM split at layer l.

    python -m collab.llm.train.shortcut --at 15        (collab llm train-shortcut --at 15)

Two stages, both resumable from <out>.ckpt:
  fit   regression of the projection onto the head's real rows for the fed-back answer
        tokens (cached activations: valid because the LLM is frozen), standardised MSE;
  eq3   Eq. 3 itself: the first answer token from the original path (a constant term: the
        projection cannot change it), every later one with its input row produced by the
        projection from the previous token's embedding, cross-entropy against the full
        model's greedy answer y-hat through the frozen tail.
Writes a CLFN artifact (collab.llm.artifact) the native runtime loads.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import common
from .args import add_shortcut_arguments as add_arguments
from .data import load
from .nets import Shortcut, stats

__all__ = ["run_train_shortcut", "add_arguments", "eq3_loss", "main"]


def eq3_loss(m, net, rec, at: int) -> tuple[torch.Tensor, float]:
    """(loss through the shortcut, constant first-token term) for one sample, Eq. 3 / T."""
    p, ans = rec["tokens"], rec["answer"]
    with torch.no_grad():
        head = m.rows(p, upto=at)                       # exact prefill rows (device side)
    fed = net(m.embed(ans[:-1]))                         # shortcut rows for the fed-back tokens
    logits = m.tail(torch.cat([head, fed]), at, logits_from=len(p) - 1)
    nll = F.cross_entropy(logits, torch.as_tensor(ans), reduction="none")
    T = len(ans)
    return nll[1:].sum() / T, float(nll[0]) / T


def _split(n, frac=0.05, seed=0):
    idx = np.random.default_rng(seed).permutation(n)
    k = max(1, int(n * frac))
    return idx[k:], idx[:k]


def run_train_shortcut(args) -> int:
    common.set_threads(args.threads)
    at = int(args.at)
    out = Path(args.out) if args.out else common.artifact_path("shortcut", at)
    ck = common.Checkpoint(out.with_suffix(".ckpt"))
    recs = load(args.data, "train")
    if not recs:
        raise SystemExit(f"no training samples in {args.data}: run python -m collab.llm.train.data first")
    m = common.mirror(args.model)
    if not 1 <= at < m.n_layer:
        raise SystemExit(f"--at must be in [1, {m.n_layer - 1}]")
    layers = tuple(sorted(set(common.CACHE_LAYERS) | {at}))
    cache = common.cache_rows(args.data, recs, layers, model=args.model)[at]
    X = m.embed(torch.as_tensor(cache["tok"])).float()
    Y = torch.as_tensor(cache["rows"])
    tr, va = _split(len(X))
    net = Shortcut(m.n_embd, stats(X[tr]), stats(Y[tr] - X[tr]))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    state = None if args.fresh else ck.load()
    stage, step, hist = "fit", 0, {"fit": [], "eq3": []}
    if state and state.get("at") == at:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        stage, step, hist = state["stage"], state["step"], state["hist"]
        print(f"[shortcut-{at}] resumed at {stage} step {step}", file=sys.stderr)

    def save(at_step, force=False):
        ck.maybe_save({"at": at, "net": net.state_dict(), "opt": opt.state_dict(), "stage": stage, "step": at_step,
                       "hist": hist}, force)

    def val_fit():
        with torch.no_grad():
            r = (net(X[va]) - Y[va]) / net.out.s
            base = (Y[va] - X[va] - net.out.m) / net.out.s
            return float(r.pow(2).mean()), float(base.pow(2).mean())

    trt = torch.as_tensor(tr)

    def fit_loss(b):
        b = trt[b]
        return ((net(X[b]) - Y[b]) / net.out.s).pow(2).mean()

    if stage == "fit":
        common.fit_stage(net, opt, fit_loss, len(tr), steps=args.fit_steps, start=step, batch=args.batch, lr=args.lr,
                         val=val_fit, hist=hist["fit"], save=save, tag=f"shortcut-{at} fit")
        stage, step = "eq3", 0
        opt = torch.optim.AdamW(net.parameters(), lr=args.lr * 0.1, weight_decay=1e-4)
        save(0, True)

    def eq3(rec):
        if len(rec["answer"]) < 2:
            return None
        return eq3_loss(m, net, rec, at)[0]

    if stage == "eq3" and args.eq3_steps > 0:
        step = common.sample_stage(opt, eq3, recs, steps=args.eq3_steps, start=step, minutes=args.eq3_minutes,
                                   hist=hist["eq3"], save=save, tag=f"shortcut-{at} eq3", seed=1)

    v, base = val_fit()
    meta = {"recipe": "collab.llm.train.shortcut", "objective": "fit (standardised MSE on cached rows) then Eq. 3",
            "fit_steps": args.fit_steps, "eq3_steps_done": step if stage == "eq3" else 0, "val_mse_std": v,
            "val_mse_std_identity": base, "train_prompts": len(recs), "decode_rows": int(len(X)), "history": hist}
    common.write_artifact(net, out, at=at, n_layer=m.n_layer, model=args.model, meta=meta, tag=f"shortcut-{at}",
                          summary=f"val std-MSE {v:.4f}, identity {base:.4f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="train the decoding shortcut (Eq. 3) at split point --at")
    add_arguments(ap)
    return run_train_shortcut(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
