"""The payload codecs the benchmarks compare, one call per image tensor: float16, float16 + zstd,
per-tensor int8 and SLICER (collab.codec). Shared by the SLICER frontier (benchmarks/codec) and
Mercury's pruning + codec frontier (benchmarks/mercury)."""
from __future__ import annotations

import functools
import zlib

import numpy as np

from . import codec


@functools.lru_cache(maxsize=None)
def zstd():
    """(name, compress) of the lossless baseline, built once (it runs for every image)."""
    try:
        import zstandard
        return "zstd", zstandard.ZstdCompressor(level=3).compress
    except ImportError:  # zlib stands in where zstandard is not installed; the JSON says which
        return "zlib", lambda b: zlib.compress(b, 6)


def slicer(name, s, blocks, qbits, delta=0.0) -> dict:
    """A SLICER configuration as roundtrip() reads it."""
    return {"name": name, "kind": "slicer", "sparsity": s, "blocks": list(blocks), "qbits": list(qbits),
            "delta": delta}


def roundtrip(cfg, x):
    """(decoded float32 tensor, bytes on the wire) for one image's (T, C) tensor."""
    kind = cfg["kind"]
    if kind == "fp16":
        h = x.astype(np.float16)
        return h.astype(np.float32), h.nbytes
    if kind == "fp16+zstd":
        h = x.astype(np.float16)
        return h.astype(np.float32), len(zstd()[1](h.tobytes()))
    if kind == "int8":  # per-tensor symmetric int8 + one f32 scale
        scale = float(np.abs(x).max()) / 127.0 or 1.0
        q = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
        return q.astype(np.float32) * scale, q.nbytes + 4
    frame = codec.encode(x, cfg["sparsity"], blocks=tuple(cfg["blocks"]), qbits=tuple(cfg["qbits"]),
                         delta=cfg["delta"], threads=1)
    return codec.decode(frame), len(frame)
