"""Train MindFusion's representation codec (Eq. 1-2) on a frozen GGUF LLM split at layer l.

    python -m collab.llm.train.codec --at 15 --ratio 8      (collab llm train-codec --at 15 --ratio 8)

The encoder (device) maps each context row (positions 1 .. q_start-1: everything before the
question except the first, attention-sink row) to d/ratio numbers; the decoder (server) maps
them back; the question rows stay exact (Eq. 1). Stages, resumable from <out>.ckpt:
  fit   reconstruction of cached context rows, standardised MSE;
  eq2   Eq. 2: cross-entropy of the full model's greedy answer y-hat through the frozen tail
        with the context rows replaced by their reconstruction.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import common
from .args import add_codec_arguments as add_arguments
from .data import load
from .nets import Codec, stats

__all__ = ["run_train_codec", "add_arguments", "eq2_loss", "main", "compressed_positions"]


def compressed_positions(q_start: int) -> slice:
    """Eq. 1's beta for a text prompt: the rows before the question, except row 0."""
    return slice(1, max(1, int(q_start)))


def eq2_loss(m, net, rec, at: int) -> torch.Tensor:
    p, ans = rec["tokens"], rec["answer"]
    with torch.no_grad():
        rows = m.rows(p + ans[:-1], upto=at)
    b = compressed_positions(rec["q_start"])
    rows = torch.cat([rows[:b.start], net(rows[b]), rows[b.stop:]])
    logits = m.tail(rows, at, logits_from=len(p) - 1)
    return F.cross_entropy(logits, torch.as_tensor(ans))


def run_train_codec(args) -> int:
    common.set_threads(args.threads)
    at, ratio = int(args.at), int(args.ratio)
    out = Path(args.out) if args.out else common.artifact_path("codec", at, ratio)
    ck = common.Checkpoint(out.with_suffix(".ckpt"))
    recs = [r for r in load(args.data, "train") if r["q_start"] > 2]
    if not recs:
        raise SystemExit(f"no training samples in {args.data}: run python -m collab.llm.train.data first")
    m = common.mirror(args.model)
    if not 1 <= at < m.n_layer:
        raise SystemExit(f"--at must be in [1, {m.n_layer - 1}]")
    layers = tuple(sorted(set(common.CACHE_LAYERS) | {at}))
    R = torch.as_tensor(common.cache_rows(args.data, load(args.data, "train"), layers, model=args.model)[at]["ctx"])
    idx = np.random.default_rng(0).permutation(len(R))
    va, tr = idx[:max(1, len(R) // 20)], idx[max(1, len(R) // 20):]
    net = Codec(m.n_embd, m.n_embd // ratio, stats(R[tr]))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    state = None if args.fresh else ck.load()
    stage, step, hist = "fit", 0, {"fit": [], "eq2": []}
    if state and state.get("at") == at and state.get("ratio") == ratio:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        stage, step, hist = state["stage"], state["step"], state["hist"]
        print(f"[codec-{at}-r{ratio}] resumed at {stage} step {step}", file=sys.stderr)

    def save(at_step, force=False):
        ck.maybe_save({"at": at, "ratio": ratio, "net": net.state_dict(), "opt": opt.state_dict(), "stage": stage,
                       "step": at_step, "hist": hist}, force)

    def val_fit():
        with torch.no_grad():
            e = (net(R[va]) - R[va]) / net.norm.s
            rel = (net(R[va]) - R[va]).norm(dim=1) / R[va].norm(dim=1)
            return float(e.pow(2).mean()), float(rel.mean())

    trt = torch.as_tensor(tr)

    def fit_loss(b):
        b = trt[b]
        return ((net(R[b]) - R[b]) / net.norm.s).pow(2).mean()

    tag = f"codec-{at}-r{ratio}"
    if stage == "fit":
        common.fit_stage(net, opt, fit_loss, len(tr), steps=args.fit_steps, start=step, batch=args.batch, lr=args.lr,
                         val=val_fit, hist=hist["fit"], save=save, tag=f"{tag} fit")
        stage, step = "eq2", 0
        opt = torch.optim.AdamW(net.parameters(), lr=args.lr * 0.1, weight_decay=1e-4)
        save(0, True)

    if stage == "eq2" and args.eq2_steps > 0:
        step = common.sample_stage(opt, lambda rec: eq2_loss(m, net, rec, at), recs, steps=args.eq2_steps, start=step,
                                   minutes=args.eq2_minutes, hist=hist["eq2"], save=save, tag=f"{tag} eq2", seed=2)

    v, rel = val_fit()
    meta = {"recipe": "collab.llm.train.codec", "objective": "fit (standardised MSE) then Eq. 2", "ratio": ratio,
            "fit_steps": args.fit_steps, "eq2_steps_done": step if stage == "eq2" else 0, "val_mse_std": v,
            "val_rel_err": rel, "context_rows": int(len(R)), "history": hist,
            "compressed_positions": "1 .. q_start-1"}
    common.write_artifact(net, out, at=at, n_layer=m.n_layer, model=args.model, meta=meta, tag=tag,
                          summary=f"val std-MSE {v:.4f}, rel err {rel:.4f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="train the representation codec (Eq. 1-2) at split point --at")
    add_arguments(ap)
    return run_train_codec(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
