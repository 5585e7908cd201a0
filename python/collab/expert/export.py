"""Library manifests from the recipe's runs: the full float32 one in the cache (every model
trained, for the benchmarks) and the small committed one (quantised) under models/expert.

Library names in a manifest: "3" / "2" / "4" = progressive experts of the main expert size for
that S, "3-static" = the static baselines, "3-4H" / "3-4H-static" = the same for another expert
size, "gen-3H" etc. = a same-size generalist behind every key (generalist co-inference and
near-edge-only use it).
"""
from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np

from ..errors import InvalidArgument
from .artifacts import MANIFEST, key_str, load_params, quantize
from .partitions import PARTITIONS, expert_sets, partition_of, set_name

GEN_HEADS = (2, 3, 4)


def _runs(cache) -> pathlib.Path:
    return pathlib.Path(cache) / "runs"


def scan(cache, expert_heads: int = 3, edge_heads: int = 2, k: int = 2, more_heads=(4,)) -> dict:
    """Manifest (paths relative to `cache`) of every finished run. "edge" is None while no edge
    model is trained (the expert tables need none; the co-inference benchmarks say so)."""
    runs = _runs(cache)
    cfg = json.loads((pathlib.Path(cache) / "config.json").read_text())
    grid = cfg["size"] // 14

    def fin(name):
        p = runs / name / "final.npz"
        return str(p.relative_to(cache)) if p.exists() and (runs / name / "metrics.json").exists() else None

    # the served edge model: the longer-trained edge-<h>H when it exists, else gen-<h>H
    edge = fin(f"edge-{edge_heads}H") or fin(f"gen-{edge_heads}H")
    m = {"image_size": cfg["size"], "grid": grid, "num_classes": 10, "k": k,
         "edge": {"file": edge, "heads": edge_heads} if edge else None, "libraries": {}, "generalists": {}}
    for h in GEN_HEADS:
        if fin(f"gen-{h}H"):
            m["generalists"][f"{h}H"] = fin(f"gen-{h}H")
    sizes = [expert_heads] + [h for h in more_heads if h != expert_heads]
    for h in sizes:
        if fin(f"base-{h}H"):  # the experts' common start, before the same-budget fine-tune
            m["generalists"][f"{h}H-base"] = fin(f"base-{h}H")
    if fin("teacher"):
        m["generalists"]["6H"] = fin("teacher")
    for h in sizes:
        size = "" if h == expert_heads else f"-{h}H"
        for s in sorted(PARTITIONS):
            for sched, suffix in (("progressive", ""), ("static", "-static")):
                files = {key_str(key): fin(f"exp-S{s}-{set_name(key)}-{h}H-{sched}") for key in expert_sets(s, k)}
                have = {key: f for key, f in files.items() if f}
                if have:  # a partial library still serves the sets it has (others: unknown set)
                    m["libraries"][f"{s}{size}{suffix}"] = {"partition_of": list(partition_of(s)), "experts": have,
                                                            "heads": h, "schedule": sched,
                                                            "complete": len(have) == len(files)}
    for name, f in m["generalists"].items():
        m["libraries"][f"gen-{name}"] = {"partition_of": list(partition_of(3)), "experts":
                                         {key_str(key): f for key in expert_sets(3, k)}, "generalist": True}
    return m


def write_cache_manifest(cache, **kw) -> pathlib.Path:
    m = scan(cache, **kw)
    out = pathlib.Path(cache) / MANIFEST
    out.write_text(json.dumps(m, indent=1))
    return out


def export_committed(cache, out_dir, *, libraries=("3",), generalists=("3H", "4H"), edge_mode="fp16",
                     mode="int8") -> dict:
    """Quantised copies of the edge model, the given libraries and generalists into out_dir."""
    cache, out = pathlib.Path(cache), pathlib.Path(out_dir)
    m = scan(cache)
    out.mkdir(parents=True, exist_ok=True)
    done = {}

    def put(src_rel, dst_rel, qmode):
        if src_rel in done:
            return done[src_rel]
        p = load_params(cache / src_rel)
        (out / dst_rel).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / dst_rel, **quantize(p, qmode))
        done[src_rel] = dst_rel
        return dst_rel

    new = {k: m[k] for k in ("image_size", "grid", "num_classes", "k")}
    if m["edge"] is None:
        raise InvalidArgument(f"no edge model (edge-2H or gen-2H) trained yet in {cache / 'runs'}")
    new["edge"] = {"file": put(m["edge"]["file"], f"edge-{m['edge']['heads']}H.npz", edge_mode),
                   "heads": m["edge"]["heads"]}
    new["generalists"], new["libraries"] = {}, {}
    for g in generalists:
        if g in m["generalists"]:
            new["generalists"][g] = put(m["generalists"][g], f"generalist-{g}.npz", mode)
            lib = m["libraries"][f"gen-{g}"]
            new["libraries"][f"gen-{g}"] = {**lib, "experts": {k: new["generalists"][g] for k in lib["experts"]}}
    for name in libraries:
        if name not in m["libraries"]:
            raise InvalidArgument(f"library {name!r} is not trained yet; have {sorted(m['libraries'])}")
        lib = m["libraries"][name]
        if not lib["complete"]:
            raise InvalidArgument(f"library {name!r} misses experts; train them first")
        files = {k: put(v, f"experts/S{name}-{set_name(k.split(','))}.npz", mode) for k, v in lib["experts"].items()}
        new["libraries"][name] = {**lib, "experts": files}
    (out / MANIFEST).write_text(json.dumps(new, indent=1))
    # the recipe's sizes and seeds: the benchmarks evaluate on the same held-out split
    shutil.copyfile(cache / "config.json", out / "config.json")
    return new
