"""Train MindFusion's decoding shortcut (Eq. 3) for collab-vlm-tiny's answers at split point l.

    python -m collab.vlm.shortcut_train --at 15 --n 550 --stats DIR --minutes 15

The recipe is collab.llm.train.shortcut's (fit stage, then Eq. 3 with validation-based
selection, CLFN export); the text LLM's shortcut learns to continue text and, on this VLM's
one-to-three-word answers, does not stop ("no" -> "nobody"). What differs is where the rows
come from (collab.vlm.codec_train.collect, shared with the image codec): for each training
question on a Fashion-MNIST TRAIN image the device's own native head gives the rows entering
layer l over the prompt (text | image rows | text) and over the full model's greedy answer
y-hat, end-of-turn token included. So:

  fit   the projection regressed onto per-token mean rows: the VLM's fed-back answer tokens
        (weighted up) merged with the text LLM's offline-text statistics (--stats: the
        rowstats.npz of collab.llm.train.rowstats; optional), so tokens outside the answers
        still map somewhere sensible;
  eq3   Eq. 3 through the frozen tail (torch mirror) with the prompt's rows as the head made
        them (image rows included), y-hat's later tokens (the end-of-turn one too) as targets;
        validated on held-back training questions, the best net kept.

The artifact carries meta {"answers": "vlm", "projector_sha256": ...}; collab.vlm.shortcut
refuses it for another projector (other image rows, other answers), and its CLFN header for
another text model or split point. It lives in models/vlm/, so the text LLM never picks it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .codec_train import collect, projector_digest
from .models import _cache_dir, projector_path

__all__ = ["artifact_name", "records", "greedy_agreement", "train", "main"]


def artifact_name(at: int) -> str:
    return f"collab-vlm-tiny.shortcut-{at}.clfn"


def records(data: dict) -> list:
    """One Eq. 3 sample per question: its prompt rows (what the head made, image rows
    included), y-hat, and the rows the head made for y-hat's fed-back tokens (the fit's targets)."""
    ans_off = np.concatenate([[0], np.cumsum(data["meta"][:, 4])])
    out = []
    for i, (o, b, m, a, na) in enumerate(data["meta"]):
        n_prompt = int(b + m + a)
        ans = [int(t) for t in data["answer"][ans_off[i]:ans_off[i + 1]]]
        rows = data["rows"][o:o + n_prompt + max(0, na - 1)].astype(np.float32)
        out.append({"key": f"vlm/{i}", "head_rows": rows[:n_prompt], "answer": ans, "fed_rows": rows[n_prompt:]})
    return out


def _fed(recs) -> dict:
    """{"tok", "rows"}: the fed-back answer tokens and their rows (the fit stage's cache)."""
    tok = np.concatenate([np.asarray(r["answer"][:-1], np.int64) for r in recs])
    rows = np.concatenate([r["fed_rows"] for r in recs])
    return {"tok": tok, "rows": rows}


def greedy_agreement(m, net, recs, at: int, is_eog, max_tokens: int = 8) -> dict:
    """Greedy decoding through the shortcut (torch mirror): the first token from the prompt's
    rows, each later one from the shortcut's row of the previous; how many answers equal y-hat
    exactly (stop included) and how many stop where y-hat stops."""
    import torch

    from ..llm.train.shortcut import PromptCache

    same = stop = 0
    with torch.no_grad():
        for r in recs:
            kv, first = PromptCache(0).get(m, r, at)
            seq = [int(first[0].argmax())]
            while len(seq) < max_tokens and not is_eog(seq[-1]):
                seq.append(int(m.tail_extend(net(m.embed(seq)), at, kv)[-1].argmax()))
            same += seq == r["answer"]
            stop += len(seq) == len(r["answer"]) and is_eog(seq[-1]) == is_eog(r["answer"][-1])
    n = max(len(recs), 1)
    return {"answers_equal": same / n, "stops_equal": stop / n, "questions": len(recs)}


def train(args) -> Path:
    import torch

    from ..llm.models import default_model_path
    from ..llm.runtime import Model
    from ..llm.train import common
    from ..llm.train.rowstats import load_stats
    from ..llm.train.shortcut import eq3_stage, fit_problem, tf_eval

    common.set_threads(args.threads)
    at = int(args.at)
    log = lambda msg: print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)  # noqa: E731
    data = collect(args.n, at, seed=args.seed, threads=args.threads, projector=args.projector, log=log)
    recs = records(data)
    idx = np.random.default_rng(0).permutation(len(recs))
    n_val = max(1, int(len(recs) * args.val_fraction))
    val_recs, recs = [recs[i] for i in idx[:n_val]], [recs[i] for i in idx[n_val:]]
    m = common.mirror(args.model)
    full = Model(str(args.model or default_model_path()))
    out = Path(args.out or Path("models/vlm") / artifact_name(at))
    ck = common.Checkpoint(Path(args.ckpt) if args.ckpt else _cache_dir() / (out.name + ".ckpt"))
    sz = load_stats(args.stats) if args.stats else None
    if sz is not None and at not in list(sz["layers"]):
        raise SystemExit(f"{args.stats}: the row statistics have no layer {at}")
    cache = _fed(recs)
    net, fit_loss, ids, _ = fit_problem(m, cache, sz, at, np.arange(len(cache["tok"])))
    vc = _fed(val_recs)
    Xv, Yv = m.embed(torch.as_tensor(vc["tok"])).float(), torch.as_tensor(vc["rows"])
    sv = (Yv - Xv).std(0).clamp_min(1e-3)

    def val_fit():
        with torch.no_grad():
            return (float(((net(Xv) - Yv) / sv).pow(2).mean()),)

    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    stage, step, hist, evals = "fit", 0, {"fit": [], "eq3": []}, {}
    state = None if args.fresh else ck.load()
    if state and state.get("at") == at:
        net.load_state_dict(state["net"])
        stage, step, hist, evals = state["stage"], state["step"], state["hist"], state.get("evals", {})
        if stage == "eq3":
            opt = torch.optim.AdamW(net.parameters(), lr=args.lr * 0.1, weight_decay=1e-4)
        opt.load_state_dict(state["opt"])
        log(f"resumed at {stage} step {step}")

    def save(at_step, force=False):
        ck.maybe_save({"at": at, "net": net.state_dict(), "opt": opt.state_dict(), "stage": stage, "step": at_step,
                       "hist": hist, "evals": evals}, force)

    tag = f"vlm-shortcut-{at}"
    if stage == "fit":
        common.fit_stage(net, opt, fit_loss, len(ids), steps=args.fit_steps, start=step, batch=args.batch, lr=args.lr,
                         val=val_fit, hist=hist["fit"], save=save, tag=f"{tag} fit")
        evals["fit"] = {**tf_eval(m, net, val_recs, at), **greedy_agreement(m, net, val_recs, at, full.is_eog)}
        log(f"after fit: {evals['fit']}")
        stage, step = "eq3", 0
        opt = torch.optim.AdamW(net.parameters(), lr=args.lr * 0.1, weight_decay=1e-4)
        save(0, True)
    if stage == "eq3" and args.eq3_steps > 0:
        step = eq3_stage(m, net, opt, recs, val_recs, at, steps=args.eq3_steps, start=step, minutes=args.minutes,
                         val_every=args.eq3_val_every, hist=hist["eq3"], evals=evals, save=save, tag=tag)
        evals["eq3"] = {**tf_eval(m, net, val_recs, at), **greedy_agreement(m, net, val_recs, at, full.is_eog)}
        log(f"after Eq. 3: {evals['eq3']}")
    meta = {"recipe": "collab.vlm.shortcut_train", "answers": "vlm",
            "objective": "fit (standardised MSE on per-token mean rows: the VLM's answers + offline text) then Eq. 3",
            "projector_sha256": projector_digest(projector_path() if args.projector is None else args.projector),
            "image_size": 112, "questions": len(recs), "validation_questions": len(val_recs),
            "fed_rows": int(len(cache["tok"])), "text_tokens": int(sz["tokens"]) if sz is not None else 0,
            "fit_steps": args.fit_steps, "eq3_steps_done": step if stage == "eq3" else 0, "val_mse_std": val_fit()[0],
            "validation": {k: ({a: b for a, b in v.items() if a != "net"} if k == "eq3_best" else v)
                           for k, v in evals.items()}, "history": hist}
    return common.write_artifact(net, out, at=at, n_layer=m.n_layer, model=args.model or default_model_path(),
                                 meta=meta, tag=tag, summary=f"validation {evals.get('eq3') or evals.get('fit')}")


def add_arguments(p) -> None:
    p.add_argument("--at", type=int, default=15, help="split point l (default 15, the VLM split's)")
    p.add_argument("--n", type=int, default=550, help="training questions (Fashion-MNIST train images)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--val-fraction", type=float, default=0.1, help="questions held back for validation")
    p.add_argument("--model", default=None)
    p.add_argument("--projector", default=None)
    p.add_argument("--stats", default=None,
                   help="directory of the text LLM's rowstats.npz (collab.llm.train.rowstats; default: none)")
    p.add_argument("--out", default=None, help="artifact (default models/vlm/collab-vlm-tiny.shortcut-L.clfn)")
    p.add_argument("--ckpt", default=None, help="checkpoint (default: $COLLAB_CACHE/vlm/<artifact>.ckpt)")
    p.add_argument("--fit-steps", type=int, default=1500)
    p.add_argument("--eq3-steps", type=int, default=4000)
    p.add_argument("--eq3-val-every", type=int, default=250, help="validate every N Eq. 3 steps, keep the best")
    p.add_argument("--minutes", type=float, default=15.0, help="stop Eq. 3 after this long (0: no limit)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="train the decoding shortcut (Eq. 3) for collab-vlm-tiny's answers")
    add_arguments(ap)
    train(ap.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
