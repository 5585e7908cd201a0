"""Where rebuilt artifacts live: $COLLAB_CACHE/expert (the variable the rest of collab reads;
$COLLAB_CACHE_DIR is still honoured), else ~/.cache/collab/expert."""
from __future__ import annotations

import os
import pathlib


def cache_dir(*parts) -> pathlib.Path:
    root = (os.environ.get("COLLAB_CACHE") or os.environ.get("COLLAB_CACHE_DIR")
            or os.path.join(os.path.expanduser("~"), ".cache", "collab"))
    p = pathlib.Path(root, "expert", *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p
