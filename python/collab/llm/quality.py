"""`collab llm quality`: what compressing hidden states does to the tail's predictions.

Real text: the MMLU few-shot chain-of-thought prompts that lm-eval ships
(lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json, ``pip install --no-deps
lm-eval==0.4.13``). For each prompt the head runs once; the tail then runs on the exact rows
(reference) and on rows sent through RowPolicy settings (SLICER codec on the early tokens,
MindFusion's rule: the last exemplar, i.e. "the question", at full fidelity; and, for
contrast, everything compressed). Reported per setting, averaged over prompts:

  top1_last / top5_last   next-token argmax equal / top-5 overlap, over the question tokens
  top1_all                argmax agreement over every position
  ppl_ref / ppl           perplexity of the prompt's own next tokens, question tokens only
  bytes / ratio           payload bytes and ratio to raw float32 rows
"""
from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path

import numpy as np

SETTINGS = [  # (label, keep the question exact?, sparsity, qbits)
    ("f16-early", True, None, 8),
    ("s0.50-q8", True, 0.5, 8),
    ("s0.75-q8", True, 0.75, 8),
    ("s0.90-q8", True, 0.9, 8),
    ("s0.75-q4", True, 0.75, 4),
    ("s0.90-q4", True, 0.9, 4),
    ("all-s0.75-q8", False, 0.75, 8),
    ("all-s0.90-q4", False, 0.9, 4),
]


def add_arguments(p):
    p.add_argument("--model", default=None, help="full GGUF (default: embedded SmolLM2)")
    p.add_argument("--at", type=int, default=None, help="split point (default L/2)")
    p.add_argument("--prompts", type=int, default=6, help="how many MMLU subjects (prompts) to use")
    p.add_argument("--max-prompt-tokens", type=int, default=512, help="truncate prompts (keeps their end)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results")


def mmlu_prompts(limit: int):
    """[(subject, text, question_start_char)] from lm-eval's shipped MMLU CoT few-shot prompts."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("lm-eval is not installed: pip install --no-deps lm-eval==0.4.13")
    path = Path(spec.submodule_search_locations[0]) / "tasks" / "mmlu" / "flan_cot_fewshot" / "_cot_prompts.json"
    data = json.loads(path.read_text())
    out = []
    for subject in sorted(data)[:: max(1, len(data) // max(1, limit))][:limit]:
        text = data[subject].rstrip() + "\n"
        q = text.rfind("\n\nQ:")
        out.append((subject, text, q + 2 if q >= 0 else 0))
    return out, str(path)


def _log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def compare(ref_logits, logits, targets, q0):
    """Metrics for positions [q0, n-1) (question) and all positions."""
    a1, b1 = ref_logits.argmax(-1), logits.argmax(-1)
    top5r = np.argpartition(-ref_logits, 5, axis=-1)[:, :5]
    top5c = np.argpartition(-logits, 5, axis=-1)[:, :5]
    overlap = np.array([len(set(x) & set(y)) / 5.0 for x, y in zip(top5r, top5c)])
    lr, lc = _log_softmax(ref_logits[:-1]), _log_softmax(logits[:-1])
    idx = np.arange(len(targets))
    nll_r, nll_c = -lr[idx, targets], -lc[idx, targets]
    sl = slice(q0, len(targets))
    return {"top1_last": float(np.mean(a1[q0:] == b1[q0:])), "top5_last": float(np.mean(overlap[q0:])),
            "top1_all": float(np.mean(a1 == b1)), "top5_all": float(np.mean(overlap)),
            "ppl_ref": float(math.exp(nll_r[sl].mean())), "ppl": float(math.exp(nll_c[sl].mean())),
            "ppl_ref_all": float(math.exp(nll_r.mean())), "ppl_all": float(math.exp(nll_c.mean()))}


def run(args) -> int:
    from . import protocol
    from .models import default_model_path
    from .runtime import Model
    from .server import prepare_parts

    full = Path(args.model) if args.model else default_model_path()
    head_p, tail_p, at = prepare_parts(full, args.at)
    head, tail = Model(head_p), Model(tail_p)
    prompts, src = mmlu_prompts(args.prompts)
    print(f"collab llm quality: {full.name} split at {at}; {len(prompts)} MMLU CoT few-shot prompts from {src}")
    per = {s[0]: [] for s in SETTINGS}
    t_start = time.perf_counter()
    for i, (subject, text, qchar) in enumerate(prompts):
        toks = head.tokenize(text)
        n_q = len(toks) - len(head.tokenize(text[:qchar])) + 1  # tokens of the last exemplar ("question")
        if len(toks) > args.max_prompt_tokens:
            toks = np.concatenate([toks[:1], toks[-(args.max_prompt_tokens - 1):]])
        n = len(toks)
        n_q = max(1, min(n_q, n // 3))  # a very long last exemplar: its last third of the prompt
        q0 = n - n_q
        with head.session("head", n_ctx=1024, n_threads=args.threads) as h:
            rows = h.decode(toks)
        with tail.session("tail", n_ctx=1024, n_threads=args.threads) as t:
            ref = t.decode_rows(rows, n_outputs=n)
        targets = toks[1:].astype(np.int64)
        raw = rows.nbytes
        for label, keep_q, sp, qb in SETTINGS:
            pol = protocol.RowPolicy(keep_last=n_q if keep_q else 0, sparsity=sp, qbits=(qb,))
            payload = protocol.encode_rows(rows, pol)
            got = protocol.decode_rows(payload, n_embd=head.n_embd)
            with tail.session("tail", n_ctx=1024, n_threads=args.threads) as t:
                lg = t.decode_rows(got, n_outputs=n)
            m = compare(ref, lg, targets, q0)
            m.update(subject=subject, n_tokens=n, n_question=n_q, bytes=len(payload), raw_bytes=raw,
                     ratio=len(payload) / raw)
            per[label].append(m)
        print(f"[{i + 1}/{len(prompts)}] {subject:<28} {n:>4} tokens ({n_q} question)  "
              f"{time.perf_counter() - t_start:6.1f} s", flush=True)

    summary = []
    hdr = f"{'setting':<14}{'bytes/raw':>10}{'top1 q':>8}{'top5 q':>8}{'top1 all':>9}{'ppl ref':>9}{'ppl':>9}{'dppl %':>8}"
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for label, keep_q, sp, qb in SETTINGS:
        ms = per[label]
        agg = {k: float(np.mean([m[k] for m in ms])) for k in ("top1_last", "top5_last", "top1_all", "top5_all",
                                                               "ppl_ref", "ppl", "ppl_ref_all", "ppl_all", "ratio")}
        agg["dppl_pct"] = 100.0 * (agg["ppl"] / agg["ppl_ref"] - 1.0)
        agg.update(setting=label, question_exact=keep_q, sparsity=sp, qbits=qb)
        summary.append(agg)
        print(f"{label:<14}{agg['ratio']:>10.3f}{agg['top1_last']:>8.3f}{agg['top5_last']:>8.3f}"
              f"{agg['top1_all']:>9.3f}{agg['ppl_ref']:>9.2f}{agg['ppl']:>9.2f}{agg['dppl_pct']:>8.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"model": str(full), "split_at": at, "prompts_source": src, "n_prompts": len(prompts),
           "max_prompt_tokens": args.max_prompt_tokens, "summary": summary, "per_prompt": per,
           "command": "collab llm quality " + f"--prompts {args.prompts} --max-prompt-tokens {args.max_prompt_tokens}"}
    jp = out / "llm_quality.json"
    jp.write_text(json.dumps(res, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        for s in summary:
            mk = "o" if s["question_exact"] else "x"
            ax[0].plot(s["ratio"], s["top1_last"], mk)
            ax[0].annotate(s["setting"], (s["ratio"], s["top1_last"]), fontsize=7)
            ax[1].plot(s["ratio"], s["dppl_pct"], mk)
            ax[1].annotate(s["setting"], (s["ratio"], s["dppl_pct"]), fontsize=7)
        ax[0].set_ylabel("top-1 agreement on question tokens")
        ax[1].set_ylabel("perplexity change on question tokens (%)")
        for a in ax:
            a.set_xlabel("payload bytes / raw float32 bytes")
            a.grid(alpha=0.3)
        fig.suptitle("hidden-state compression (o: question exact, x: all compressed)")
        fig.tight_layout()
        fig.savefig(out / "llm_quality.png", dpi=110)
        print(f"wrote {jp} and {out / 'llm_quality.png'}")
    except Exception as e:
        print(f"wrote {jp} (no PNG: {e})")
    return 0
