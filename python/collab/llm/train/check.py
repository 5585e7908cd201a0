"""Check the torch mirror against llama.cpp on held-out prompts (the mirror only trains;
every reported quality number comes from llama.cpp).

    python -m collab.llm.train.check [--prompts 4]

Prints, over all positions of each prompt: top-1 agreement of the next-token argmax, max and
mean |logit difference|, and the same for the rows entering layer l vs the head part's rows.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main(argv=None) -> int:
    from ..models import default_model_path
    from ..runtime import Model
    from .mirror import LlamaMirror
    from .prompts import all_prompts

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    src = default_model_path()
    full = Model(src)
    mirror = LlamaMirror.from_gguf(src)
    _, held = all_prompts()
    rng = np.random.default_rng(1)
    picks = [held[i] for i in rng.permutation(len(held))[: a.prompts]]
    agree, maxd, meand, n = [], [], [], 0
    for p in picks:
        toks = full.tokenize(p.chat()[0], add_special=False)
        with full.session("full", n_ctx=len(toks) + 8, n_threads=a.threads) as s:
            ref = s.decode(toks, n_outputs=len(toks))
        with torch.no_grad():
            got = mirror.logits([int(t) for t in toks]).numpy()
        agree.append(float(np.mean(ref.argmax(-1) == got.argmax(-1))))
        d = np.abs(ref - got)
        maxd.append(float(d.max()))
        meand.append(float(d.mean()))
        n += len(toks)
        print(f"{p.pid}: {len(toks)} positions, top-1 agreement {agree[-1]:.4f}, max |dlogit| {maxd[-1]:.3f}, "
              f"mean {meand[-1]:.4f}", flush=True)
    res = {"prompts": [p.pid for p in picks], "positions": n, "top1_agreement": float(np.mean(agree)),
           "max_logit_diff": float(max(maxd)), "mean_logit_diff": float(np.mean(meand))}
    print(json.dumps(res))
    if a.out:
        from ...bench_io import save_json

        save_json(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
