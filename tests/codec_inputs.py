"""Input generators for the codec tests: the shapes and values the codec must handle."""
import struct
import zlib

import ml_dtypes
import numpy as np

DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16]


def make(rng, kind: str, shape, dtype=np.float32) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if kind == "normal":
        x = rng.standard_normal(n)
    elif kind == "ties":  # few distinct magnitudes: ties at every threshold
        x = rng.integers(-3, 4, n) * 0.5
    elif kind == "zeros":
        x = np.zeros(n)
    elif kind == "constant":
        x = np.full(n, -1.25)
    elif kind == "positive":
        x = np.abs(rng.standard_normal(n)) + 0.01
    elif kind == "sparse":  # mostly exact zeros
        x = rng.standard_normal(n) * (rng.random(n) < 0.1)
    elif kind == "wide":  # magnitudes from subnormal to huge
        finfo = np.finfo(np.float16) if dtype == np.float16 else None
        lo, hi = (-7, 4) if finfo is not None else (-44, 37)
        x = rng.choice([-1, 1], n) * 10.0 ** rng.uniform(lo, hi, n)
    elif kind == "activations":  # heavy-tailed, like LLM hidden states with outliers
        x = rng.standard_t(3, n)
        if n:
            x[rng.integers(0, n, max(1, n // 500))] *= 50
    else:
        raise ValueError(kind)
    return np.asarray(x, dtype=np.float64).astype(dtype).reshape(shape)


KINDS = ["normal", "ties", "zeros", "constant", "positive", "sparse", "wide", "activations"]


def refresh_crc(body: bytes) -> bytes:
    """A hostile frame: arbitrary bytes with a valid checksum, so parsing goes past the CRC."""
    return body + struct.pack("<I", zlib.crc32(body))
