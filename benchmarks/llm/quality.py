"""What compressing hidden states does to the tail's predictions.

Real text: the MMLU few-shot chain-of-thought prompts that lm-eval ships
(lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json, ``pip install --no-deps
lm-eval==0.4.13``). For each prompt the head runs once; the tail then runs on the exact rows
(reference) and on rows sent through RowPolicy settings (SLICER codec on the early tokens,
MindFusion's rule: the last exemplar, i.e. "the question", at full fidelity; and, for
contrast, everything compressed). Reported per setting, averaged over prompts:

  top1 / top5             next-token argmax equal / top-5 overlap, over the question tokens
  ppl_ref / ppl           perplexity of the prompt's own next tokens, question tokens
  bytes / ratio           payload bytes and ratio to raw float32 rows
"""
from __future__ import annotations

import argparse
import json
import sys
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
    p.add_argument("--max-prompt-tokens", type=int, default=384, help="truncate prompts (keeps their end)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results")


def run(args) -> int:
    from collab.llm import protocol
    from collab.llm.fidelity import compare, mmlu_prompts
    from collab.llm.models import default_model_path
    from collab.llm.runtime import Model
    from collab.llm.server import prepare_parts

    full = Path(args.model) if args.model else default_model_path()
    head_p, tail_p, at = prepare_parts(full, args.at)
    head, tail = Model(head_p), Model(tail_p)
    prompts, src = mmlu_prompts(args.prompts)
    print(f"llm quality: {full.name} split at {at}; {len(prompts)} MMLU CoT few-shot prompts from {src}")
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
        # logits of the question rows only (the LM head over every position is the slow part)
        with tail.session("tail", n_ctx=1024, n_threads=args.threads) as t:
            ref = t.decode_rows(rows, n_outputs=n_q)
        targets = toks[q0 + 1:].astype(np.int64)
        raw = rows.nbytes
        for label, keep_q, sp, qb in SETTINGS:
            pol = protocol.RowPolicy(keep_last=n_q if keep_q else 0, sparsity=sp, qbits=(qb,))
            payload = protocol.encode_rows(rows, pol)
            got = protocol.decode_rows(payload, n_embd=head.n_embd)
            with tail.session("tail", n_ctx=1024, n_threads=args.threads) as t:
                lg = t.decode_rows(got, n_outputs=n_q)
            m = compare(ref, lg, targets)
            m.update(subject=subject, n_tokens=n, n_question=n_q, bytes=len(payload), raw_bytes=raw,
                     ratio=len(payload) / raw)
            per[label].append(m)
        print(f"[{i + 1}/{len(prompts)}] {subject:<28} {n:>4} tokens ({n_q} question)  "
              f"{time.perf_counter() - t_start:6.1f} s", flush=True)

    summary = []
    hdr = f"{'setting':<14}{'bytes/raw':>10}{'top1':>8}{'top5':>8}{'ppl ref':>9}{'ppl':>9}{'dppl %':>8}"
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for label, keep_q, sp, qb in SETTINGS:
        ms = per[label]
        agg = {k: float(np.mean([m[k] for m in ms])) for k in ("top1", "top5", "ppl_ref", "ppl", "ratio")}
        agg["dppl_pct"] = 100.0 * (agg["ppl"] / agg["ppl_ref"] - 1.0)
        agg.update(setting=label, question_exact=keep_q, sparsity=sp, qbits=qb)
        summary.append(agg)
        print(f"{label:<14}{agg['ratio']:>10.3f}{agg['top1']:>8.3f}{agg['top5']:>8.3f}"
              f"{agg['ppl_ref']:>9.2f}{agg['ppl']:>9.2f}{agg['dppl_pct']:>8.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"model": str(full), "split_at": at, "wall_s": time.perf_counter() - t_start, "prompts_source": src, "n_prompts": len(prompts),
           "max_prompt_tokens": args.max_prompt_tokens, "summary": summary, "per_prompt": per,
           "command": "python benchmarks/llm/quality.py " + f"--prompts {args.prompts} --max-prompt-tokens {args.max_prompt_tokens}"}
    jp = out / "llm_quality.json"
    jp.write_text(json.dumps(res, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        for s in summary:
            mk = "o" if s["question_exact"] else "x"
            ax[0].plot(s["ratio"], s["top1"], mk)
            ax[0].annotate(s["setting"], (s["ratio"], s["top1"]), fontsize=7)
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/llm/quality.py", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
