"""The measured quality tables committed with the benchmarks load, validate and drive the
choosers: the ViT SLICER frontier (split planner) and Mercury's pruning rates (row chooser)."""
from __future__ import annotations

import pathlib

import pytest

from collab.planner.quality import BoundError, choose, load_quality_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ROOT / "models" / "mercury"


@pytest.mark.parametrize("name, system", [(RESULTS / "slicer_quality_vit112.json", "vit"),
                                          (MODELS / "dinov2-s-112.quality.json", "mercury")])
def test_committed_tables_validate(name, system):
    t = load_quality_table(name, system=system)
    assert t.model_name == "dinov2-s-focus@112px"
    for split in t.splits():
        ref = [e for e in t.at(split) if e.reference]
        assert len(ref) == 1 and t.loss(ref[0]) == 0.0
        # nothing sends more than the reference's float tensor
        assert all(e.bytes_per_item <= ref[0].bytes_per_item for e in t.at(split))


def test_mercury_rate_follows_the_bound():
    t = load_quality_table(MODELS / "dinov2-s-112.quality.json")
    losses = []
    for bound in (0.0, 5.0, 15.0, 60.0):
        c = choose(t, split=2, items=1, bandwidth_bps=2e6, rtt_ms=20, max_loss=bound)
        assert c.loss <= bound
        losses.append(c.loss)
    assert losses == sorted(losses) and losses[0] == 0.0 and losses[-1] > 0
    # a loose bound buys the fewest bytes, and among equal bytes the smaller loss
    fewest = min(e.bytes_per_item for e in t.at(2))
    assert c.entry.bytes_per_item == fewest
    assert c.loss == min(t.loss(e) for e in t.at(2) if e.bytes_per_item == fewest)
    with pytest.raises(BoundError):
        choose(t, split=2, items=1, bandwidth_bps=2e6, max_loss=0.0, latency_target_ms=1.0)
