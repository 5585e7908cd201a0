"""Command-line arguments of the training commands, importable without torch (the CLI builds
its parsers before any training starts):

    collab llm train-shortcut --at L   -> collab.llm.train.shortcut.run_train_shortcut(args)
    collab llm train-codec --at L --ratio 8 -> collab.llm.train.codec.run_train_codec(args)
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["add_shortcut_arguments", "add_codec_arguments", "DEFAULT_DATA"]

DEFAULT_DATA = Path(os.environ.get("COLLAB_TRAIN_DATA", "data/llm-train"))


def add_shortcut_arguments(p) -> None:
    """collab llm train-shortcut"""
    p.add_argument("--at", type=int, required=True, help="split point l (the tail starts at layer l)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="directory of samples.jsonl (collab.llm.train.data)")
    p.add_argument("--model", default=None, help="full GGUF (default: the embedded SmolLM2)")
    p.add_argument("--out", default=None, help="artifact path (default models/llm/smollm2-135m.shortcut-L.clfn)")
    p.add_argument("--stats", default=None,
                   help="directory of rowstats.npz (per-token rows over offline text; default: --data)")
    p.add_argument("--fit-steps", type=int, default=1500, help="regression steps on cached rows")
    p.add_argument("--fit-prompts", type=int, default=0,
                   help="the fit stage's rows come from the first N training prompts only (their activation "
                        "cache is reused when more prompts are added for Eq. 3; 0: all)")
    p.add_argument("--eq3-steps", type=int, default=300, help="Eq. 3 steps (one prompt each) through the tail")
    p.add_argument("--eq3-minutes", type=float, default=0.0, help="stop Eq. 3 after this long (0: no limit)")
    p.add_argument("--eq3-val-every", type=int, default=200,
                   help="validate every N Eq. 3 steps and export the best net (0: only at the end)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")


def add_codec_arguments(p) -> None:
    """collab llm train-codec"""
    p.add_argument("--at", type=int, required=True, help="split point l")
    p.add_argument("--ratio", type=int, default=8, choices=(2, 4, 8, 16), help="d / code size")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--model", default=None)
    p.add_argument("--out", default=None, help="artifact path (default models/llm/smollm2-135m.codec-L-rR.clfn)")
    p.add_argument("--fit-steps", type=int, default=1500)
    p.add_argument("--eq2-steps", type=int, default=200)
    p.add_argument("--eq2-minutes", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true")
