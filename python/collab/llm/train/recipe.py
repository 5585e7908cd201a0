"""The recipe behind the shipped nets (models/llm/*.clfn): one job list, resumable.

    python -m collab.llm.train.recipe [--jobs shortcut|codec|all] [--data DIR]

Each job is skipped when its artifact exists; an interrupted job resumes from its
checkpoint (<artifact>.ckpt). Budgets are per job (steps and minutes), sized for one core of
a shared 2-core CPU (about 90 minutes for the shortcuts). The shortcut jobs first make their
data, both resumable: per-token row statistics over offline text (collab.llm.train.rowstats,
ROWSTATS_TOKENS tokens) and the full model's greedy answers to every training prompt
(collab.llm.train.data); then per split point the regression stage and Eq. 3.
"""
from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

from . import common
from .codec import run_train_codec
from .shortcut import run_train_shortcut

DEMO_AT = 15
SHORTCUT_JOBS = [  # (at, fit steps, eq3 minutes): shallow splits need a long fit (their row is nearly a
    # function of the token), deep ones the Eq. 3 stage (their row is mostly context)
    (15, 600, 4.0), (1, 3000, 0.0), (2, 2400, 0.0), (4, 600, 3.0), (8, 600, 3.0)]
# the shortcut's data: offline-text tokens for the row statistics, greedy answer length
ROWSTATS_TOKENS = 250_000
ANSWER_TOKENS = 48
CODEC_JOBS = [  # (at, ratio, fit steps, eq2 minutes)
    (15, 8, 800, 4.0), (15, 4, 800, 0.0), (2, 8, 800, 0.0), (4, 8, 800, 0.0), (8, 8, 800, 0.0), (1, 8, 800, 0.0)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="train the shipped MindFusion nets (resumable)")
    ap.add_argument("--jobs", choices=("shortcut", "codec", "all", "cache"), default="all")
    ap.add_argument("--data", default=str(common.DEFAULT_DATA))
    ap.add_argument("--out-dir", default=str(common.DEFAULT_MODELS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--text-tokens", type=int, default=ROWSTATS_TOKENS,
                    help="offline-text tokens summed into the row statistics (shortcut data)")
    ap.add_argument("--prompts", type=int, default=0,
                    help="training prompts answered by the full model (0: all; a fixed shuffle)")
    ap.add_argument("--at", type=int, action="append", help="only these split points")
    a = ap.parse_args(argv)
    common.set_threads(a.threads)
    if a.jobs == "cache":
        from .data import load

        common.cache_rows(a.data, load(a.data, "train"))
        return 0
    base = dict(data=a.data, model=None, batch=a.batch, lr=1e-3, threads=a.threads, fresh=False)
    if a.jobs in ("shortcut", "all"):
        from .data import generate
        from .rowstats import collect

        collect(a.data, model_path=common.model_path(None), mirror=common.mirror(None), minutes=0,
                max_tokens=a.text_tokens)
        generate(a.data, max_new=ANSWER_TOKENS, split="train", threads=a.threads, limit=a.prompts)
        for at, fit, minutes in SHORTCUT_JOBS:
            if a.at and at not in a.at:
                continue
            out = common.artifact_path("shortcut", at, out_dir=a.out_dir)
            if out.exists():
                print(f"[recipe] {out} exists, skipped", file=sys.stderr)
                continue
            run_train_shortcut(SimpleNamespace(**base, at=at, out=str(out), fit_steps=fit,
                                               eq3_steps=10000 if minutes else 0, eq3_minutes=minutes,
                                               eq3_val_every=200))
    if a.jobs in ("codec", "all"):
        for at, ratio, fit, minutes in CODEC_JOBS:
            out = common.artifact_path("codec", at, ratio, out_dir=a.out_dir)
            if out.exists():
                print(f"[recipe] {out} exists, skipped", file=sys.stderr)
                continue
            run_train_codec(SimpleNamespace(**base, at=at, ratio=ratio, out=str(out), fit_steps=fit,
                                            eq2_steps=10000 if minutes else 0, eq2_minutes=minutes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
