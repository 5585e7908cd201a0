"""MindFusion's trained nets at run time (native, ggml) and the FC-code wire format.

    net = load_net("models/llm/smollm2-135m.shortcut-15.clfn", kind="shortcut", model=tail_gguf)
    rows = net.project(embeddings)                 # collab_fcnet_apply through ggml

    codec = load_net("models/llm/smollm2-135m.codec-15-r8.clfn", kind="codec", model=head_gguf)
    pol = FcRowPolicy(codec, keep_last=12, dtype="int8")
    payload = pol.encode(rows)                     # device
    rows2 = decode_fc_rows(payload, codec)         # server, before the tail

FC-code payload ("CLFC", little-endian)::

    "CLFC" u8 version=1 u8 code dtype (0 f32, 1 f16, 2 int8) u16 pad  u32 n_embd u32 code_dim
    u32 n_rows u32 lo u32 hi       rows [lo, hi) travel as codes, the others as raw f32
    f32 rows [0, lo) | codes (hi-lo, code_dim) f32 / f16, or int8 with one f32 scale per row
    (absmax / 127, scales first) | f32 rows [hi, n_rows) | u32 crc32 of everything before

Eq. 1's beta is [lo, hi): lo = 1 keeps row 0 (the attention-sink row of the chat template's
first token, identical in every prompt) exact, hi = n_rows - keep_last keeps the question.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _native
from ..errors import InvalidArgument
from .artifact import KIND_NAMES, ArtifactError, model_digest
from .protocol import DEFAULT_MAX_DECODED_BYTES, MAX_EMBD, MAX_ROWS, ProtocolError

__all__ = ["NativeNet", "load_net", "FcRowPolicy", "FcCodecs", "decode_fc_rows", "inspect_fc_rows", "fc_segments",
           "find_artifact", "FC_MAGIC", "is_fc_payload"]

FC_MAGIC = b"CLFC"
_FC_HDR = struct.Struct("<4sBBHIIIII")
_DT = {"f32": 0, "f16": 1, "int8": 2}


def _code_bytes(dt: int, m: int, k: int) -> int:
    """Bytes of m codes of size k: f32, f16, or int8 with one f32 scale per row."""
    return (m * k * 4, m * k * 2, m * 4 + m * k)[dt]
_OPS = {"project": 0, "encode": 1, "decode": 2}


class NativeNet:
    """A CLFN net loaded by the native runtime (collab_fcnet_*, ggml on the CPU)."""

    def __init__(self, data: bytes, *, kind: str | None = None, n_embd: int = 0, model_digest: bytes | None = None,
                 n_threads: int = 1):
        if not hasattr(_native, "FcNet"):
            raise InvalidArgument("this collab build has no native FC nets")
        k = {v: i for i, v in KIND_NAMES.items()}.get(kind, 0) if kind else 0
        if kind and not k:
            raise InvalidArgument(f"kind must be 'shortcut' or 'codec', got {kind!r}")
        try:
            self._n = _native.FcNet(bytes(data), k, int(n_embd), model_digest)
        except (ValueError, RuntimeError) as e:
            raise ArtifactError(str(e)) from None
        self.info = self._n.info()
        self.kind = KIND_NAMES[self.info["kind"]]
        self.n_embd = self.info["n_embd"]
        self.code_dim = self.info["code_dim"]
        self.split_at = self.info["split_at"]
        self.n_threads = int(n_threads)

    def _apply(self, op, x):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        return self._n.apply(_OPS[op], np.ascontiguousarray(x), self.n_threads)

    def project(self, x):
        return self._apply("project", x)

    __call__ = project

    def encode(self, x):
        return self._apply("encode", x)

    def decode(self, c):
        return self._apply("decode", c)


def load_net(path, *, kind: str, model=None, n_embd: int = 0, split_at: int | None = None, n_threads: int = 1):
    """Load a CLFN file natively. model: a GGUF (full model or split part) whose digest the
    net must carry; split_at: the split point it must be for."""
    data = Path(path).read_bytes()
    digest = model_digest(model) if model is not None else None
    net = NativeNet(data, kind=kind, n_embd=n_embd, model_digest=digest, n_threads=n_threads)
    if split_at is not None and net.split_at != int(split_at):
        raise ArtifactError(f"{path} is for split point {net.split_at}, the model is split at {split_at}")
    return net


def find_shipped(name: str):
    """A file shipped with the embedded SmolLM2's nets (models/llm), None if absent. Looked up in
    $COLLAB_LLM_NETS, ./models/llm (a source checkout: files made there come first), the
    installed package (collab/llm/nets: the wheel ships the committed models/llm files), then
    the checkout this module runs from in place (PYTHONPATH=python)."""
    import os

    here = Path(__file__).resolve().parent
    for d in (os.environ.get("COLLAB_LLM_NETS"), "models/llm", here / "nets", here.parents[2] / "models" / "llm"):
        if d and (Path(d) / name).is_file():
            return Path(d) / name
    return None


def find_artifact(kind: str, at: int, ratio: int = 0):
    """A shipped trained net for the embedded SmolLM2 (see find_shipped), None if absent."""
    return find_shipped(f"smollm2-135m.{kind}-{at}" + (f"-r{ratio}" if ratio else "") + ".clfn")


@dataclass
class FcRowPolicy:
    """Eq. 1 with the trained FC codec: rows [skip_first, n - keep_last) travel as codes."""

    codec: object               # NativeNet (kind codec) or artifact.FcNet (numpy reference)
    keep_last: int | float = 0.25
    skip_first: int = 1
    dtype: str = "f16"

    def __post_init__(self):
        if self.dtype not in _DT:
            raise InvalidArgument(f"dtype must be one of {sorted(_DT)}, got {self.dtype!r}")
        k = self.keep_last
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k < 0 or (isinstance(k, float) and k > 1):
            raise InvalidArgument(f"keep_last must be an int >= 0 or a fraction in [0, 1], got {k!r}")

    def span(self, n: int) -> tuple[int, int]:
        k = self.keep_last
        keep = int(round(k * n)) if isinstance(k, float) else int(k)
        lo = min(self.skip_first, n)
        return lo, max(lo, n - keep)

    def encode(self, rows) -> bytes:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        n, d = rows.shape
        if d != self.codec.n_embd:
            raise InvalidArgument(f"rows have width {d}, the codec {self.codec.n_embd}")
        lo, hi = self.span(n)
        k = self.codec.code_dim
        parts = [_FC_HDR.pack(FC_MAGIC, 1, _DT[self.dtype], 0, d, k, n, lo, hi), rows[:lo].astype("<f4").tobytes()]
        if hi > lo:
            c = np.asarray(self.codec.encode(rows[lo:hi]), dtype=np.float32)
            if self.dtype == "f32":
                parts.append(c.astype("<f4").tobytes())
            elif self.dtype == "f16":
                parts.append(np.clip(c, -65504, 65504).astype("<f2").tobytes())
            else:
                scale = np.abs(c).max(axis=1) / 127.0
                scale[scale == 0] = 1.0
                q = np.clip(np.rint(c / scale[:, None]), -127, 127).astype(np.int8)
                parts += [scale.astype("<f4").tobytes(), q.tobytes()]
        parts.append(rows[hi:].astype("<f4").tobytes())
        body = b"".join(parts)
        return body + struct.pack("<I", zlib.crc32(body))


def is_fc_payload(payload) -> bool:
    return bytes(payload[:4]) == FC_MAGIC


def inspect_fc_rows(payload, *, n_embd: int | None = None, max_rows: int = MAX_ROWS,
                    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> dict:
    """Check an FC-code payload from its header and length alone (nothing is decoded, the
    checksum is not yet read): {"n_rows", "n_embd", "code_dim", "dtype", "lo", "hi"}. As for
    protocol.inspect_rows, a receiver passes the rows it has room for as ``max_rows``; a
    payload whose length is not exactly what its header implies (trailing bytes included) is
    refused."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ProtocolError("FC payload must be bytes")
    mv = memoryview(payload).cast("B")
    if len(mv) < _FC_HDR.size + 4:
        raise ProtocolError("FC payload truncated")
    magic, ver, dt, _, d, k, n, lo, hi = _FC_HDR.unpack_from(mv, 0)
    if magic != FC_MAGIC or ver != 1:
        raise ProtocolError("not an FC-code payload (bad magic or version)")
    if n_embd is not None and d != n_embd:
        raise ProtocolError(f"FC payload is for width {d}, the model has {n_embd}")
    if dt not in (0, 1, 2) or not 0 < d <= MAX_EMBD or not 0 < k <= d or not 0 <= lo <= hi <= n:
        raise ProtocolError("FC payload header out of range")
    if not 0 < n <= min(max_rows, MAX_ROWS):
        raise ProtocolError(f"FC payload declares {n} rows: more than the {max_rows} rows the receiver has room for")
    if n * d * 4 > max_decoded_bytes:
        raise ProtocolError(f"{n} rows of {d} would decode to more than {max_decoded_bytes} bytes")
    m = hi - lo
    want = _FC_HDR.size + 4 * d * (n - m) + _code_bytes(dt, m, k) + 4
    if len(mv) != want:
        raise ProtocolError(f"FC payload has {len(mv)} bytes, its header says {want}")
    return {"n_rows": n, "n_embd": d, "code_dim": k, "dtype": {v: name for name, v in _DT.items()}[dt], "lo": lo, "hi": hi}


def fc_segments(info: dict) -> list:
    """inspect_fc_rows' answer as protocol.inspect_rows' segments: [(kind, n_rows, nbytes)]
    in payload order, kind "f32" for exact rows and "fc-<code dtype>" for codes."""
    d, k, n, lo, hi = info["n_embd"], info["code_dim"], info["n_rows"], info["lo"], info["hi"]
    m = hi - lo
    code_bytes = _code_bytes(_DT[info["dtype"]], m, k)
    segs = [("f32", lo, 4 * lo * d), ("fc-" + info["dtype"], m, code_bytes), ("f32", n - hi, 4 * (n - hi) * d)]
    return [s for s in segs if s[1]]


def decode_fc_rows(payload, codec, n_embd: int | None = None, *, max_rows: int = MAX_ROWS,
                   max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> np.ndarray:
    """Server side: payload -> (n_rows, n_embd) float32 rows, codes through the decoder. The
    header is checked first (inspect_fc_rows), then the checksum, then the values."""
    info = inspect_fc_rows(payload, n_embd=n_embd, max_rows=max_rows, max_decoded_bytes=max_decoded_bytes)
    buf = bytes(payload)
    d, k, n, lo, hi = info["n_embd"], info["code_dim"], info["n_rows"], info["lo"], info["hi"]
    if d != codec.n_embd or k != codec.code_dim:
        raise ProtocolError(f"FC payload is for width {d} / code {k}, the codec has {codec.n_embd} / {codec.code_dim}")
    (crc,) = struct.unpack_from("<I", buf, len(buf) - 4)
    if zlib.crc32(buf[:-4]) != crc:
        raise ProtocolError("FC payload checksum mismatch")
    m, dt = hi - lo, _DT[info["dtype"]]
    code_bytes = _code_bytes(dt, m, k)
    off = _FC_HDR.size
    head = np.frombuffer(buf, "<f4", lo * d, off).reshape(lo, d)
    off += 4 * lo * d
    if dt == 0:
        c = np.frombuffer(buf, "<f4", m * k, off).reshape(m, k)
    elif dt == 1:
        c = np.frombuffer(buf, "<f2", m * k, off).astype(np.float32).reshape(m, k)
    else:
        s = np.frombuffer(buf, "<f4", m, off)
        with np.errstate(over="ignore", invalid="ignore"):
            c = np.frombuffer(buf, np.int8, m * k, off + 4 * m).astype(np.float32).reshape(m, k) * s[:, None]
    off += code_bytes
    tail = np.frombuffer(buf, "<f4", (n - hi) * d, off).reshape(n - hi, d)
    if not (np.all(np.isfinite(head)) and np.all(np.isfinite(tail)) and np.all(np.isfinite(c))):
        raise ProtocolError("FC payload holds NaN/Inf")
    mid = np.asarray(codec.decode(c), dtype=np.float32) if m else np.zeros((0, d), np.float32)
    if not np.all(np.isfinite(mid)):
        raise ProtocolError("FC codes decode to NaN/Inf (codes out of the trained range)")
    return np.concatenate([head, mid, tail]).astype(np.float32)


class FcCodecs:
    """Server side: the trained decoders for one split, chosen by the payload's code size."""

    def __init__(self, nets):
        self.by_k = {int(n.code_dim): n for n in nets}

    @classmethod
    def default(cls, model, split_at: int, ratios=(8, 4)) -> "FcCodecs":
        """The shipped codecs trained for this model and split point (the shipped nets are for
        the embedded SmolLM2): none for another model, whose FC payloads are then refused by
        decode(). A corrupt shipped file is an error, as in ShortcutProjection.default."""
        from .artifact import FcNet, model_digest

        nets, digest = [], None
        for r in ratios:
            p = find_artifact("codec", split_at, r)
            if p is None:
                continue
            digest = model_digest(model) if digest is None else digest
            if FcNet.load(p).model_digest != digest:
                continue  # trained for another model
            nets.append(load_net(p, kind="codec", model=model, split_at=split_at))
        return cls(nets)

    def decode(self, payload, n_embd: int, *, max_rows: int = MAX_ROWS) -> np.ndarray:
        """Header first (rows against max_rows, exact size), then the decoder for its code size."""
        k = inspect_fc_rows(payload, n_embd=n_embd, max_rows=max_rows)["code_dim"]
        if k not in self.by_k:
            raise ProtocolError(f"no trained FC codec with code size {k} on this server (have {sorted(self.by_k)})")
        return decode_fc_rows(payload, self.by_k[k], n_embd, max_rows=max_rows)
