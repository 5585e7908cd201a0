"""Where rebuilt artifacts live: $COLLAB_CACHE_DIR/expert, else ~/.cache/collab/expert."""
from __future__ import annotations

import os
import pathlib


def cache_dir(*parts) -> pathlib.Path:
    root = os.environ.get("COLLAB_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "collab")
    p = pathlib.Path(root, "expert", *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p
