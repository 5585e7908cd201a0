"""Train MindFusion's decoding shortcut (Eq. 3) on a frozen GGUF LLM split at layer l.

    python -m collab.llm.train.shortcut --at 15        (collab llm train-shortcut --at 15)

Two stages, both resumable from <out>.ckpt:
  fit   regression of the projection onto the head's rows, standardised MSE: on the
        per-token mean rows over offline text (collab.llm.train.rowstats; the same optimum
        as regressing on every (token, row) pair) merged with the rows of the fed-back
        answer tokens (weighted up: they are exactly what the shortcut replaces);
  eq3   Eq. 3 itself: the first answer token from the original path (a constant term: the
        projection cannot change it), every later one with its input row produced by the
        projection from the previous token's embedding, cross-entropy against the full
        model's greedy answer y-hat through the frozen tail (the prompt's tail K/V are computed
        once per prompt without gradient; only the answer rows run backward).
Writes a CLFN artifact (collab.llm.artifact) the native runtime loads.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import common
from .args import add_shortcut_arguments as add_arguments
from .data import load
from .nets import Shortcut, stats
from .rowstats import load_stats

__all__ = ["run_train_shortcut", "add_arguments", "eq3_loss", "eq3_loss_whole_sequence", "PromptCache", "fit_problem",
           "keep_fit_if_better", "eq3_stage", "prompt_rows", "tf_eval", "main"]


def prompt_rows(m, rec, at: int) -> torch.Tensor:
    """The rows entering layer ``at`` over a sample's prompt: rec["head_rows"] when the sample
    carries them (a VLM prompt: its image rows come from the vision encoder, not from tokens),
    else the torch mirror's head over rec["tokens"]."""
    if rec.get("head_rows") is not None:
        return torch.as_tensor(rec["head_rows"], dtype=torch.float32)
    return m.rows(rec["tokens"], upto=at)


def eq3_loss(m, net, rec, at: int, prompts: "PromptCache | None" = None) -> tuple[torch.Tensor, float]:
    """(loss through the shortcut, constant first-token term) for one sample, Eq. 3 / T.

    The prompt's part of the sequence does not depend on the shortcut: its K/V in the tail and
    the logits of its last row (the first answer token) come without gradient, once per prompt
    (``prompts`` keeps them); only the fed-back answer rows run forward and backward, attending
    to the cached K/V. Same loss as running the whole sequence through the tail."""
    ans = rec["answer"]
    kv, first = (prompts or PromptCache(0)).get(m, rec, at)
    fed = net(m.embed(ans[:-1]))                         # shortcut rows for the fed-back tokens
    logits = m.tail_extend(fed, at, kv)
    nll = F.cross_entropy(logits, torch.as_tensor(ans[1:]), reduction="sum")
    T = len(ans)
    return nll / T, float(F.cross_entropy(first, torch.as_tensor(ans[:1]))) / T


def eq3_loss_whole_sequence(m, net, rec, at: int) -> tuple[torch.Tensor, float]:
    """eq3_loss computed the plain way (prompt and answer rows through the tail together): the
    reference the cached version is checked and timed against."""
    ans = rec["answer"]
    with torch.no_grad():
        head = prompt_rows(m, rec, at)
    logits = m.tail(torch.cat([head, net(m.embed(ans[:-1]))]), at, logits_from=len(head) - 1)
    nll = F.cross_entropy(logits, torch.as_tensor(ans), reduction="none")
    return nll[1:].sum() / len(ans), float(nll[0].detach()) / len(ans)


class PromptCache:
    """Per-prompt tail K/V and first-answer-token logits (no gradient), up to ``budget`` bytes."""

    def __init__(self, budget: int = 6 << 30):
        self.budget, self.used, self.kv = budget, 0, {}

    @torch.no_grad()
    def get(self, m, rec, at: int):
        key = (at, rec.get("key") or tuple(rec["tokens"]))
        if key in self.kv:
            return self.kv[key]
        val = m.tail_prefill(prompt_rows(m, rec, at), at)    # exact prefill rows (device side), then the tail
        size = sum(k.numel() + v.numel() for k, v in val[0]) * 4
        if self.used + size <= self.budget:
            self.kv[key] = val
            self.used += size
        return val


YHAT_WEIGHT = 4.0


def _is_val(pid: str) -> bool:
    import hashlib

    return hashlib.sha256(pid.encode()).digest()[0] < 13  # ~5 % of the training prompts, for validation only


@torch.no_grad()
def tf_eval(m, net, recs, at: int) -> dict:
    """Teacher-forced top-1 agreement with y-hat and its mean NLL through the shortcut (torch mirror)."""
    hit = n = 0
    nll = 0.0
    for r in recs:
        ans = r["answer"]
        if len(ans) < 2:
            continue
        head = prompt_rows(m, r, at)
        logits = m.tail(torch.cat([head, net(m.embed(ans[:-1]))]), at, logits_from=len(head))
        y = torch.as_tensor(ans[1:])
        hit += int((logits.argmax(-1) == y).sum())
        nll += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
    return {"tf_top1": hit / max(n, 1), "nll": nll / max(n, 1), "tokens": n}


def _targets(m, cache, stats_z, at: int, tr):
    """(token ids, target mean rows, weights): offline-text sums (rowstats; None: none) plus the
    answer rows (weighted)."""
    V, d = m.w("token_embd.weight").shape
    S = torch.zeros(V, d, dtype=torch.float64)
    C = torch.zeros(V, dtype=torch.float64)
    if stats_z is not None:
        ids = torch.as_tensor(stats_z["ids"])
        S[ids] += torch.as_tensor(stats_z[f"sum{at}"]).double()
        C[ids] += torch.as_tensor(stats_z["cnt"])
    tok = torch.as_tensor(cache["tok"])[tr]
    S.index_add_(0, tok, YHAT_WEIGHT * torch.as_tensor(cache["rows"])[tr].double())
    C.index_add_(0, tok, torch.full((len(tok),), YHAT_WEIGHT, dtype=torch.float64))
    ids = torch.nonzero(C).flatten()
    return ids, (S[ids] / C[ids, None]).float(), C[ids].float()


def _wstats(x, w, floor=1e-3):
    w = (w / w.sum())[:, None]
    mu = (w * x).sum(0)
    return mu, ((w * (x - mu).pow(2)).sum(0)).sqrt().clamp_min(floor)


def fit_problem(m, cache, stats_z, at: int, tr):
    """(new Shortcut net, fit loss on a batch of indices, token ids, their target rows): the fit
    stage's regression of the projection onto per-token mean rows (_targets), tokens drawn by
    their weight."""
    ids, M, W = _targets(m, cache, stats_z, at, tr)
    X = m.embed(ids).float()
    net = Shortcut(m.n_embd, _wstats(X, W), _wstats(M - X, W))
    probs = W / W.sum()

    def fit_loss(b):
        b = torch.multinomial(probs, len(b), replacement=True)
        return ((net(X[b]) - M[b]) / net.out.s).pow(2).mean()

    return net, fit_loss, ids, M


def eq3_stage(m, net, opt, recs, val_recs, at: int, *, steps: int, start: int, minutes: float, val_every: int,
              hist: list, evals: dict, save, tag: str, prompts: "PromptCache | None" = None) -> int:
    """Eq. 3 over ``recs`` in rounds of ``val_every`` steps, keeping the net with the best
    teacher-forced validation NLL on ``val_recs`` (evals["eq3_best"]; loaded into ``net`` at the
    end): with a few hundred prompts Eq. 3 starts to overfit after a few epochs. Returns the step
    reached."""
    prompts = prompts if prompts is not None else PromptCache()

    def eq3(rec):
        if len(rec["answer"]) < 2:
            return None
        return eq3_loss(m, net, rec, at, prompts)[0]

    step = start
    every = int(val_every or 0) or steps

    def validate():
        ev = tf_eval(m, net, val_recs, at)
        print(f"[{tag}] Eq. 3 step {step}: validation NLL {ev['nll']:.4f}, top-1 {ev['tf_top1']:.4f}",
              file=sys.stderr, flush=True)
        if ev["nll"] < evals.get("eq3_best", {}).get("nll", float("inf")):
            evals["eq3_best"] = {"step": step, "nll": ev["nll"], "tf_top1": ev["tf_top1"],
                                 "net": {k: v.clone() for k, v in net.state_dict().items()}}

    if every < steps and start > 0 and "eq3_best" not in evals:
        validate()  # continued from an Eq. 3 net: it is a candidate too
    t_end = time.time() + 60 * minutes if minutes else float("inf")
    while step < steps and time.time() < t_end:
        left = (t_end - time.time()) / 60 if minutes else 0.0
        step = common.sample_stage(opt, eq3, recs, steps=min(step + every, steps), start=step,
                                   minutes=max(left, 1e-3) if minutes else 0.0, hist=hist, save=save,
                                   tag=f"{tag} eq3", seed=1)
        if every < steps:
            validate()
            save(step, True)
    best = evals.get("eq3_best")
    if best is not None and best["step"] != step:
        print(f"[{tag}] keeping the Eq. 3 net of step {best['step']} (best validation NLL)", file=sys.stderr)
        net.load_state_dict(best["net"])
    return step


def keep_fit_if_better(m, net, evals: dict, val_recs, at: int) -> bool:
    """Load the fit-stage net into ``net`` if its validation NLL beats the Eq. 3 net's
    (evals["eq3"]); True if it did. A fit validated on other prompts (training continued with
    another data set) is validated again on ``val_recs`` first: NLLs of two prompt sets do not
    compare."""
    if "fit" not in evals or "eq3" not in evals:
        return False
    if "fit_net" in evals and evals["fit"].get("tokens") != evals["eq3"].get("tokens"):
        eq3_net = {k: v.clone() for k, v in net.state_dict().items()}
        net.load_state_dict(evals["fit_net"])
        evals["fit"] = tf_eval(m, net, val_recs, at)
        net.load_state_dict(eq3_net)
        print(f"[shortcut-{at}] fit-stage net on these validation prompts: {evals['fit']}", file=sys.stderr)
    if evals["eq3"]["nll"] <= evals["fit"]["nll"] or "fit_net" not in evals:
        return False
    net.load_state_dict(evals["fit_net"])
    return True


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
    val_recs = [r for r in recs if _is_val(r["pid"])][:24]
    recs = [r for r in recs if not _is_val(r["pid"])]
    n_fit = int(getattr(args, "fit_prompts", 0) or 0) or len(recs)
    cache = common.cache_rows(args.data, recs[:n_fit], layers, model=args.model)[at]
    sz = load_stats(getattr(args, "stats", None) or args.data)
    if sz is not None and at not in list(sz["layers"]):
        sz = None
    tr, va = _split(len(cache["tok"]))
    net, fit_loss, ids, M = fit_problem(m, cache, sz, at, tr)
    Xv = m.embed(torch.as_tensor(cache["tok"])[va]).float()
    Yv = torch.as_tensor(cache["rows"])[va]
    if sz is not None and len(sz["tok"]):
        Xv = torch.cat([Xv, m.embed(torch.as_tensor(sz["tok"])).float()])
        Yv = torch.cat([Yv, torch.as_tensor(sz[f"val{at}"]).float()])
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    state = None if args.fresh else ck.load()
    stage, step, hist = "fit", 0, {"fit": [], "eq3": []}
    evals = {}
    if state and state.get("at") == at:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        stage, step, hist = state["stage"], state["step"], state["hist"]
        evals = state.get("evals", {})
        print(f"[shortcut-{at}] resumed at {stage} step {step}", file=sys.stderr)

    def save(at_step, force=False):
        ck.maybe_save({"at": at, "net": net.state_dict(), "opt": opt.state_dict(), "stage": stage, "step": at_step,
                       "hist": hist, "evals": evals}, force)

    # validation rows: held-out answer pairs and the offline-text validation chunks, real rows
    sv = (Yv - Xv).std(0).clamp_min(1e-3)
    oracle = None
    if sz is not None:
        mean_of = dict(zip(ids.tolist(), range(len(ids))))
        seen = [i for i, t in enumerate(torch.cat([torch.as_tensor(cache["tok"])[va],
                                                    torch.as_tensor(sz["tok"])]).tolist()) if t in mean_of]

    def val_fit():
        with torch.no_grad():
            r = ((net(Xv) - Yv) / sv).pow(2).mean()
            base = ((Yv - Xv - (Yv - Xv).mean(0)) / sv).pow(2).mean()
            return float(r), float(base)

    if sz is not None:
        allt = torch.cat([torch.as_tensor(cache["tok"])[va], torch.as_tensor(sz["tok"])]).tolist()
        sel = torch.as_tensor(seen)
        mrow = M[torch.as_tensor([mean_of[allt[i]] for i in seen])]
        oracle = float(((mrow - Yv[sel]) / sv).pow(2).mean()) if len(seen) else None

    if stage == "fit":
        common.fit_stage(net, opt, fit_loss, len(ids), steps=args.fit_steps, start=step, batch=args.batch, lr=args.lr,
                         val=val_fit, hist=hist["fit"], save=save, tag=f"shortcut-{at} fit")
        evals["fit"] = tf_eval(m, net, val_recs, at)
        evals["fit_net"] = {k: v.clone() for k, v in net.state_dict().items()}
        print(f"[shortcut-{at}] after fit: {({k: v for k, v in evals['fit'].items()})}", file=sys.stderr)
        stage, step = "eq3", 0
        opt = torch.optim.AdamW(net.parameters(), lr=args.lr * 0.1, weight_decay=1e-4)
        save(0, True)

    if stage == "eq3" and args.eq3_steps > 0:
        step = eq3_stage(m, net, opt, recs, val_recs, at, steps=args.eq3_steps, start=step, minutes=args.eq3_minutes,
                         val_every=getattr(args, "eq3_val_every", 0), hist=hist["eq3"], evals=evals, save=save,
                         tag=f"shortcut-{at}")

    v, base = val_fit()
    if stage == "eq3" and step > 0:
        evals["eq3"] = tf_eval(m, net, val_recs, at)
        print(f"[shortcut-{at}] after Eq. 3: {evals['eq3']}", file=sys.stderr)
        if keep_fit_if_better(m, net, evals, val_recs, at):
            print(f"[shortcut-{at}] Eq. 3 made the validation NLL worse: exporting the fit-stage net", file=sys.stderr)
            evals["exported"] = "fit"
            v, base = val_fit()
    meta = {"recipe": "collab.llm.train.shortcut",
            "objective": "fit (standardised MSE on per-token mean rows: offline text + answers) then Eq. 3",
            "fit_steps": args.fit_steps, "eq3_steps_done": step if stage == "eq3" else 0, "val_mse_std": v,
            "val_mse_std_identity": base, "val_mse_std_token_mean_oracle": oracle,
            "train_prompts": len(recs), "fit_prompts": n_fit, "decode_rows": int(len(cache["tok"])),
            "text_tokens": int(sz["tokens"]) if sz is not None else 0, "distinct_tokens": int(len(ids)),
            "validation": {k: ({a: b for a, b in v.items() if a != "net"} if k == "eq3_best" else v)
                           for k, v in evals.items() if k != "fit_net"}, "history": hist}
    common.write_artifact(net, out, at=at, n_layer=m.n_layer, model=args.model, meta=meta, tag=f"shortcut-{at}",
                          summary=f"val std-MSE {v:.4f}, identity {base:.4f}, token-mean oracle {oracle}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="train the decoding shortcut (Eq. 3) at split point --at")
    add_arguments(ap)
    return run_train_shortcut(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
