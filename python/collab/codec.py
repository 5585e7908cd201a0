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
from ._tensors import DTYPE_NAMES, numpy_dtype, out_view_of, view_of
from ._validate import check_int, check_int_seq
from .errors import FrameError, InvalidArgument
from .reference.slicer import check_params

__all__ = ["encode", "decode", "predict_bits", "inspect", "FrameError", "INDEX_CODES", "DEFAULT_MAX_ELEMENTS",
           "DEFAULT_MAX_OUTPUT_BYTES"]

INDEX_CODES = {"csr": 0, "bitmap": 1, "delta_varint": 2, "delta_rice": 3}
_INDEX_NAMES = {v: k for k, v in INDEX_CODES.items()}
# decode() refuses frames whose tensor is larger than these unless told otherwise: a few
# bytes can describe a huge, almost empty tensor, and the output is allocated in full.
DEFAULT_MAX_ELEMENTS = 1 << 28
DEFAULT_MAX_OUTPUT_BYTES = _native.DEFAULT_MAX_OUTPUT_BYTES  # 256 MiB, the C API's default

_local = threading.local()


def _codec() -> _native.Codec:
    c = getattr(_local, "codec", None)
    if c is None:
        c = _local.codec = _native.Codec()
    return c


def _index_code(index_code) -> int:
    if index_code is None:
        return -1
    if isinstance(index_code, str) and index_code in INDEX_CODES:
        return INDEX_CODES[index_code]
    if isinstance(index_code, int) and not isinstance(index_code, bool) and index_code in _INDEX_NAMES:
        return index_code
    raise InvalidArgument(f"index_code must be None, one of {sorted(INDEX_CODES)} or 0..3, got {index_code!r}")


def encode(x, sparsity, *, lam=0.0, blocks=(1, 1), qbits=(8,), delta=0.0, seed=0, index_code=None,
           threads=None) -> bytes:
    """Compress a float32/float16/bfloat16 tensor (numpy, torch, or DLPack) into a frame.

    sparsity: fraction s in [0, 1) of elements dropped by ATKF (exactly floor((1-s) T) kept).
    lam: ATKF asymmetry in [0, 1). blocks: (M+, M-) magnitude blocks per sign (MS), each
    in [1, 64]. qbits: bits per block in [1, 16], largest magnitudes first; a short list
    repeats its last entry. delta: ABQ budget on the mean integer mismatch (Eq. 9), >= 0;
    0 keeps qbits as given. seed: tie-breaking seed in [0, 2**64). index_code: None
    (smallest) or one of INDEX_CODES. threads: native threads for this call (None =
    collab.get_num_threads()). Bad arguments raise collab.errors.InvalidArgument.
    CUDA tensors are encoded on their device; only the frame comes back to the host.
    """
    # One set of rules for the codec parameters: the reference's (the executable spec).
    sparsity, lam, blocks, qbits, delta, seed = check_params(sparsity, lam, blocks, qbits, delta, seed)
    code = _index_code(index_code)
    threads = 0 if threads is None else check_int("threads", threads, 0, 2**31 - 1)
    v = view_of(x)
    return _native.encode(_codec(), v.ptr, v.dtype, list(v.shape), v.device, v.device_id, sparsity, lam,
                          list(blocks), list(qbits), delta, seed, code, threads)


def _frame_bytes(buf) -> memoryview:
    """The frame as a C-contiguous byte view. The native parser reads len bytes forward
    from the start pointer, so a strided (e.g. reversed) view must never reach it."""
    if isinstance(buf, str):
        raise InvalidArgument("a frame must be bytes-like (bytes, bytearray, memoryview), got str")
    try:
        mv = memoryview(buf)
    except TypeError:
        raise InvalidArgument(f"a frame must be bytes-like (bytes, bytearray, memoryview), "
                              f"got {type(buf).__name__}") from None
    if not mv.c_contiguous:
        raise InvalidArgument("a frame must be a C-contiguous buffer (copy it with bytes(...) first)")
    return mv.cast("B") if (mv.format != "B" or mv.ndim != 1) else mv


def decode(buf, *, out=None, device=None, max_elements=DEFAULT_MAX_ELEMENTS,
           max_output_bytes=DEFAULT_MAX_OUTPUT_BYTES):
    """Decode a frame into a new numpy array (or into `out`, numpy or torch).

    out must be writable, C-contiguous, and have the frame's dtype and shape.
    device="cuda" (or "cuda:N") returns a torch tensor on that GPU, decoded there.
    max_elements / max_output_bytes: frames describing a larger tensor raise FrameError
    before anything is allocated (a few bytes can describe a huge, almost empty tensor).
    Raises FrameError for truncated, corrupted or malformed frames.
    """
    buf = _frame_bytes(buf)
    max_elements = check_int("max_elements", max_elements, 0)
    max_output_bytes = check_int("max_output_bytes", max_output_bytes, 0, 2**64 - 1)
    info = _native.frame_info(buf)
    shape, dtype_code = tuple(info["shape"]), info["dtype"]
    if info["numel"] > max_elements:
        raise FrameError(f"frame describes {info['numel']} elements, more than max_elements={max_elements}")
    nbytes = info["numel"] * numpy_dtype(dtype_code).itemsize
    if nbytes > max_output_bytes:
        raise FrameError(f"frame decodes to {nbytes} bytes, more than max_output_bytes={max_output_bytes}")
    if out is None and device is not None and str(device).startswith("cuda"):
        import torch

        tdt = {0: torch.float32, 1: torch.float16, 2: torch.bfloat16}[dtype_code]
        out = torch.empty(shape, dtype=tdt, device=device)
    if out is None:
        out = np.empty(shape, dtype=numpy_dtype(dtype_code))
    v = out_view_of(out, dtype_code, shape)
    _native.decode_into(_codec(), buf, v.ptr, v.dtype, list(v.shape), v.device, v.device_id, max_output_bytes)
    return out


def predict_bits(shape, sparsity, *, blocks=(1, 1), qbits=(8,)) -> int:
    """SLICER's conservative frame-size bound B^UB in bits (Sec. 3.3); frames never exceed it."""
    sparsity, _, blocks, qbits, _, _ = check_params(sparsity, 0.0, blocks, qbits, 0.0, 0)
    shape = check_int_seq("shape", shape, lo=0, hi=2**63 - 1, max_len=_native.MAX_NDIM)
    return int(_native.predict_bits(list(shape), sparsity, list(blocks), list(qbits)))


def inspect(buf) -> dict:
    """Describe a frame: parameters, bits chosen per block, index code, byte sizes."""
    info = _native.frame_info(_frame_bytes(buf))
    info["dtype"] = DTYPE_NAMES[info["dtype"]]
    info["index_code"] = _INDEX_NAMES[info["index_code"]]
    return info
