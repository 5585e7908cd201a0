"""Bytes that travel between the device (head) and the server (tail).

Hidden rows (``encode_rows`` / ``decode_rows``)
    A payload is a sequence of segments, each covering consecutive token rows::

        "CLHR" u8 version=1 u8 n_segments u32 n_embd
        per segment: u8 kind u32 n_rows u32 nbytes  bytes[nbytes]
        kind 0: raw little-endian float32 rows (full fidelity)
        kind 1: raw float16 rows
        kind 2: a SLICER codec frame (collab.codec) of shape (n_rows, n_embd)

    :class:`RowPolicy` is MindFusion's representation-compression policy (Sec. IV-A, Eq. 1)
    with SLICER's codec in place of the trained encoder: the *early* tokens of a prompt
    (context, few-shot examples, image tokens) are compressed hard, the *last* tokens (the
    question) travel at full fidelity. Ranges are configurable by token count or fraction.

KV state (``encode_state`` / ``decode_state``)
    "CLKV" u8 version=1 u8 pad[3] u32 n_layer u32 n_embd u32 n_past u64 nbytes u32 crc32
    then the llama_state_seq_get_data bytes. The header lets a server reject a state from
    the wrong model before llama.cpp parses it.

Token ids travel as little-endian int32 arrays (``encode_tokens`` / ``decode_tokens``).

Every decoder here raises :class:`ProtocolError` (a ValueError) on malformed bytes.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import FrameError, InvalidArgument

__all__ = ["ProtocolError", "RowPolicy", "encode_rows", "encode_rows_raw", "decode_rows", "encode_state", "decode_state",
           "encode_tokens", "decode_tokens", "inspect_rows", "MAX_ROWS", "MAX_STATE_BYTES"]

ROWS_MAGIC = b"CLHR"
STATE_MAGIC = b"CLKV"
VERSION = 1
KIND_F32, KIND_F16, KIND_SLICER = 0, 1, 2
MAX_ROWS = 1 << 20
MAX_EMBD = 1 << 16
MAX_STATE_BYTES = 1 << 31
# decode_rows refuses payloads that decode to more than this unless told otherwise: a few bytes
# of codec frame can declare a huge, all-zero block of rows.
DEFAULT_MAX_DECODED_BYTES = 1 << 28
_ROWS_HDR = struct.Struct("<4sBBI")
_SEG_HDR = struct.Struct("<BII")
_STATE_HDR = struct.Struct("<4sB3xIIIQI")


class ProtocolError(FrameError):
    """Malformed bytes from the peer (hidden rows, KV state or token ids)."""


@dataclass(frozen=True)
class RowPolicy:
    """How hidden rows are encoded for the wire.

    keep_last: the last ``keep_last`` tokens (int) or that fraction of the prompt (float in
      (0, 1]) go at full fidelity (``full_dtype``). None keeps all rows at full fidelity.
    sparsity / qbits / blocks / lam: SLICER codec settings for the early tokens (as in
      collab.codec.encode); sparsity=None sends early rows as float16 instead.
    full_dtype: "f32" (bit-exact) or "f16" for the full-fidelity rows.
    Single-token decode steps always use full fidelity.
    """

    keep_last: int | float | None = None
    sparsity: float | None = 0.5
    qbits: tuple = (8,)
    blocks: tuple = (1, 1)
    lam: float = 0.0
    full_dtype: str = "f32"
    codec_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.full_dtype not in ("f32", "f16"):
            raise InvalidArgument(f"full_dtype must be 'f32' or 'f16', got {self.full_dtype!r}")
        k = self.keep_last
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, (int, float)):
                raise InvalidArgument(f"keep_last must be None, an int >= 0 or a fraction in (0, 1], got {k!r}")
            if isinstance(k, float) and not 0.0 < k <= 1.0:
                raise InvalidArgument(f"a fractional keep_last must be in (0, 1], got {k!r}")
            if isinstance(k, int) and k < 0:
                raise InvalidArgument(f"keep_last must be >= 0, got {k!r}")
        if self.sparsity is not None and not 0.0 <= float(self.sparsity) < 1.0:
            raise InvalidArgument(f"sparsity must be in [0, 1), got {self.sparsity!r}")

    @classmethod
    def exact(cls) -> "RowPolicy":
        return cls(keep_last=None)

    def n_full(self, n_rows: int) -> int:
        """How many of the last rows go at full fidelity."""
        k = self.keep_last
        if k is None or n_rows <= 1:
            return n_rows
        if isinstance(k, float):
            return min(n_rows, max(1, int(np.ceil(k * n_rows))))
        return min(n_rows, int(k))

    def describe(self) -> dict:
        return {"keep_last": self.keep_last, "sparsity": self.sparsity, "qbits": list(self.qbits),
                "blocks": list(self.blocks), "lam": self.lam, "full_dtype": self.full_dtype}


def _raw_segment(rows: np.ndarray, dtype: str) -> tuple[int, bytes]:
    if dtype == "f16":
        return KIND_F16, np.ascontiguousarray(rows, dtype="<f2").tobytes()
    return KIND_F32, np.ascontiguousarray(rows, dtype="<f4").tobytes()


def encode_rows(rows, policy: RowPolicy | None = None) -> bytes:
    """Hidden rows (n, n_embd) float32 -> payload bytes under ``policy`` (default: exact)."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] == 0 or not 0 < rows.shape[1] <= MAX_EMBD:
        raise InvalidArgument(f"rows must have shape (n >= 1, n_embd), got {rows.shape}")
    if rows.shape[0] > MAX_ROWS:
        raise InvalidArgument(f"at most {MAX_ROWS} rows per payload")
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    policy = policy or RowPolicy.exact()
    n = rows.shape[0]
    n_full = policy.n_full(n)
    segments = []
    early = rows[: n - n_full]
    if early.shape[0]:
        if policy.sparsity is None:
            segments.append((early.shape[0], *_raw_segment(early, "f16")))
        else:
            from .. import codec

            frame = codec.encode(early, float(policy.sparsity), lam=policy.lam, blocks=tuple(policy.blocks),
                                 qbits=tuple(policy.qbits), **policy.codec_kwargs)
            if len(frame) < early.shape[0] * early.shape[1] * 2:
                segments.append((early.shape[0], KIND_SLICER, frame))
            else:  # a compressed form is never sent when raw float16 rows are not bigger
                segments.append((early.shape[0], *_raw_segment(early, "f16")))
    if n_full:
        segments.append((n_full, *_raw_segment(rows[n - n_full:], policy.full_dtype)))
    return _pack_segments(segments, rows.shape[1])


def _pack_segments(segments, width: int) -> bytes:
    out = [_ROWS_HDR.pack(ROWS_MAGIC, VERSION, len(segments), width)]
    for n_rows, kind, data in segments:
        out.append(_SEG_HDR.pack(kind, n_rows, len(data)))
        out.append(data)
    return b"".join(out)


def encode_rows_raw(rows, dtypes) -> bytes:
    """Rows (n, n_embd) as consecutive raw segments: dtypes [(n_rows, "f32" | "f16"), ...]
    covering all n rows in order (e.g. text rows f32, image rows f16, text rows f32)."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] == 0 or not 0 < rows.shape[1] <= MAX_EMBD:
        raise InvalidArgument(f"rows must have shape (n >= 1, n_embd), got {rows.shape}")
    spans = [(int(n), dt) for n, dt in dtypes if int(n) > 0]
    if sum(n for n, _ in spans) != rows.shape[0] or any(dt not in ("f32", "f16") for _, dt in spans):
        raise InvalidArgument(f"dtypes {dtypes} must cover the {rows.shape[0]} rows with f32 / f16 spans")
    segs, off = [], 0
    for n, dt in spans:
        segs.append((n, *_raw_segment(rows[off:off + n], dt)))
        off += n
    return _pack_segments(segs, rows.shape[1])


KIND_NAMES = {KIND_F32: "f32", KIND_F16: "f16", KIND_SLICER: "slicer"}


def _as_bytes_view(buf, what: str) -> memoryview:
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"{what} must be bytes, got {type(buf).__name__}")
    mv = memoryview(buf)
    if not mv.c_contiguous:
        raise ProtocolError(f"{what} must be a contiguous buffer")
    return mv.cast("B")


def inspect_rows(buf, *, n_embd: int | None = None, max_rows: int = MAX_ROWS,
                 max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> dict:
    """Check a hidden-row payload from its headers alone (nothing is decoded or allocated):
    {"n_rows", "n_embd", "segments": [(kind name, n_rows, nbytes), ...]}. A receiver passes
    the rows it has room for as ``max_rows`` so a payload declaring more is refused before any
    decoding; the decoded float32 rows must also fit max_decoded_bytes."""
    mv = _as_bytes_view(buf, "hidden rows")
    if len(mv) < _ROWS_HDR.size:
        raise ProtocolError("hidden-row payload truncated (header)")
    magic, version, n_seg, width = _ROWS_HDR.unpack_from(mv, 0)
    if magic != ROWS_MAGIC:
        raise ProtocolError("not a hidden-row payload (bad magic)")
    if version != VERSION:
        raise ProtocolError(f"hidden-row payload version {version} not supported")
    if not 0 < width <= MAX_EMBD or (n_embd is not None and width != n_embd):
        raise ProtocolError(f"hidden-row width {width} does not match the model (n_embd={n_embd})")
    if n_seg == 0:
        raise ProtocolError("hidden-row payload has no segments")
    off, total, segs = _ROWS_HDR.size, 0, []
    for _ in range(n_seg):
        if off + _SEG_HDR.size > len(mv):
            raise ProtocolError("hidden-row payload truncated (segment header)")
        kind, n_rows, nbytes = _SEG_HDR.unpack_from(mv, off)
        off += _SEG_HDR.size
        if kind not in KIND_NAMES:
            raise ProtocolError(f"unknown segment kind {kind}")
        if n_rows == 0 or total + n_rows > max_rows:
            raise ProtocolError(f"segment with {n_rows} rows after {total}: more than the {max_rows} rows "
                                "the receiver has room for")
        if (total + n_rows) * width * 4 > max_decoded_bytes:
            raise ProtocolError(f"{total + n_rows} rows of {width} would decode to more than "
                                f"{max_decoded_bytes} bytes")
        if off + nbytes > len(mv):
            raise ProtocolError("hidden-row payload truncated (segment data)")
        if kind != KIND_SLICER and nbytes != n_rows * width * (4 if kind == KIND_F32 else 2):
            raise ProtocolError(f"raw segment holds {nbytes} bytes, expected "
                                f"{n_rows * width * (4 if kind == KIND_F32 else 2)}")
        segs.append((KIND_NAMES[kind], n_rows, nbytes))
        total += n_rows
        off += nbytes
    if off != len(mv):
        raise ProtocolError(f"{len(mv) - off} trailing bytes after the hidden-row payload")
    return {"n_rows": total, "n_embd": width, "segments": segs}


def decode_rows(buf, *, n_embd: int | None = None, max_rows: int = MAX_ROWS,
                max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> np.ndarray:
    """Payload bytes -> float32 rows (n, n_embd). Checks n_embd when given; every header is
    checked (inspect_rows) before anything is decoded."""
    info = inspect_rows(buf, n_embd=n_embd, max_rows=max_rows, max_decoded_bytes=max_decoded_bytes)
    mv = _as_bytes_view(buf, "hidden rows")
    width = info["n_embd"]
    off = _ROWS_HDR.size
    parts = []
    for kind, n_rows, nbytes in info["segments"]:
        data = mv[off + _SEG_HDR.size:off + _SEG_HDR.size + nbytes]
        off += _SEG_HDR.size + nbytes
        if kind != "slicer":
            a = np.frombuffer(data, dtype="<f4" if kind == "f32" else "<f2").reshape(n_rows, width)
            a = a.astype(np.float32)
        else:
            from .. import codec

            frame = bytes(data)
            try:
                cinfo = codec.inspect(frame)
            except ValueError as e:
                raise ProtocolError(f"bad codec frame in hidden-row payload: {e}") from None
            if tuple(cinfo["shape"]) != (n_rows, width) or cinfo["dtype"] != "float32":
                raise ProtocolError(f"codec frame shape {tuple(cinfo['shape'])} != ({n_rows}, {width})")
            try:
                a = codec.decode(frame)
            except ValueError as e:
                raise ProtocolError(f"bad codec frame in hidden-row payload: {e}") from None
        if not np.all(np.isfinite(a)):
            raise ProtocolError("hidden rows hold NaN/Inf")
        parts.append(a)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def encode_state(state: bytes, *, n_layer: int, n_embd: int, n_past: int) -> bytes:
    hdr = _STATE_HDR.pack(STATE_MAGIC, VERSION, n_layer, n_embd, n_past, len(state), zlib.crc32(state))
    return hdr + bytes(state)


def decode_state(buf, *, n_layer: int, n_embd: int, max_bytes: int = MAX_STATE_BYTES) -> tuple[bytes, int]:
    """Check a KV-state frame against the receiving model; return (llama state bytes, n_past).
    (llama.cpp itself refuses state bytes it does not consume entirely: no trailing junk.)"""
    mv = _as_bytes_view(buf, "KV state")
    if len(mv) < _STATE_HDR.size:
        raise ProtocolError("KV state truncated (header)")
    magic, version, nl, ne, n_past, nbytes, crc = _STATE_HDR.unpack_from(mv, 0)
    if magic != STATE_MAGIC or version != VERSION:
        raise ProtocolError("not a KV-state frame (bad magic or version)")
    if nl != n_layer or ne != n_embd:
        raise ProtocolError(f"KV state is for a model with {nl} layers x {ne}, this head has {n_layer} x {n_embd}")
    if nbytes == 0 or nbytes > max_bytes or _STATE_HDR.size + nbytes != len(mv):
        raise ProtocolError(f"KV state length {nbytes} does not match the frame ({len(mv) - _STATE_HDR.size})")
    data = bytes(mv[_STATE_HDR.size:])
    if zlib.crc32(data) != crc:
        raise ProtocolError("KV state checksum mismatch")
    return data, n_past


def encode_tokens(tokens) -> bytes:
    return np.ascontiguousarray(np.asarray(tokens, dtype=np.int64).reshape(-1), dtype="<i4").tobytes()


def decode_tokens(buf, *, n_vocab: int | None = None, max_tokens: int = MAX_ROWS) -> np.ndarray:
    mv = _as_bytes_view(buf, "token ids")
    if len(mv) % 4 or len(mv) == 0 or len(mv) // 4 > max_tokens:
        raise ProtocolError(f"token payload of {len(mv)} bytes is not 1..{max_tokens} int32 ids")
    t = np.frombuffer(mv, dtype="<i4").astype(np.int32)
    if t.min() < 0 or (n_vocab is not None and t.max() >= n_vocab):
        raise ProtocolError(f"token id out of range [0, {n_vocab})")
    return t
