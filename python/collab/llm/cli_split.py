"""`collab split-gguf MODEL --at L [--at L2 ...] -o DIR`: head/tail GGUF parts."""
from __future__ import annotations

import sys


def add_arguments(p):
    p.add_argument("model", nargs="?", default=None,
                   help="full GGUF model (default: $COLLAB_LLM_MODEL or the embedded SmolLM2)")
    p.add_argument("--at", type=int, action="append", required=True,
                   help="split point l: head = layers [0, l), tail = [l, L); repeat for several")
    p.add_argument("-o", "--out-dir", default=".", help="output directory (default: .)")
    p.add_argument("--prefix", default=None, help="output file stem (default: the model's)")


def run(args) -> int:
    from . import split_gguf
    from .models import default_model_path
    from .split import GGUFSplitError

    try:
        src = args.model or default_model_path()
        pairs = split_gguf(src, args.out_dir, list(args.at), prefix=args.prefix)
    except (GGUFSplitError, ValueError) as e:
        print(f"collab split-gguf: {e}", file=sys.stderr)
        return 2
    for (head, tail), at in zip(pairs, args.at):
        print(f"at={at}: head {head} ({head.stat().st_size} bytes), tail {tail} ({tail.stat().st_size} bytes)")
    return 0
