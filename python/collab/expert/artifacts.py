"""Model files of the expert system and the library manifest.

A model file is an .npz of the flat parameter dict (collab.expert.model). Committed files are
small: every 2-D/4-D weight as int8 with a float32 scale per output channel (symmetric,
"<key>.q8" + "<key>.scale"), or as float16; vectors as float16. load_params() returns float32
either way, and also reads the recipe's float32 files from the cache unchanged.

manifest.json (in the library directory):
  {"image_size": 56, "grid": 4, "num_classes": 10, "k": 2,
   "edge": {"file": ..., "heads": 2},
   "libraries": {"3": {"partition_of": [...], "experts": {"0": file, "0,1": file, ...}}, "3-static": ...,
                 "gen-3H": {... every key -> the 3-head generalist}},
   "generalists": {"3H": file, ...}}
"""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from ..errors import InvalidArgument

MANIFEST = "manifest.json"


def quantize(params: dict, mode: str) -> dict:
    """mode 'int8' (per-output-channel symmetric weights, fp16 vectors) or 'fp16'."""
    if mode not in ("int8", "fp16"):
        raise InvalidArgument(f"mode must be 'int8' or 'fp16', got {mode!r}")
    out = {}
    for k, v in params.items():
        v = np.asarray(v)
        if v.ndim == 0:
            out[k] = v
        elif mode == "int8" and v.ndim >= 2 and k != "pos":
            # output channel: last axis of (in, out) matrices, first axis of the conv weight
            axis = 0 if v.ndim == 4 else v.ndim - 1
            red = tuple(i for i in range(v.ndim) if i != axis)
            scale = np.abs(v).max(axis=red, keepdims=True) / 127.0
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            out[k + ".q8"] = np.clip(np.rint(v / scale), -127, 127).astype(np.int8)
            out[k + ".scale"] = scale
        else:
            out[k] = v.astype(np.float16)
    return out


def load_params(path) -> dict:
    """float32 parameter dict from an .npz written by quantize() or by the recipe."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"cannot read model file {path}: {e}") from None
    with z:
        raw = {k: z[k] for k in z.files}
    out = {}
    for k, v in raw.items():
        if k.endswith(".scale"):
            continue
        if k.endswith(".q8"):
            base = k[:-3]
            out[base] = (v.astype(np.float32) * raw[base + ".scale"]).astype(np.float32)
        elif v.ndim == 0:
            out[k] = v
        else:
            out[k] = v.astype(np.float32)
    return out


def key_str(key) -> str:
    return ",".join(str(int(p)) for p in key)


def parse_key(s: str) -> tuple:
    try:
        key = tuple(int(v) for v in s.split(",")) if s else ()
    except ValueError:
        raise InvalidArgument(f"partition set must be comma-separated integers, got {s!r}") from None
    if not key or list(key) != sorted(set(key)) or key[0] < 0:
        raise InvalidArgument(f"partition set must be non-empty, sorted, distinct ids >= 0, got {s!r}")
    return key


class Library:
    """The manifest of a model directory, with paths resolved."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        mf = self.root / MANIFEST
        if not mf.exists():
            raise InvalidArgument(f"{mf} not found (build it: collab expert export)")
        self.m = json.loads(mf.read_text())
        self.grid = int(self.m["grid"])
        self.k = int(self.m.get("k", 2))

    def path(self, rel) -> pathlib.Path:
        return self.root / rel

    def edge_path(self):
        if not self.m.get("edge"):
            raise InvalidArgument(f"no edge model in {self.root} (train edge-2H: collab expert train --only edge-2H)")
        return self.path(self.m["edge"]["file"])

    def names(self):
        return sorted(self.m["libraries"])

    def library(self, name) -> dict:
        lib = self.m["libraries"].get(str(name))
        if lib is None:
            raise InvalidArgument(f"no expert library {name!r} in {self.root}; have {self.names()}")
        return lib

    def partition_of(self, name) -> tuple:
        return tuple(self.library(name)["partition_of"])

    def experts(self, name) -> dict:
        """{key tuple: path} of library `name` ("3" = progressive experts for S=3, "3-static",
        "gen-3H" = one generalist behind every key)."""
        return {parse_key(k): self.path(v) for k, v in self.library(name)["experts"].items()}

    def generalist(self, name: str):
        return self.path(self.m["generalists"][name])


def default_library() -> pathlib.Path:
    """$COLLAB_EXPERT_MODELS, else models/expert under the working directory or the source tree."""
    env = os.environ.get("COLLAB_EXPERT_MODELS")
    if env:
        return pathlib.Path(env)
    here = pathlib.Path(__file__).resolve()
    for up in [pathlib.Path.cwd(), *here.parents]:
        cand = up / "models" / "expert"
        if (cand / MANIFEST).exists():
            return cand
    raise InvalidArgument("models/expert not found; set COLLAB_EXPERT_MODELS to a library directory")
