"""Trained MindFusion networks on disk: the "CLFN" file the native runtime reads.

Two kinds of small fully connected nets ride next to a split LLM:

  KIND_SHORTCUT (1)  the decoding shortcut's projection (Eq. 3), token embedding -> tail row:
                     y = x + W4 g(W3 g(W2 g(W1 x + b1) + b2) + b3) + b4,  dims d -> d -> 4d -> d -> d
  KIND_CODEC    (2)  the representation codec (Eq. 1-2): encoder c = E2 g(E1 x + e1) + e2
                     (d -> d/2 -> k), decoder x' = D2 g(D1 c + f1) + f2 (k -> d/2 -> d)

g is GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Any input/output
standardisation used in training is folded into the first/last layer before writing.

File layout (little-endian, version 1)::

    offset size
    0      4    magic "CLFN"
    4      4    u32 version (1)
    8      4    u32 kind (1 shortcut, 2 codec)
    12     4    u32 n_embd d
    16     4    u32 split_at l (the layer whose input rows the net produces / compresses)
    20     4    u32 n_layer_total of the model
    24     4    u32 code_dim k (codec; 0 for the shortcut)
    28     4    u32 n_tensors
    32     32   model digest: sha256 of the full GGUF file the net was trained against
    64     4    u32 meta_len, then meta_len bytes of UTF-8 JSON (training record; readers may skip it)
    ...         n_tensors x: u32 name_len, name (ASCII), u32 ndim, ndim x u32 dims, u32 dtype
                (0 f32, 1 f16), data row-major (W stored as (out, in)); f16 is widened to
                f32 on load (storage only: the nets compute in f32)
    end-4  4    u32 CRC-32 (zlib) of every byte before it

The names, order and shapes of the tensors are fixed per kind (``expected_tensors``), so a
reader checks them rather than trusting the file. Readers refuse: wrong magic/version, bad
checksum, a kind/d/model digest different from what the caller expects, NaN/Inf weights.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FrameError, InvalidArgument

__all__ = ["FcNet", "KIND_SHORTCUT", "KIND_CODEC", "MAGIC", "VERSION", "ArtifactError", "expected_tensors",
           "gguf_digest", "model_digest", "gelu"]

MAGIC = b"CLFN"
VERSION = 1
KIND_SHORTCUT = 1
KIND_CODEC = 2
KIND_NAMES = {KIND_SHORTCUT: "shortcut", KIND_CODEC: "codec"}
_HDR = struct.Struct("<4s7I32s")
_MAX_EMBD = 1 << 15
_MAX_META = 1 << 20
DIGEST_KEY = "collab.split.source_sha256"


class ArtifactError(FrameError):
    """A CLFN file that is corrupt, or does not belong to the model it is used with."""


def gelu(x):
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        return (0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x * x * x)))
            ).astype(np.float32)


def expected_tensors(kind: int, d: int, k: int = 0) -> list:
    """[(name, shape)] in file order for a net of this kind."""
    if kind == KIND_SHORTCUT:
        dims = [d, d, 4 * d, d, d]
        out = []
        for i in range(4):
            out += [(f"w{i + 1}", (dims[i + 1], dims[i])), (f"b{i + 1}", (dims[i + 1],))]
        return out
    if kind == KIND_CODEC:
        h = d // 2
        return [("enc1.w", (h, d)), ("enc1.b", (h,)), ("enc2.w", (k, h)), ("enc2.b", (k,)),
                ("dec1.w", (h, k)), ("dec1.b", (h,)), ("dec2.w", (d, h)), ("dec2.b", (d,))]
    raise InvalidArgument(f"unknown net kind {kind}")


def gguf_digest(path, chunk: int = 1 << 22) -> bytes:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.digest()


def has_source_digest(path) -> bool:
    """False for a split part written before parts carried their source's digest."""
    import gguf

    r = gguf.GGUFReader(str(path))
    return "collab.split.part" not in r.fields or DIGEST_KEY in r.fields


def model_digest(path) -> bytes:
    """The digest a net is matched against: sha256 of the full GGUF. A head/tail part written by
    split_gguf carries its source's digest in its metadata."""
    import gguf

    r = gguf.GGUFReader(str(path))
    if "collab.split.part" in r.fields:
        f = r.fields.get(DIGEST_KEY)
        if f is None:
            raise InvalidArgument(f"{path} is a split part without {DIGEST_KEY}: re-split the model")
        return bytes.fromhex(str(f.contents()))
    return gguf_digest(path)


@dataclass
class FcNet:
    kind: int
    n_embd: int
    split_at: int
    n_layer_total: int
    model_digest: bytes
    tensors: dict            # name -> float32 array
    code_dim: int = 0
    meta: dict = field(default_factory=dict)
    storage: str = "f32"     # "f16": weights written as float16 (and rounded to it on creation)

    def __post_init__(self):
        if self.kind not in KIND_NAMES:
            raise InvalidArgument(f"unknown net kind {self.kind}")
        d, k = int(self.n_embd), int(self.code_dim)
        if not 0 < d <= _MAX_EMBD or d % 2:
            raise InvalidArgument(f"n_embd must be even and in (0, {_MAX_EMBD}], got {d}")
        if self.kind == KIND_CODEC and not 0 < k <= d:
            raise InvalidArgument(f"code_dim must be in (0, {d}], got {k}")
        if self.kind == KIND_SHORTCUT and k:
            raise InvalidArgument("a shortcut net has no code_dim")
        if len(self.model_digest) != 32:
            raise InvalidArgument("model_digest must be 32 bytes (sha256)")
        want = expected_tensors(self.kind, d, k)
        if sorted(self.tensors) != sorted(n for n, _ in want):
            raise InvalidArgument(f"tensors must be {[n for n, _ in want]}, got {sorted(self.tensors)}")
        clean = {}
        for name, shape in want:
            a = np.ascontiguousarray(self.tensors[name], dtype=np.float32)
            if a.shape != shape:
                raise InvalidArgument(f"{name}: shape {a.shape}, expected {shape}")
            if self.storage == "f16":
                if np.any(np.abs(a) > 65504):
                    raise InvalidArgument(f"{name} does not fit float16 storage")
                a = a.astype(np.float16).astype(np.float32)
            elif self.storage != "f32":
                raise InvalidArgument(f"storage must be f32 or f16, got {self.storage!r}")
            if not np.all(np.isfinite(a)):
                raise InvalidArgument(f"{name} holds NaN/Inf")
            clean[name] = a
        self.tensors = clean

    kind_name = property(lambda self: KIND_NAMES[self.kind])

    # -- numpy reference forward ---------------------------------------------------------------
    def _mlp(self, x, names):
        h = x
        for j, (w, b) in enumerate(names):
            h = h @ self.tensors[w].T + self.tensors[b]
            if j < len(names) - 1:
                h = gelu(h)
        return h.astype(np.float32)

    def _rows(self, x, width):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != width:
            raise InvalidArgument(f"input must be (n, {width}), got {x.shape}")
        return x

    def project(self, x) -> np.ndarray:
        """Shortcut: token embeddings (n, d) -> tail input rows (n, d)."""
        if self.kind != KIND_SHORTCUT:
            raise InvalidArgument("project() needs a shortcut net")
        x = self._rows(x, self.n_embd)
        return (x + self._mlp(x, [("w1", "b1"), ("w2", "b2"), ("w3", "b3"), ("w4", "b4")])).astype(np.float32)

    def encode(self, x) -> np.ndarray:
        if self.kind != KIND_CODEC:
            raise InvalidArgument("encode() needs a codec net")
        return self._mlp(self._rows(x, self.n_embd), [("enc1.w", "enc1.b"), ("enc2.w", "enc2.b")])

    def decode(self, c) -> np.ndarray:
        if self.kind != KIND_CODEC:
            raise InvalidArgument("decode() needs a codec net")
        return self._mlp(self._rows(c, self.code_dim), [("dec1.w", "dec1.b"), ("dec2.w", "dec2.b")])

    # -- file ---------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        want = expected_tensors(self.kind, self.n_embd, self.code_dim)
        meta = json.dumps(self.meta, sort_keys=True).encode()
        parts = [_HDR.pack(MAGIC, VERSION, self.kind, self.n_embd, self.split_at, self.n_layer_total,
                           self.code_dim, len(want), self.model_digest), struct.pack("<I", len(meta)), meta]
        for name, shape in want:
            nb = name.encode("ascii")
            dt = 1 if self.storage == "f16" else 0
            parts.append(struct.pack(f"<I{len(nb)}sI{len(shape)}II", len(nb), nb, len(shape), *shape, dt))
            parts.append(self.tensors[name].astype("<f2" if dt else "<f4").tobytes())
        body = b"".join(parts)
        return body + struct.pack("<I", zlib.crc32(body))

    def save(self, path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(path)
        return path

    @classmethod
    def from_bytes(cls, buf, *, kind: int | None = None, n_embd: int | None = None,
                   model_digest: bytes | None = None, split_at: int | None = None) -> "FcNet":
        """Parse and check a CLFN file; the keyword arguments are what the caller expects."""
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise ArtifactError("a net file must be bytes")
        buf = bytes(buf)
        if len(buf) < _HDR.size + 8:
            raise ArtifactError("net file truncated")
        magic, version, k_, d, at, nl, k, nt, dig = _HDR.unpack_from(buf, 0)
        if magic != MAGIC:
            raise ArtifactError("not a collab net file (bad magic)")
        if version != VERSION:
            raise ArtifactError(f"net file version {version}, this collab reads version {VERSION}")
        (crc,) = struct.unpack_from("<I", buf, len(buf) - 4)
        if zlib.crc32(buf[:-4]) != crc:
            raise ArtifactError("net file checksum mismatch (corrupt or truncated)")
        if kind is not None and k_ != kind:
            raise ArtifactError(f"net file holds a {KIND_NAMES.get(k_, k_)} net, expected {KIND_NAMES[kind]}")
        if n_embd is not None and d != n_embd:
            raise ArtifactError(f"net file is for n_embd {d}, the model has {n_embd}")
        if model_digest is not None and dig != bytes(model_digest):
            raise ArtifactError("net file was trained for a different model (model digest mismatch)")
        if split_at is not None and at != split_at:
            raise ArtifactError(f"net file is for split point {at}, the model is split at {split_at}")
        if k_ not in KIND_NAMES or not 0 < d <= _MAX_EMBD or d % 2 or (k_ == KIND_CODEC and not 0 < k <= d):
            raise ArtifactError("net file header describes an unsupported net")
        want = expected_tensors(k_, d, k)
        if nt != len(want):
            raise ArtifactError("net file tensor count does not match its kind")
        off = _HDR.size
        (mlen,) = struct.unpack_from("<I", buf, off)
        off += 4
        if mlen > _MAX_META or off + mlen > len(buf) - 4:
            raise ArtifactError("net file meta length out of range")
        try:
            meta = json.loads(buf[off:off + mlen].decode()) if mlen else {}
        except (ValueError, UnicodeDecodeError):
            raise ArtifactError("net file meta is not JSON") from None
        off += mlen
        tensors, dts = {}, set()
        for name, shape in want:
            nb = name.encode()
            head = struct.Struct(f"<I{len(nb)}sI{len(shape)}II")
            if off + head.size > len(buf) - 4:
                raise ArtifactError("net file truncated (tensor header)")
            got = head.unpack_from(buf, off)
            if got[:-1] != (len(nb), nb, len(shape), *shape) or got[-1] not in (0, 1):
                raise ArtifactError(f"net file tensor {name}: header does not match {shape}")
            dt = got[-1]
            dts.add(dt)
            off += head.size
            n, w = int(np.prod(shape)), (2 if dt else 4)
            if off + w * n > len(buf) - 4:
                raise ArtifactError("net file truncated (tensor data)")
            tensors[name] = np.frombuffer(buf, "<f2" if dt else "<f4", n, off).astype(np.float32).reshape(shape)
            off += w * n
        if off != len(buf) - 4:
            raise ArtifactError("trailing bytes in net file")
        try:
            return cls(k_, d, at, nl, dig, tensors, code_dim=k, meta=meta, storage="f16" if dts == {1} else "f32")
        except InvalidArgument as e:
            raise ArtifactError(str(e)) from None

    @classmethod
    def load(cls, path, **expect) -> "FcNet":
        return cls.from_bytes(Path(path).read_bytes(), **expect)
