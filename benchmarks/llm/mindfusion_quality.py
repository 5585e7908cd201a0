"""MindFusion Table IV / Table III analogs on SmolLM2-135M, every number from llama.cpp
(collab's native split runner) and the native (ggml) trained nets.

    python benchmarks/llm/mindfusion_quality.py [--at 15 --at 4 ...] [--prompts 16] [--tokens 64]

Held-out prompts (collab.llm.train.prompts: subjects/templates training never saw). Per split
point l and configuration:
  vanilla   exact split (prefill rows f32, every decode row from the head)
  D         decoding shortcut: decode rows = trained projection of the token embedding
  R         prefill rows 1..q_start-1 through the trained FC codec (int8 codes), rest exact
  R+D       both
  SLICER=R  SLICER codec on the same rows, settings picked to use at most R's bytes
Metrics: agreement with the full model's 64 greedy tokens (position-wise and exact prefix),
MMLU accuracy (first A-D letter of the answer vs the gold letter), perplexity of the full
model's greedy answer y-hat (teacher forced), bytes up (prefill payload + decode rows).
Table III analog (--table3): the codec on early rows only / last rows only / all rows, 1/4
and 1/8, teacher-forced top-1 agreement and perplexity.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from collab.bench_io import pyplot, save_json, save_png
from collab.llm import protocol
from collab.llm.fcnet import FcRowPolicy, decode_fc_rows, find_artifact, load_net
from collab.llm.models import default_model_path
from collab.llm.runtime import Model, greedy
from collab.llm.server import prepare_parts
from collab.llm.shortcut import ShortcutProjection, TokenEmbedding
from collab.llm.train.prompts import all_prompts

ROW = 4  # bytes per float32


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def held_out(n, seed=0):
    _, held = all_prompts()
    mm = [p for p in held if p.source == "mmlu"]
    tp = [p for p in held if p.source != "mmlu"]
    rng = np.random.default_rng(seed)
    mm = [mm[i] for i in rng.permutation(len(mm))][: n - n // 3]
    tp = [tp[i] for i in rng.permutation(len(tp))][: n // 3]
    return mm + tp


def mmlu_letter(text):
    """The answer letter: "answer is (X)", else the first "(X)", else a leading bare letter."""
    for pat in (r"answer is:? \(?([A-D])\b", r"\(([A-D])\)", r"^\s*(?:A:\s*)?([A-D])\b(?!:)"):
        m = re.search(pat, text)
        if m:
            return m.group(1)
    return ""


class Split:
    def __init__(self, src, at, threads):
        head, tail, _ = prepare_parts(src, at)
        self.at = at
        self.head, self.tail = Model(head), Model(tail)
        self.threads = threads
        p = find_artifact("shortcut", at)
        self.shortcut = ShortcutProjection.load(p, model=tail, split_at=at) if p else None
        self.codecs = {r: load_net(p, kind="codec", model=head, split_at=at)
                       for r in (8, 4) if (p := find_artifact("codec", at, r))}
        self.embed = TokenEmbedding(tail)

    def head_rows(self, toks):
        with self.head.session("head", n_ctx=len(toks) + 8, n_threads=self.threads) as s:
            return s.decode(toks)

    def generate(self, prefill, next_row, n_new, n_ctx):
        """Greedy tokens from prefill rows; next_row(tok) gives each decode step's row."""
        out = []
        with self.tail.session("tail", n_ctx=n_ctx, n_threads=self.threads) as t:
            tok = greedy(t.decode_rows(prefill)[-1])
            out.append(tok)
            while len(out) < n_new and not self.tail.is_eog(tok):
                tok = greedy(t.decode_rows(next_row(tok))[-1])
                out.append(tok)
        return out

    def teacher_forced(self, prefill, fed_rows, targets, n_ctx):
        """Logits predicting targets: the last prefill row, then one per fed row."""
        with self.tail.session("tail", n_ctx=n_ctx, n_threads=self.threads) as t:
            rows = np.concatenate([prefill, fed_rows]) if len(fed_rows) else prefill
            lg = t.decode_rows(rows, n_outputs=len(targets))
        return lg


def slicer_at_bytes(rows, budget):
    """SLICER on rows with the largest payload <= budget (sparsity x qbits grid)."""
    best = None
    for q in (8, 4, 2):
        for s in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99):
            pol = protocol.RowPolicy(keep_last=0, sparsity=s, qbits=(q,))
            p = protocol.encode_rows(rows, pol)
            if len(p) <= budget and (best is None or len(p) > len(best[0])):
                best = (p, f"s{s}-q{q}")
    if best is None:
        raise RuntimeError(f"SLICER cannot reach {budget} bytes")
    return protocol.decode_rows(best[0], n_embd=rows.shape[1]), len(best[0]), best[1]


def run_prompt(sp: Split, p, full, ref, args, table3=False):
    text, hc = p.chat()
    toks = sp.head.tokenize(text, add_special=False)
    n = len(toks)
    q0 = len(sp.head.tokenize(text[:hc], add_special=False))
    n_ctx = n + args.tokens + 8
    rows = sp.head_rows(toks)
    d = rows.shape[1]
    ref_toks = ref["tokens"]
    # exact rows of the fed-back reference tokens (teacher forcing) and head decode for vanilla
    with sp.head.session("head", n_ctx=n_ctx, n_threads=sp.threads) as hs:
        hs.decode(toks)
        fed_exact = hs.decode(ref_toks[:-1]) if len(ref_toks) > 1 else np.zeros((0, d), np.float32)
    res = {}
    cfgs = {"vanilla": (rows, "head", n * d * ROW)}
    if sp.shortcut is not None:
        cfgs["D"] = (rows, "shortcut", n * d * ROW)
    want_r = not args.configs or bool({"R", "R+D", "SLICER=R"} & set(args.configs))
    codec = sp.codecs.get(8) if want_r else None
    if codec is not None and q0 > 2:
        pol = FcRowPolicy(codec, keep_last=n - q0, dtype="int8")
        payload = pol.encode(rows)
        r_rows = decode_fc_rows(payload, codec)
        cfgs["R"] = (r_rows, "head", len(payload))
        if sp.shortcut is not None:
            cfgs["R+D"] = (r_rows, "shortcut", len(payload))
        lo, hi = pol.span(n)
        budget = len(payload) - (n - (hi - lo)) * d * ROW
        s_rows, s_bytes, s_set = slicer_at_bytes(rows[lo:hi], budget)
        sl = rows.copy()
        sl[lo:hi] = s_rows
        cfgs["SLICER=R"] = (sl, "head", s_bytes + (n - (hi - lo)) * d * ROW)
        res["slicer_setting"] = s_set
    if args.quality_table:
        res["policies"] = policy_rows(sp, rows, fed_exact, ref_toks, q0, n_ctx)
    for name, (pre, dec, up) in cfgs.items():
        if args.configs and name not in args.configs:
            continue
        if dec == "shortcut":
            nxt = lambda t: sp.shortcut(sp.embed([t]))  # noqa: E731
            fed = sp.shortcut(sp.embed(ref_toks[:-1])) if len(ref_toks) > 1 else np.zeros((0, d), np.float32)
            dec_bytes = 0
        else:
            hsess = sp.head.session("head", n_ctx=n_ctx, n_threads=sp.threads)
            hsess.decode(toks)
            nxt = lambda t, h=hsess: h.decode([t])  # noqa: E731
            fed = fed_exact
            dec_bytes = None
        t0 = time.perf_counter()
        gen = sp.generate(pre, nxt, args.tokens, n_ctx)
        if dec != "shortcut":
            hsess.close()
            dec_bytes = (len(gen) - 1) * d * ROW  # one exact row per decode step (roundtrip)
        lg = sp.teacher_forced(pre, fed, ref_toks, n_ctx)
        nll = -log_softmax(lg)[np.arange(len(ref_toks)), ref_toks]
        m = min(len(gen), len(ref_toks))
        eq = np.array(gen[:m]) == np.array(ref_toks[:m])
        prefix = int(np.argmin(eq)) if not eq.all() else m
        res[name] = {"agree": float(eq.mean()) if m else 0.0, "prefix": prefix, "first_ok": bool(gen[0] == ref_toks[0]),
                     "tf_top1": float(np.mean(lg.argmax(-1) == np.array(ref_toks))),
                     "nll": float(nll.mean()), "bytes_prefill": int(up), "bytes_decode": int(dec_bytes),
                     "answer": sp.tail.detokenize([t for t in gen if not sp.tail.is_eog(t)]),
                     "s": time.perf_counter() - t0}
        if p.source == "mmlu":
            res[name]["mmlu_ok"] = mmlu_letter(res[name]["answer"]) == p.gold
    if table3:
        res["table3"] = table3_prompt(sp, rows, fed_exact, ref_toks, q0, n_ctx)
    res.update(n=n, q_start=q0, raw_prefill=n * d * ROW)
    return res


SLICER_FIXED = ((0.5, 8), (0.75, 8), (0.9, 8), (0.9, 4), (0.95, 4))


def policy_rows(sp, rows, fed, ref_toks, q0, n_ctx):
    """The row policies a device can run for the early rows (1 .. q_start-1), each measured
    teacher forced on y-hat: bytes per early row, codec time per row, TF top-1, NLL. Feeds the
    measured quality table (collab.planner.quality)."""
    n, d = rows.shape
    lo, hi = 1, q0
    if hi - lo < 1:
        return {}
    pols = {"exact": ({}, None)}
    for s_, q in SLICER_FIXED:
        pols[f"slicer-s{s_}-q{q}"] = ({"sparsity": s_, "qbits": q}, protocol.RowPolicy(keep_last=n - hi, sparsity=s_,
                                                                                       qbits=(q,)))
    for r, codec in sp.codecs.items():
        pols[f"fc-r{r}-int8"] = ({"ratio": r, "dtype": "int8"}, FcRowPolicy(codec, keep_last=n - hi, dtype="int8"))
    out = {}
    for name, (cfg, pol) in pols.items():
        t0 = time.perf_counter()
        # FC leaves row 0 (the attention sink) exact, SLICER's RowPolicy compresses it with the rest
        first = 0 if name.startswith("slicer") else lo
        if pol is None:
            rr, nbytes = rows, (hi - lo) * d * ROW
        else:
            payload = pol.encode(rows) if name.startswith("fc") else protocol.encode_rows(rows, pol)
            t1 = time.perf_counter()
            rr = decode_fc_rows(payload, pol.codec) if name.startswith("fc") else \
                protocol.decode_rows(payload, n_embd=d)
            nbytes = (len(payload) - (n - (hi - first)) * d * ROW) * (hi - lo) / (hi - first)
        t2 = time.perf_counter()
        lg = sp.teacher_forced(rr, fed, ref_toks, n_ctx)
        nll = -log_softmax(lg)[np.arange(len(ref_toks)), ref_toks]
        out[name] = {"policy": name.split("-")[0], "config": cfg, "bytes_per_row": nbytes / (hi - lo),
                     "codec_ms_per_row": 0.0 if pol is None else (t2 - t0) * 1e3 / (hi - lo),
                     "encode_ms_per_row": 0.0 if pol is None else (t1 - t0) * 1e3 / (hi - lo),
                     "tf_top1": float(np.mean(lg.argmax(-1) == np.array(ref_toks))), "nll": float(nll.mean()),
                     "rows": hi - lo}
    return out


def quality_entries(at, per_prompt):
    """collab.quality/1 entries of one split point from the per-prompt policy measurements."""
    from collab.planner.quality import QualityEntry

    names = sorted({k for r in per_prompt for k in r.get("policies", {})})
    out = []
    for name in names:
        rs = [r["policies"][name] for r in per_prompt if name in r.get("policies", {})]
        enc = float(np.mean([x["encode_ms_per_row"] for x in rs]))
        out.append(QualityEntry(split=int(at), policy=rs[0]["policy"], config=rs[0]["config"],
                                reference=name == "exact", bytes_per_item=float(np.mean([x["bytes_per_row"] for x in rs])),
                                quality=float(np.mean([x["tf_top1"] for x in rs])), encode_ms_per_item=enc,
                                decode_ms_per_item=max(0.0, float(np.mean([x["codec_ms_per_row"] for x in rs])) - enc),
                                extra={"ppl": float(math.exp(np.mean([x["nll"] for x in rs]))), "prompts": len(rs),
                                       "rows_per_prompt": float(np.mean([x["rows"] for x in rs]))}))
    return out


def write_quality_table(path, result, src, argv, splits=None):
    """The collab.quality/1 table of the split points measured by this command (``splits``;
    None: every split in ``result``), merged into an existing table at ``path``."""
    import datetime

    from collab.llm.artifact import model_digest
    from collab.planner.quality import QualityTable, load_quality_table, merge_tables

    entries = [e for at, sp in sorted(result["splits"].items(), key=lambda kv: int(kv[0]))
               if splits is None or str(at) in splits for e in quality_entries(at, sp["per_prompt"])]
    if not entries:
        return None
    t = QualityTable(
        system="llm", model_name=Path(src).name, model_sha256=model_digest(src).hex(),
        metric={"name": "tf_top1", "unit": "fraction", "higher_is_better": True,
                "description": "teacher forced on the full model's greedy answer (y-hat): fraction of positions "
                               "whose argmax is y-hat's token; the exact split is the reference (its own value is "
                               "below 1 only by llama.cpp's batched vs single-token rounding)"},
        item="early row (a prompt row before the question, row 0 excluded; the question rows stay exact)",
        measured={"by": "benchmarks/llm/mindfusion_quality.py", "command": " ".join(["python"] + argv),
                  "items": f"{len(result['prompts'])} held-out prompts (collab.llm.train.prompts), "
                           f"{result['tokens']} y-hat tokens each",
                  "n": len(result["prompts"]), "engine": "llama.cpp split runner + native FC nets + SLICER codec",
                  "codec_time": "wall-clock on the measuring machine (1 thread)",
                  "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
        entries=entries)
    if Path(path).is_file():  # keep the split points measured by other runs
        t = merge_tables(load_quality_table(path, system="llm", model_sha256=t.model_sha256), t)
    t.save(path)
    print(f"wrote quality table {path} ({len(t.entries)} entries, splits {t.splits()})")
    return t


def table3_prompt(sp, rows, fed, ref_toks, q0, n_ctx):
    out = {}
    n = rows.shape[0]
    for r, codec in sp.codecs.items():
        for where, (lo, hi) in {"early": (1, q0), "last": (q0, n), "all": (1, n)}.items():
            if hi <= lo:
                continue
            rr = rows.copy()
            rr[lo:hi] = codec.decode(codec.encode(rows[lo:hi]))
            lg = sp.teacher_forced(rr, fed, ref_toks, n_ctx)
            nll = -log_softmax(lg)[np.arange(len(ref_toks)), ref_toks]
            out[f"1/{r}-{where}"] = {"tf_top1": float(np.mean(lg.argmax(-1) == np.array(ref_toks))),
                                     "nll": float(nll.mean()), "rows": hi - lo}
    return out


def reference(full, p, args):
    text, _ = p.chat()
    toks = full.tokenize(text, add_special=False)
    out = []
    with full.session("full", n_ctx=len(toks) + args.tokens + 8, n_threads=args.threads) as s:
        tok = greedy(s.decode(toks)[-1])
        out.append(tok)
        while len(out) < args.tokens and not full.is_eog(tok):
            tok = greedy(s.decode([tok])[-1])
            out.append(tok)
    text_out = full.detokenize([t for t in out if not full.is_eog(t)])
    return {"tokens": out, "answer": text_out, "mmlu_ok": mmlu_letter(text_out) == p.gold if p.source == "mmlu" else None}


def summarize(per_prompt, refs, prompts):
    for r, ref, p in zip(per_prompt, refs, prompts):  # (re)score MMLU from the answers kept
        if p.source == "mmlu":
            ref["mmlu_ok"] = mmlu_letter(ref["answer"]) == p.gold
            for v in r.values():
                if isinstance(v, dict) and "answer" in v:
                    v["mmlu_ok"] = mmlu_letter(v["answer"]) == p.gold
    cfgs = sorted({k for r in per_prompt for k, v in r.items() if isinstance(v, dict) and "agree" in v})
    out = {}
    for c in cfgs:
        rs = [r[c] for r in per_prompt if c in r]
        mm = [r[c]["mmlu_ok"] for r, p in zip(per_prompt, prompts) if c in r and p.source == "mmlu"]
        out[c] = {"agree": float(np.mean([x["agree"] for x in rs])), "prefix": float(np.mean([x["prefix"] for x in rs])),
                  "first_ok": float(np.mean([x["first_ok"] for x in rs])),
                  "tf_top1": float(np.mean([x["tf_top1"] for x in rs])),
                  "ppl": float(math.exp(np.mean([x["nll"] for x in rs]))),
                  "mmlu_acc": float(np.mean(mm)) if mm else None,
                  "bytes_prefill": float(np.mean([x["bytes_prefill"] for x in rs])),
                  "bytes_decode": float(np.mean([x["bytes_decode"] for x in rs])), "n": len(rs)}
    mm_ref = [r["mmlu_ok"] for r, p in zip(refs, prompts) if p.source == "mmlu"]
    out["full"] = {"mmlu_acc": float(np.mean(mm_ref)) if mm_ref else None}
    t3 = [r["table3"] for r in per_prompt if "table3" in r]
    if t3:
        keys = sorted({k for t in t3 for k in t})
        out["table3"] = {k: {"tf_top1": float(np.mean([t[k]["tf_top1"] for t in t3 if k in t])),
                             "ppl": float(math.exp(np.mean([t[k]["nll"] for t in t3 if k in t])))} for k in keys}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--at", type=int, action="append", help="split points (default 15 4 2 1 8)")
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table3", action="store_true")
    ap.add_argument("--configs", type=lambda v: v.split(","), default=None,
                    help="comma-separated subset of vanilla,D,R,R+D,SLICER=R (default: all)")
    ap.add_argument("--out", default="benchmarks/results/mindfusion_quality.json")
    ap.add_argument("--resummarize", action="store_true", help="rescore and reprint --out without running")
    ap.add_argument("--refs-only", action="store_true", help="only compute the full model's reference answers")
    ap.add_argument("--merge", action="store_true",
                    help="add to an existing --out file (same prompts): new split points, or new configurations of "
                         "a split point already there")
    ap.add_argument("--quality-table", default=None,
                    help="also measure the early-row policies (exact, SLICER settings, FC codecs) and write their "
                         "collab.quality/1 table here (the LLM demo's --rows auto reads it)")
    args = ap.parse_args()
    if args.resummarize:
        return resummarize(args.out, args.quality_table)
    ats = [] if args.refs_only else (args.at or [15, 4, 2, 1, 8])
    src = default_model_path()
    full = Model(src)
    prompts = held_out(args.prompts)
    print(f"{len(prompts)} held-out prompts, reference: full model, {args.tokens} greedy tokens (llama.cpp)", flush=True)
    result = {"prompts": [p.pid for p in prompts], "tokens": args.tokens, "splits": {}}
    if args.merge and Path(args.out).is_file():
        old = json.loads(Path(args.out).read_text())
        if old.get("prompts") == result["prompts"] and old.get("tokens") == args.tokens:
            result = old
    if "refs" not in result:
        result["refs"] = [reference(full, p, args) for p in prompts]
        save_json(args.out, result)  # the references are the slow part: keep them even if a split fails
    refs = result["refs"]
    if not ats:
        save_json(args.out, result)
        return
    for at in ats:
        sp = Split(src, at, args.threads)
        per = []
        for i, p in enumerate(prompts):
            per.append(run_prompt(sp, p, full, refs[i], args, table3=args.table3 and bool(sp.codecs)))
            print(f"[l={at}] {i + 1}/{len(prompts)} " + " ".join(
                f"{k}:{v['agree']:.2f}" for k, v in per[-1].items() if isinstance(v, dict) and "agree" in v), flush=True)
        prev = result["splits"].get(str(at))
        if args.merge and prev is not None:  # keep the configurations measured before, replace the ones rerun
            for old_r, new_r in zip(prev["per_prompt"], per):
                old_r.update(new_r)
            per = prev["per_prompt"]
        s = summarize(per, refs, prompts)
        result["splits"][str(at)] = {"summary": s, "per_prompt": per,
                                     "shortcut": sp.shortcut.source if sp.shortcut else None,
                                     "codecs": sorted(sp.codecs)}
        print_table(at, s)
        save_json(args.out, result)
        if args.quality_table:
            result["quality_argv"] = sys.argv
            write_quality_table(args.quality_table, result, src, sys.argv, splits=[str(a) for a in ats[: ats.index(at) + 1]])
    plot(result, args.out)


def resummarize(out, quality_table=None):
    result = json.loads(Path(out).read_text())
    _, held = all_prompts()
    by = {p.pid: p for p in held}
    prompts = [by[pid] for pid in result["prompts"]]
    for at, sp in result["splits"].items():
        sp["summary"] = summarize(sp["per_prompt"], result["refs"], prompts)
        print_table(at, sp["summary"])
    save_json(out, result)
    if quality_table:
        write_quality_table(quality_table, result, default_model_path(), result.get("quality_argv", sys.argv))
    plot(result, out)


def print_table(at, s):
    print(f"\nsplit l={at}: agreement with the full model over the greedy tokens (llama.cpp)")
    print("| config | agree | exact prefix | 1st tok | TF top-1 | ppl(y-hat) | MMLU acc | KB up prefill | KB up decode |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c, v in s.items():
        if c in ("full", "table3"):
            continue
        mm = "-" if v["mmlu_acc"] is None else f"{v['mmlu_acc']:.2f}"
        print(f"| {c} | {v['agree']:.3f} | {v['prefix']:.1f} | {v['first_ok']:.2f} | {v['tf_top1']:.3f} | {v['ppl']:.2f} "
              f"| {mm} | {v['bytes_prefill'] / 1024:.1f} | {v['bytes_decode'] / 1024:.1f} |")
    if s["full"]["mmlu_acc"] is not None:
        print(f"full model MMLU acc (same prompts): {s['full']['mmlu_acc']:.2f}")
    if "table3" in s:
        print("\nTable III analog (teacher forced on y-hat):\n| codec rows | TF top-1 | ppl |\n|---|---|---|")
        for k, v in s["table3"].items():
            print(f"| {k} | {v['tf_top1']:.3f} | {v['ppl']:.2f} |")


def plot(result, out):
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ats = sorted(result["splits"], key=int)
    cfgs = ["vanilla", "D", "R", "R+D", "SLICER=R"]
    w = 0.16
    for j, c in enumerate(cfgs):
        xs = [i + (j - 2) * w for i, a in enumerate(ats) if c in result["splits"][a]["summary"]]
        ys = [result["splits"][a]["summary"][c]["agree"] for a in ats if c in result["splits"][a]["summary"]]
        ax[0].bar(xs, ys, w, label=c)
        ys2 = [result["splits"][a]["summary"][c]["ppl"] for a in ats if c in result["splits"][a]["summary"]]
        ax[1].bar(xs, ys2, w, label=c)
    for a_, t in zip(ax, ("token agreement with full model", "perplexity of y-hat")):
        a_.set_xticks(range(len(ats)))
        a_.set_xticklabels([f"l={a}" for a in ats])
        a_.set_title(t)
    ax[1].set_yscale("log")
    ax[0].legend(fontsize=7)
    save_png(fig, out)


if __name__ == "__main__":
    main()
