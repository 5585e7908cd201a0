"""MindFusion's decoding shortcut (Sec. IV-B): interface and file format. UNTRAINED here.

After prefill, the server embeds each newly generated token with the model's own token
embedding and maps it with a projection network straight into the tail's input space,
so decoding never goes back to the device. The projection is four fully connected layers:
``d -> d -> 4d -> d -> d`` (the first keeps the width, the second expands 4x, the last two
reduce it back), GELU between them, plus a skip connection from the input::

    y = x + W4 gelu(W3 gelu(W2 gelu(W1 x + b1) + b2) + b3) + b4

Training it (Eq. 3: the loss of the split model with the shortcut, first token without) is
a later issue. ``ShortcutProjection.identity`` (W4 = 0) makes the shortcut skip the head's
layers, which runs end to end but does NOT reproduce the full model's outputs.

File format (little-endian)::

    "CLSC" u8 version=1 u8 pad[3] u32 json_len  json (utf-8)  tensors  u32 crc32
    json: {"n_embd": d, "dims": [d, d, 4d, d, d], "activation": "gelu", "split_at": l,
           "trained": false, "source": "...", "tensors": [["w1", [d, d]], ["b1", [d]], ...]}
    tensors: float32 arrays in the order listed, row-major, W as (out, in)
    crc32: zlib.crc32 of everything before it
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument
from .protocol import ProtocolError

__all__ = ["ShortcutProjection", "TokenEmbedding", "MAGIC"]

MAGIC = b"CLSC"
VERSION = 1
_HDR = struct.Struct("<4sB3xI")
_MAX_JSON = 1 << 20
_MAX_EMBD = 1 << 15


def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


class ShortcutProjection:
    """The projection network; ``__call__(x)`` maps token embeddings (n, d) to tail rows (n, d)."""

    def __init__(self, weights: list, *, split_at: int = 0, trained: bool = False, source: str = ""):
        if len(weights) != 4:
            raise InvalidArgument("a shortcut projection has exactly 4 (W, b) layers")
        d = int(np.asarray(weights[0][0]).shape[1])
        dims = [d, d, 4 * d, d, d]
        self.layers = []
        for i, (w, b) in enumerate(weights):
            w = np.ascontiguousarray(w, dtype=np.float32)
            b = np.ascontiguousarray(b, dtype=np.float32)
            if w.shape != (dims[i + 1], dims[i]) or b.shape != (dims[i + 1],):
                raise InvalidArgument(f"layer {i + 1}: W {w.shape} / b {b.shape}, expected "
                                      f"{(dims[i + 1], dims[i])} / {(dims[i + 1],)}")
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                raise InvalidArgument(f"layer {i + 1} holds NaN/Inf")
            self.layers.append((w, b))
        self.n_embd = d
        self.dims = dims
        self.split_at = int(split_at)
        self.trained = bool(trained)
        self.source = str(source)

    @classmethod
    def identity(cls, n_embd: int, *, split_at: int = 0, seed: int = 0) -> "ShortcutProjection":
        """Untrained: small random W1..W3, W4 = 0, so y = x (the head's layers are skipped)."""
        if not 0 < n_embd <= _MAX_EMBD:
            raise InvalidArgument(f"n_embd must be in (0, {_MAX_EMBD}]")
        rng = np.random.default_rng(seed)
        d = n_embd
        dims = [d, d, 4 * d, d, d]
        ws = []
        for i in range(4):
            scale = 0.0 if i == 3 else dims[i] ** -0.5
            ws.append((rng.standard_normal((dims[i + 1], dims[i])).astype(np.float32) * scale,
                       np.zeros(dims[i + 1], np.float32)))
        return cls(ws, split_at=split_at, trained=False, source="identity-init")

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_embd:
            raise InvalidArgument(f"shortcut input must be (n, {self.n_embd}), got {x.shape}")
        h = x
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i < 3:
                h = _gelu(h)
        return (x + h).astype(np.float32)

    # ---- file format ------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        names = []
        blobs = []
        for i, (w, b) in enumerate(self.layers):
            names += [[f"w{i + 1}", list(w.shape)], [f"b{i + 1}", list(b.shape)]]
            blobs += [w.astype("<f4").tobytes(), b.astype("<f4").tobytes()]
        meta = {"n_embd": self.n_embd, "dims": self.dims, "activation": "gelu", "split_at": self.split_at,
                "trained": self.trained, "source": self.source, "tensors": names}
        js = json.dumps(meta, sort_keys=True).encode()
        body = _HDR.pack(MAGIC, VERSION, len(js)) + js + b"".join(blobs)
        return body + struct.pack("<I", zlib.crc32(body))

    def save(self, path) -> Path:
        path = Path(path)
        path.write_bytes(self.to_bytes())
        return path

    @classmethod
    def from_bytes(cls, buf) -> "ShortcutProjection":
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise ProtocolError("a shortcut file must be bytes")
        buf = bytes(buf)
        if len(buf) < _HDR.size + 4:
            raise ProtocolError("shortcut file truncated")
        magic, version, jlen = _HDR.unpack_from(buf, 0)
        if magic != MAGIC or version != VERSION:
            raise ProtocolError("not a collab shortcut file (bad magic or version)")
        (crc,) = struct.unpack_from("<I", buf, len(buf) - 4)
        if zlib.crc32(buf[:-4]) != crc:
            raise ProtocolError("shortcut file checksum mismatch")
        if jlen > _MAX_JSON or _HDR.size + jlen > len(buf) - 4:
            raise ProtocolError("shortcut file header length out of range")
        try:
            meta = json.loads(buf[_HDR.size:_HDR.size + jlen].decode())
            d = int(meta["n_embd"])
            tensors = meta["tensors"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ProtocolError(f"shortcut file header is not valid: {e}") from None
        if not 0 < d <= _MAX_EMBD or meta.get("dims") != [d, d, 4 * d, d, d] or meta.get("activation") != "gelu":
            raise ProtocolError("shortcut file describes an unsupported network")
        dims = [d, d, 4 * d, d, d]
        expect = []
        for i in range(4):
            expect += [[f"w{i + 1}", [dims[i + 1], dims[i]]], [f"b{i + 1}", [dims[i + 1]]]]
        if tensors != expect:
            raise ProtocolError("shortcut file tensor list does not match its dims")
        off = _HDR.size + jlen
        arrays = []
        for _, shape in expect:
            n = int(np.prod(shape)) * 4
            if off + n > len(buf) - 4:
                raise ProtocolError("shortcut file truncated (tensor data)")
            arrays.append(np.frombuffer(buf, dtype="<f4", count=n // 4, offset=off).reshape(shape).copy())
            off += n
        if off != len(buf) - 4:
            raise ProtocolError("trailing bytes in shortcut file")
        try:
            return cls([(arrays[2 * i], arrays[2 * i + 1]) for i in range(4)], split_at=int(meta.get("split_at", 0)),
                       trained=bool(meta.get("trained", False)), source=str(meta.get("source", "")))
        except InvalidArgument as e:
            raise ProtocolError(str(e)) from None

    @classmethod
    def load(cls, path) -> "ShortcutProjection":
        return cls.from_bytes(Path(path).read_bytes())


class TokenEmbedding:
    """Rows of a GGUF's token_embd.weight, dequantized on demand (gguf package)."""

    def __init__(self, gguf_path):
        import gguf

        self._gguf = gguf
        r = gguf.GGUFReader(str(gguf_path))
        t = next((t for t in r.tensors if t.name == "token_embd.weight"), None)
        if t is None:
            raise InvalidArgument(f"{gguf_path} has no token_embd.weight")
        self._t = t
        self.n_vocab = int(t.shape[1])
        self.n_embd = int(t.shape[0])

    def __call__(self, tokens) -> np.ndarray:
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if ids.size == 0 or ids.min() < 0 or ids.max() >= self.n_vocab:
            raise InvalidArgument(f"token ids must be in [0, {self.n_vocab})")
        data = self._t.data[ids]
        rows = self._gguf.quants.dequantize(np.asarray(data), self._t.tensor_type)
        return np.asarray(rows, dtype=np.float32).reshape(ids.size, self.n_embd)
