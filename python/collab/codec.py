"""SLICER intermediate-feature codec (SLICER paper, section 3), native speed.

    frame = collab.codec.encode(x, 0.75, blocks=(2, 2), qbits=(8, 4))
    y = collab.codec.decode(frame)             # numpy array, x's dtype and shape

A frame is self-describing bytes (docs/frame_format.md): `decode` needs nothing else.
The pure-numpy reference (collab.reference.slicer) produces the same bytes.
"""
from __future__ import annotations

import threading

import numpy as np

from . import _native
from ._tensors import DEVICE_CPU, DEVICE_CUDA, NUMPY_OF_CODE, is_torch_tensor, view_of
from .errors import FrameError, InvalidArgument

__all__ = ["encode", "decode", "predict_bits", "inspect", "FrameError", "INDEX_CODES", "DEFAULT_MAX_ELEMENTS"]

INDEX_CODES = {"csr": 0, "bitmap": 1, "delta_varint": 2, "delta_rice": 3}
_INDEX_NAMES = {v: k for k, v in INDEX_CODES.items()}
DTYPE_NAMES = {0: "float32", 1: "float16", 2: "bfloat16"}
# decode() refuses frames that describe more elements than this unless told otherwise: a
# few bytes can describe a huge, almost empty tensor, and the output is allocated in full.
DEFAULT_MAX_ELEMENTS = 1 << 28

_local = threading.local()


def _codec() -> _native.Codec:
    c = getattr(_local, "codec", None)
    if c is None:
        c = _local.codec = _native.Codec()
    return c


def _blocks_qbits(blocks, qbits):
    if isinstance(qbits, (int, np.integer)) and not isinstance(qbits, bool):
        qbits = (qbits,)
    if isinstance(blocks, (str, bytes)) or isinstance(qbits, (str, bytes)):
        raise InvalidArgument(f"blocks and qbits must be sequences of integers, got {blocks!r}, {qbits!r}")
    try:
        blocks = tuple(int(b) for b in blocks)
        qbits = tuple(int(q) for q in qbits)
    except (TypeError, ValueError):
        raise InvalidArgument(f"blocks and qbits must be sequences of integers, got {blocks!r}, {qbits!r}") from None
    if len(blocks) != 2:
        raise InvalidArgument(f"blocks must be (M+, M-), got {blocks!r}")
    return blocks, qbits


def _number(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise InvalidArgument(f"{name} must be a number, got {v!r}")
    return float(v)


def encode(x, sparsity, *, lam=0.0, blocks=(1, 1), qbits=(8,), delta=0.0, seed=0, index_code=None,
           threads=None) -> bytes:
    """Compress a float32/float16/bfloat16 tensor (numpy, torch, or DLPack) into a frame.

    sparsity: fraction s in [0, 1) of elements dropped by ATKF (exactly floor((1-s) T) kept).
    lam: ATKF asymmetry in [0, 1). blocks: (M+, M-) magnitude blocks per sign (MS).
    qbits: bits per block, largest magnitudes first; a short list repeats its last entry.
    delta: ABQ budget on the mean integer mismatch (Eq. 9); 0 keeps qbits as given.
    seed: tie-breaking seed. index_code: None (smallest) or one of INDEX_CODES.
    threads: native threads for this call (None = collab.get_num_threads()).
    CUDA tensors are encoded on their device; only the frame comes back to the host.
    """
    sparsity = _number("sparsity", sparsity)
    lam = _number("lam", lam)
    delta = _number("delta", delta)
    blocks, qbits = _blocks_qbits(blocks, qbits)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise InvalidArgument(f"seed must be an integer in [0, 2**64), got {seed!r}")
    if index_code is None:
        code = -1
    elif isinstance(index_code, str) and index_code in INDEX_CODES:
        code = INDEX_CODES[index_code]
    elif isinstance(index_code, int) and index_code in _INDEX_NAMES:
        code = index_code
    else:
        raise InvalidArgument(f"index_code must be None or one of {sorted(INDEX_CODES)}, got {index_code!r}")
    v = view_of(x)
    return _native.encode(_codec(), v.ptr, v.dtype, list(v.shape), v.device, v.device_id, sparsity, lam,
                          list(blocks), list(qbits), delta, int(seed), code, int(threads or 0))


def _frame_bytes(buf):
    if isinstance(buf, (bytes, bytearray, memoryview)):
        return buf
    raise InvalidArgument(f"a frame must be bytes, bytearray or memoryview, got {type(buf).__name__}")


def decode(buf, *, out=None, device=None, max_elements=DEFAULT_MAX_ELEMENTS):
    """Decode a frame into a new numpy array (or into `out`, numpy or torch).

    device="cuda" (or "cuda:N") returns a torch tensor on that GPU, decoded there.
    Raises FrameError for truncated, corrupted or malformed frames.
    """
    buf = _frame_bytes(buf)
    info = _native.frame_info(buf)
    shape, dtype_code = tuple(info["shape"]), info["dtype"]
    if info["numel"] > max_elements:
        raise FrameError(f"frame describes {info['numel']} elements, more than max_elements={max_elements}")
    if out is None and device is not None and str(device).startswith("cuda"):
        import torch

        tdt = {0: torch.float32, 1: torch.float16, 2: torch.bfloat16}[dtype_code]
        out = torch.empty(shape, dtype=tdt, device=device)
    if out is None:
        out = np.empty(shape, dtype=NUMPY_OF_CODE[dtype_code])
    v = view_of(out)
    if v.dtype != dtype_code or tuple(v.shape) != shape:
        raise InvalidArgument(f"out must have dtype {DTYPE_NAMES[dtype_code]} and shape {shape}")
    if v.owner is not out and not (is_torch_tensor(out) and v.owner.data_ptr() == out.data_ptr()):
        raise InvalidArgument("out must be contiguous")
    _native.decode_into(_codec(), buf, v.ptr, v.dtype, list(v.shape), v.device, v.device_id)
    return out


def predict_bits(shape, sparsity, *, blocks=(1, 1), qbits=(8,)) -> int:
    """SLICER's conservative frame-size bound B^UB in bits (Sec. 3.3); frames never exceed it."""
    blocks, qbits = _blocks_qbits(blocks, qbits)
    return int(_native.predict_bits([int(d) for d in shape], _number("sparsity", sparsity), list(blocks),
                                    list(qbits)))


def inspect(buf) -> dict:
    """Describe a frame: parameters, bits chosen per block, index code, byte sizes."""
    info = _native.frame_info(_frame_bytes(buf))
    info["dtype"] = DTYPE_NAMES[info["dtype"]]
    info["index_code"] = _INDEX_NAMES[info["index_code"]]
    return info
