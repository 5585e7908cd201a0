"""Normalising user tensors (numpy, torch, DLPack producers) into raw native views.

torch stays optional: it is imported only if the caller passes a torch tensor. ml_dtypes
(numpy's bfloat16) is imported only when a bfloat16 tensor or frame is met: loading it takes
seconds, and float32/float16 users never need it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import InvalidArgument

DTYPE_F32, DTYPE_F16, DTYPE_BF16 = 0, 1, 2
DTYPE_NAMES = {DTYPE_F32: "float32", DTYPE_F16: "float16", DTYPE_BF16: "bfloat16"}
DEVICE_CPU, DEVICE_CUDA = 0, 1
_F32, _F16 = np.dtype(np.float32), np.dtype(np.float16)


def bfloat16() -> np.dtype:
    """numpy's bfloat16 dtype (ml_dtypes, imported on first use)."""
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def dtype_code(dtype) -> Optional[int]:
    """The native dtype code of a numpy dtype, or None when it is not supported."""
    dtype = np.dtype(dtype)
    if dtype == _F32:
        return DTYPE_F32
    if dtype == _F16:
        return DTYPE_F16
    # an array of this dtype exists, so whatever defines it is loaded already: no import cost
    if dtype.name == "bfloat16" and dtype == bfloat16():
        return DTYPE_BF16
    return None


def numpy_dtype(code: int) -> np.dtype:
    """The numpy dtype of a native dtype code."""
    if code == DTYPE_F32:
        return _F32
    if code == DTYPE_F16:
        return _F16
    if code == DTYPE_BF16:
        return bfloat16()
    raise InvalidArgument(f"unknown dtype code {code!r}")


@dataclass
class View:
    """A contiguous tensor the native core can read: keeps `owner` alive while used."""
    ptr: int
    dtype: int
    shape: tuple
    device: int
    device_id: int
    owner: object


def _torch_dtype_code(t) -> int:
    import torch

    codes = {torch.float32: DTYPE_F32, torch.float16: DTYPE_F16, torch.bfloat16: DTYPE_BF16}
    if t.dtype not in codes:
        raise InvalidArgument(f"dtype must be float32, float16 or bfloat16, got {t.dtype}")
    return codes[t.dtype]


def is_torch_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def view_of(x) -> View:
    """Zero-copy view of x when it is already contiguous with a supported dtype."""
    if is_torch_tensor(x):
        code = _torch_dtype_code(x)
        t = x.detach()
        if not t.is_contiguous():
            t = t.contiguous()
        if t.device.type == "cuda":
            return View(t.data_ptr(), code, tuple(t.shape), DEVICE_CUDA, t.device.index or 0, t)
        if t.device.type != "cpu":
            raise InvalidArgument(f"unsupported device {t.device}")
        return View(t.data_ptr(), code, tuple(t.shape), DEVICE_CPU, 0, t)
    if not isinstance(x, np.ndarray) and hasattr(x, "__dlpack__"):
        x = np.from_dlpack(x)
    arr = np.asarray(x)
    code = dtype_code(arr.dtype)
    if code is None:
        raise InvalidArgument(f"dtype must be float32, float16 or bfloat16, got {arr.dtype}")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr).reshape(arr.shape)  # (ascontiguousarray makes 0-d arrays 1-d)
    return View(arr.ctypes.data, code, arr.shape, DEVICE_CPU, 0, arr)


def out_view_of(out, dtype: int, shape: tuple) -> View:
    """A view the native core may write into: out itself, never a copy.

    out must be a writable, C-contiguous numpy array or torch tensor with exactly this
    dtype code and shape; anything else raises InvalidArgument (a copy would silently
    drop the result, and a read-only buffer must never be written).
    """
    want = numpy_dtype(dtype).name
    if is_torch_tensor(out):
        ok = _torch_dtype_code(out) == dtype and tuple(out.shape) == tuple(shape) and out.is_contiguous()
        if not ok:
            raise InvalidArgument(f"out must be a contiguous {want} tensor of shape {tuple(shape)}, "
                                  f"got {out.dtype} {tuple(out.shape)}")
        dev = DEVICE_CUDA if out.device.type == "cuda" else DEVICE_CPU
        if out.device.type not in ("cpu", "cuda"):
            raise InvalidArgument(f"unsupported device {out.device}")
        return View(out.data_ptr(), dtype, tuple(out.shape), dev, out.device.index or 0, out)
    if not isinstance(out, np.ndarray):
        raise InvalidArgument(f"out must be a numpy array or torch tensor, got {type(out).__name__}")
    if out.dtype != numpy_dtype(dtype) or out.shape != tuple(shape):
        raise InvalidArgument(f"out must have dtype {want} and shape {tuple(shape)}, got {out.dtype} {out.shape}")
    if not out.flags.c_contiguous:
        raise InvalidArgument("out must be C-contiguous")
    if not out.flags.writeable:
        raise InvalidArgument("out is read-only")
    return View(out.ctypes.data, dtype, out.shape, DEVICE_CPU, 0, out)
