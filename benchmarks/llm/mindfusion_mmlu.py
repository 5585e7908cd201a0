"""MMLU accuracy of the split configurations on every held-out MMLU question that ships offline.

    python benchmarks/llm/mindfusion_mmlu.py [--at 15 --at 8 ...]

What ships offline: lm-eval 0.4.13's MMLU tasks are YAML files pointing at the Hugging Face
dataset cais/mmlu (downloaded at run time, not here); the only MMLU questions in the package
are the chain-of-thought few-shot exemplars (tasks/mmlu/flan_cot_fewshot/_cot_prompts.json,
about 5 dev-set questions per subject with worked answers and gold letters). The held-out
subjects of collab.llm.train.prompts (never trained on) give the questions used here.

Scoring as lm-eval's multiple-choice MMLU: among the letters A-D, the one the model gives the
highest logit at the answer's first position (the prompt asks for the letter first). The
first answer token never goes through the decoding shortcut (Eq. 3: it comes from the
original path), so "with D" scores exactly as the vanilla split and "R + D" as R: only the
prefill rows matter here. Configurations: full model, vanilla split, R (trained FC codec,
int8 codes, on the rows before the question), SLICER at R's bytes. llama.cpp for everything.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mindfusion_quality import Split, slicer_at_bytes  # noqa: E402

from collab.bench_io import save_json  # noqa: E402
from collab.llm.fcnet import FcRowPolicy, decode_fc_rows  # noqa: E402
from collab.llm.models import default_model_path  # noqa: E402
from collab.llm.runtime import Model  # noqa: E402
from collab.llm.train.prompts import all_prompts  # noqa: E402

LETTERS = "ABCD"


def letter_ids(model):
    ids = [model.tokenize(c, add_special=False)[0] for c in LETTERS]
    if len(set(ids)) != 4:
        raise RuntimeError("the letters A-D do not tokenize to four different first tokens")
    return np.asarray(ids)


def pick(logits, ids):
    return LETTERS[int(np.argmax(logits[ids]))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--at", type=int, action="append", help="split points (default 15)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="at most this many questions (0: all held-out ones)")
    ap.add_argument("--out", default="benchmarks/results/mindfusion_mmlu.json")
    args = ap.parse_args()
    src = default_model_path()
    full = Model(src)
    ids = letter_ids(full)
    _, held = all_prompts()
    qs = [p for p in held if p.source == "mmlu"]
    if args.limit:
        qs = qs[: args.limit]
    print(f"{len(qs)} held-out MMLU questions ({len({p.group for p in qs})} subjects), letter scoring (llama.cpp)")
    res = {"questions": [p.pid for p in qs], "gold": [p.gold for p in qs], "full": [], "splits": {}}
    toks_of = {}
    for p in qs:
        text, hc = p.chat()
        toks = full.tokenize(text, add_special=False)
        toks_of[p.pid] = (toks, len(full.tokenize(text[:hc], add_special=False)))
        with full.session("full", n_ctx=len(toks) + 8, n_threads=args.threads) as s:
            res["full"].append(pick(s.decode(toks)[-1], ids))
    for at in args.at or [15]:
        sp = Split(src, at, args.threads)
        codec = sp.codecs.get(8)
        out = {"vanilla": [], "R": [], "SLICER=R": [], "bytes": {"vanilla": [], "R": [], "SLICER=R": []}}
        for i, p in enumerate(qs):
            toks, q0 = toks_of[p.pid]
            n = len(toks)
            rows = sp.head_rows(toks)
            d = rows.shape[1]
            cfg = {"vanilla": (rows, n * d * 4)}
            if codec is not None and q0 > 2:
                pol = FcRowPolicy(codec, keep_last=n - q0, dtype="int8")
                payload = pol.encode(rows)
                cfg["R"] = (decode_fc_rows(payload, codec), len(payload))
                lo, hi = pol.span(n)
                exact = (n - (hi - lo)) * d * 4
                s_rows, s_bytes, _ = slicer_at_bytes(rows[lo:hi], len(payload) - exact)
                sl = rows.copy()
                sl[lo:hi] = s_rows
                cfg["SLICER=R"] = (sl, s_bytes + exact)
            for name, (rr, nbytes) in cfg.items():
                with sp.tail.session("tail", n_ctx=n + 8, n_threads=args.threads) as t:
                    out[name].append(pick(t.decode_rows(rr)[-1], ids))
                out["bytes"][name].append(nbytes)
            if (i + 1) % 10 == 0:
                print(f"[l={at}] {i + 1}/{len(qs)}", flush=True)
        res["splits"][str(at)] = out
    gold = np.array(res["gold"])
    acc = lambda a: float(np.mean(np.array(a) == gold[: len(a)])) if a else None  # noqa: E731
    summ = {"full": acc(res["full"]), "n": len(qs), "chance": 0.25}
    print(f"\n| config | MMLU acc (n={len(qs)}) | agrees with full | KB up prefill |\n|---|---|---|---|")
    print(f"| full model | {summ['full']:.3f} | - | - |")
    for at, out in res["splits"].items():
        for name in ("vanilla", "R", "SLICER=R"):
            if not out[name]:
                continue
            same = float(np.mean(np.array(out[name]) == np.array(res["full"][: len(out[name])])))
            summ[f"l{at}/{name}"] = {"acc": acc(out[name]), "agree_full": same,
                                     "kb_prefill": float(np.mean(out["bytes"][name])) / 1024}
            print(f"| l={at} {name}{' (= with D)' if name == 'vanilla' else ' (= R + D)' if name == 'R' else ''} | "
                  f"{acc(out[name]):.3f} | {same:.3f} | {np.mean(out['bytes'][name]) / 1024:.1f} |")
    res["summary"] = summ
    save_json(args.out, res)


if __name__ == "__main__":
    main()
