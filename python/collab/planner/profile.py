"""Layer profile files: per-layer compute time and memory measured on a device.

JSON schema "collab.profile/1" (one file per model x device; see docs/planner.md):

    {
      "schema": "collab.profile/1",
      "model": "dinov2-s-focus",            # free text
      "kind": "single_shot" | "autoregressive",
      "device": {"host": ..., "machine": ..., "processor": ..., "threads": 2, "runtime": "onnxruntime 1.x"},
      "created": "2026-12-03T10:00:00Z",
      "input": {"shape": [1, 3, 224, 224], "dtype": "float32", "bytes": 602112},
      "layers": [                           # in execution order; split l = layers[0:l] on the device
        {
          "name": "block.0",
          "weight_bytes": 7100000,          # parameters the layer needs resident
          "work_bytes": 3000000,            # peak working memory while it runs (activations)
          # single_shot:
          "ms": 1.9, "ms_std": 0.1,         # median time of one forward of this layer
          "out_shape": [1, 257, 384], "out_dtype": "float32",
          # autoregressive (per token; LLM runtimes):
          "prefill_ms_per_token": 0.4, "decode_ms": 0.9,
          "hidden": 576,                    # elements per token of the layer's output row
          "activation_bytes_per_token": 2304,  # the same in bytes (hidden x out_dtype size);
                                            # a file may give either, the loader derives the other
          "kv_bytes_per_token": 4608        # KV-cache bytes per token the layer keeps
        }, ...
      ]
    }

Split l in 0..len(layers): l = 0 sends the raw input (cloud only); l = len(layers) runs the whole
model on the device and sends its output.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidArgument
from ._io import read_json, write_json

__all__ = ["ProfileError", "Profile", "load_profile", "per_layer_from_prefixes", "SCHEMA"]

SCHEMA = "collab.profile/1"
KINDS = ("single_shot", "autoregressive")
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


class ProfileError(InvalidArgument):
    """A profile file that does not follow the collab.profile/1 schema."""


def _num(where, d, key, required=True, integer=False, default=0.0):
    if key not in d:
        if required:
            raise ProfileError(f"{where}: missing {key!r}")
        return default
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ProfileError(f"{where}: {key!r} must be a finite number >= 0, got {v!r}")
    if integer and int(v) != v:
        raise ProfileError(f"{where}: {key!r} must be an integer, got {v!r}")
    return int(v) if integer else float(v)


def _shape(where, v):
    if not isinstance(v, list) or not v or len(v) > 8 or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 < x < 2**40 for x in v):
        raise ProfileError(f"{where}: shape must be a list of 1..8 positive integers, got {v!r}")
    return tuple(v)


@dataclass
class Layer:
    name: str
    weight_bytes: int = 0
    work_bytes: int = 0
    ms: float = 0.0
    ms_std: float = 0.0
    out_shape: tuple | None = None
    out_dtype: str = "float32"
    prefill_ms_per_token: float = 0.0
    decode_ms: float = 0.0
    hidden: int = 0
    kv_bytes_per_token: int = 0

    def to_json(self, kind):
        d = {"name": self.name, "weight_bytes": self.weight_bytes, "work_bytes": self.work_bytes}
        if kind == "single_shot":
            d.update(ms=self.ms, ms_std=self.ms_std, out_shape=list(self.out_shape), out_dtype=self.out_dtype)
        else:
            d.update(prefill_ms_per_token=self.prefill_ms_per_token, decode_ms=self.decode_ms, hidden=self.hidden,
                     activation_bytes_per_token=self.hidden * _DTYPE_BYTES[self.out_dtype],
                     kv_bytes_per_token=self.kv_bytes_per_token, out_dtype=self.out_dtype)
        return d


@dataclass
class Profile:
    kind: str
    layers: list
    model: str = "model"
    input_shape: tuple = ()
    input_dtype: str = "float32"
    device: dict = field(default_factory=dict)
    created: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ProfileError(f"profile kind must be one of {KINDS}, got {self.kind!r}")
        if not self.layers:
            raise ProfileError("a profile needs at least one layer")

    # -- derived arrays (index l = split after l layers) -------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def input_bytes(self) -> int:
        return int(np.prod(self.input_shape)) * _DTYPE_BYTES.get(self.input_dtype, 4) if self.input_shape else 0

    def _arr(self, attr):
        return np.array([getattr(l, attr) for l in self.layers], dtype=np.float64)

    def device_ms(self, attr="ms"):
        """cum[l] = time of layers 1..l (cum[0] = 0)."""
        return np.concatenate([[0.0], np.cumsum(self._arr(attr))])

    def server_ms(self, attr="ms"):
        """rest[l] = time of layers l+1..L."""
        t = self._arr(attr)
        return np.concatenate([np.cumsum(t[::-1])[::-1], [0.0]])

    def memory_bytes(self):
        """m(L_{1:l}): resident weights of layers 1..l plus the largest working set among them
        (and the input tensor for l >= 1). m[0] = 0 (nothing runs on the device)."""
        w = np.concatenate([[0.0], np.cumsum(self._arr("weight_bytes"))])
        work = np.concatenate([[0.0], np.maximum.accumulate(self._arr("work_bytes"))])
        m = w + work + self.input_bytes()
        m[0] = 0.0
        return m

    def split_shape(self, l: int):
        """Shape of what is sent at split l (single-shot)."""
        if l == 0:
            return tuple(self.input_shape)
        return tuple(self.layers[l - 1].out_shape)

    def hidden(self, l: int) -> int:
        return int(self.layers[max(l, 1) - 1].hidden)

    # -- io ---------------------------------------------------------------------------------
    def to_json(self) -> dict:
        d = {"schema": SCHEMA, "model": self.model, "kind": self.kind, "device": self.device,
             "created": self.created, "input": {"shape": list(self.input_shape), "dtype": self.input_dtype,
                                                "bytes": self.input_bytes()},
             "layers": [l.to_json(self.kind) for l in self.layers]}
        d.update(self.extra)
        return d

    def save(self, path):
        write_json(path, self.to_json())

    @classmethod
    def from_json(cls, d, where="profile") -> "Profile":
        if not isinstance(d, dict):
            raise ProfileError(f"{where}: top level must be an object")
        if d.get("schema") != SCHEMA:
            raise ProfileError(f"{where}: schema must be {SCHEMA!r}, got {d.get('schema')!r}")
        kind = d.get("kind")
        if kind not in KINDS:
            raise ProfileError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
        inp = d.get("input", {})
        if not isinstance(inp, dict):
            raise ProfileError(f"{where}: input must be an object")
        if kind == "single_shot" or inp.get("shape"):
            ishape = _shape(f"{where}: input", inp.get("shape"))
        else:
            ishape = ()
        idtype = inp.get("dtype", "float32")
        if not isinstance(idtype, str) or idtype not in _DTYPE_BYTES:
            raise ProfileError(f"{where}: input dtype must be one of {sorted(_DTYPE_BYTES)}")
        layers_in = d.get("layers")
        if not isinstance(layers_in, list) or not layers_in:
            raise ProfileError(f"{where}: layers must be a non-empty list")
        layers = []
        for i, ld in enumerate(layers_in):
            lw = f"{where}: layers[{i}]"
            if not isinstance(ld, dict):
                raise ProfileError(f"{lw} must be an object")
            name = ld.get("name", f"layer{i}")
            if not isinstance(name, str):
                raise ProfileError(f"{lw}: name must be a string")
            l = Layer(name=name, weight_bytes=_num(lw, ld, "weight_bytes", integer=True),
                      work_bytes=_num(lw, ld, "work_bytes", required=False, integer=True, default=0),
                      out_dtype=ld.get("out_dtype", "float32"))
            if not isinstance(l.out_dtype, str) or l.out_dtype not in _DTYPE_BYTES:
                raise ProfileError(f"{lw}: out_dtype must be one of {sorted(_DTYPE_BYTES)}")
            if kind == "single_shot":
                l.ms = _num(lw, ld, "ms")
                l.ms_std = _num(lw, ld, "ms_std", required=False)
                l.out_shape = _shape(lw, ld.get("out_shape"))
            else:
                l.prefill_ms_per_token = _num(lw, ld, "prefill_ms_per_token")
                l.decode_ms = _num(lw, ld, "decode_ms")
                size = _DTYPE_BYTES[l.out_dtype]
                if "hidden" in ld:
                    l.hidden = _num(lw, ld, "hidden", integer=True)
                    if "activation_bytes_per_token" in ld and _num(
                            lw, ld, "activation_bytes_per_token", integer=True) != l.hidden * size:
                        raise ProfileError(f"{lw}: activation_bytes_per_token must be hidden x {size} bytes")
                else:
                    act = _num(lw, ld, "activation_bytes_per_token", integer=True)
                    if act % size:
                        raise ProfileError(f"{lw}: activation_bytes_per_token must be a multiple of {size}")
                    l.hidden = act // size
                if l.hidden <= 0:
                    raise ProfileError(f"{lw}: hidden (or activation_bytes_per_token) must be > 0")
                l.kv_bytes_per_token = _num(lw, ld, "kv_bytes_per_token", required=False, integer=True, default=0)
            layers.append(l)
        dev = d.get("device", {})
        known = {"schema", "model", "kind", "device", "created", "input", "layers"}
        return cls(kind=kind, layers=layers, model=str(d.get("model", "model")), input_shape=ishape,
                   input_dtype=idtype, device=dev if isinstance(dev, dict) else {}, created=str(d.get("created", "")),
                   extra={k: v for k, v in d.items() if k not in known})


def load_profile(path) -> Profile:
    d, name = read_json(path, ProfileError, "profile")
    return Profile.from_json(d, where=name)


def per_layer_from_prefixes(prefix_ms):
    """Per-layer times from timings of cumulative prefixes: prefix_ms[l-1] = time of layers 1..l
    (what a runtime that can only run head models measures, e.g. a split LLM head of l layers).
    Noise can make a longer prefix look faster; the running maximum is used, so no layer gets a
    negative time. Returns an array of len(prefix_ms)."""
    a = np.asarray(prefix_ms, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise InvalidArgument("prefix times must be a non-empty list of finite numbers >= 0")
    return np.diff(np.concatenate([[0.0], np.maximum.accumulate(a)]))
