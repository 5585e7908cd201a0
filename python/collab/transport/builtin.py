"""Built-in tasks: enough to test and smoke-check a server without any model.

    echo         infer: returns the payload and meta unchanged (meta gets "echo.bytes"); with meta
                 "echo.reply_bytes" = N it returns N zero bytes instead (for one-way transfer
                 measurements; N <= 64 MiB).
                 session: answers every message with ("echo", payload, meta).
    codec-stats  infer: decodes a collab codec frame, returns JSON statistics of the tensor
                 (shape, dtype, nonzeros, min/max/mean, L2 norm, frame header); a malformed frame
                 is an INVALID_ARGUMENT. session: the same per message, plus running totals.
                 Decoded bytes are bounded per request (max_decoded_bytes, default 64 MiB) and
                 per server (budget_bytes, default 256 MiB; over it: RESOURCE_EXHAUSTED), both
                 checked from the frame header before decoding (`collab serve
                 --max-decoded-mb / --decode-budget-mb`).

`collab serve --task echo --task codec-stats` hosts them; `--task NAME=module:factory` hosts
your own.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np

from ..errors import InvalidArgument
from .handlers import TIMING_DECODE, ResourceBusy, TaskHandler, TaskSession

DEFAULT_MAX_DECODED_BYTES = 64 << 20     # one request's decoded tensor
DEFAULT_DECODE_BUDGET_BYTES = 256 << 20  # all decoded tensors of one server at once


class EchoHandler(TaskHandler):
    name = "echo"

    MAX_REPLY = 64 << 20

    def infer(self, payload, meta):
        out = dict(meta)
        out["echo.bytes"] = str(len(payload))
        n = out.pop("echo.reply_bytes", None)
        if n is not None:
            try:
                n = int(n)
            except ValueError:
                raise InvalidArgument(f"echo.reply_bytes must be an integer, got {n!r}") from None
            if not 0 <= n <= self.MAX_REPLY:
                raise InvalidArgument(f"echo.reply_bytes must be in [0, {self.MAX_REPLY}], got {n}")
            return bytes(n), out
        return payload, out

    def open_session(self, meta):
        return _EchoSession()


class _EchoSession(TaskSession):
    def __init__(self):
        self.closed = False

    def on_message(self, kind, payload, meta):
        return [("echo", payload, dict(meta))]

    def close(self):
        self.closed = True


class DecodeBudget:
    """Bytes of decoded tensors a server may hold at once, shared by every request and session
    of a task. reserve(n) refuses (ResourceBusy -> RESOURCE_EXHAUSTED) when n more bytes would
    exceed the budget; release(n) gives them back. Thread-safe."""

    def __init__(self, limit_bytes: int):
        self.limit = int(limit_bytes)
        self.used = 0
        self.peak = 0
        self.refused = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> None:
        with self._lock:
            if self.used + n > self.limit:
                self.refused += 1
                raise ResourceBusy(f"server decode budget full: {self.used} of {self.limit} bytes in use, this frame "
                                   f"needs {n}; retry later")
            self.used += n
            self.peak = max(self.peak, self.used)

    def release(self, n: int) -> None:
        with self._lock:
            self.used -= n


def _moments(x, chunk=1 << 20):
    """(nonzeros, min, max, sum, sum of squares, finite) in float64, chunk by chunk: no full-size
    float64 copy of the tensor."""
    flat = x.reshape(-1)
    nz, lo, hi, sm, sq, finite = 0, np.inf, -np.inf, 0.0, 0.0, True
    for i in range(0, flat.size, chunk):
        c = flat[i:i + chunk].astype(np.float64)
        nz += int(np.count_nonzero(c))
        lo, hi = min(lo, float(c.min())), max(hi, float(c.max()))
        sm += float(c.sum())
        sq += float(np.dot(c, c))
        finite = finite and bool(np.isfinite(c).all())
    return nz, lo, hi, sm, sq, finite


def decoded_nbytes(frame: bytes) -> int:
    """Bytes the decoded tensor of `frame` will take, from its header alone (nothing decoded;
    FrameError for a malformed header)."""
    from .. import codec
    info = codec.inspect(frame)
    return int(info["numel"]) * np.dtype(info["dtype"]).itemsize


def tensor_stats(frame: bytes, max_elements: int):
    """(statistics dict, decode seconds) of a codec frame. The decoded tensor is dropped before
    this returns, also when decoding fails (the error carries no reference to the buffer)."""
    from .. import codec
    t0 = time.perf_counter()
    failure = None
    try:
        x = codec.decode(frame, max_elements=max_elements)
    except ValueError as e:  # re-raised below, outside this block: its traceback (and the
        failure = (type(e), str(e))  # partially decoded output it references) is freed now
    if failure is not None:
        raise failure[0](failure[1])
    dec = time.perf_counter() - t0
    info = codec.inspect(frame)
    n = int(x.size)
    nz, lo, hi, sm, sq, finite = _moments(x) if n else (0, 0.0, 0.0, 0.0, 0.0, True)
    stats = {
        "shape": list(x.shape), "dtype": str(x.dtype), "elements": n, "nonzeros": nz, "frame_bytes": len(frame),
        "min": lo, "max": hi, "mean": sm / n if n else 0.0, "l2": float(np.sqrt(sq)), "finite": finite,
        "header": {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))},
    }
    return stats, dec


class CodecStatsHandler(TaskHandler):
    """Decodes collab codec frames. A few bytes can describe a huge tensor, so the decoded size
    is read from the frame header first and bounded twice before anything is allocated:
    `max_decoded_bytes` per request and `budget_bytes` for all requests and sessions of this
    server at once (over either: RESOURCE_EXHAUSTED / INVALID_ARGUMENT, nothing allocated).
    Sessions keep only running totals, never a decoded tensor."""

    name = "codec-stats"

    def __init__(self, max_elements: int = 1 << 24, max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
                 budget_bytes: int = DEFAULT_DECODE_BUDGET_BYTES):
        for label, v in (("max_elements", max_elements), ("max_decoded_bytes", max_decoded_bytes),
                         ("budget_bytes", budget_bytes)):
            # plain local checks; collab's shared numeric validator replaces them when it lands
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 40:
                raise InvalidArgument(f"{label} must be an integer in [1, 2**40], got {v!r}")
        self.max_elements = max_elements
        self.max_decoded_bytes = max_decoded_bytes
        self.budget = DecodeBudget(budget_bytes)

    def stats(self, payload):
        n = decoded_nbytes(payload)  # header only: refuse before allocating
        if n > self.max_decoded_bytes:
            raise InvalidArgument(f"frame decodes to {n} bytes, over this task's {self.max_decoded_bytes}-byte "
                                  "limit per request")
        self.budget.reserve(n)
        try:
            return tensor_stats(payload, self.max_elements)
        finally:
            self.budget.release(n)

    def infer(self, payload, meta):
        stats, dec = self.stats(payload)
        return json.dumps(stats).encode(), {"content-type": "application/json", TIMING_DECODE: repr(dec)}

    def open_session(self, meta):
        return _StatsSession(self)


class _StatsSession(TaskSession):
    def __init__(self, handler: CodecStatsHandler):
        self.handler = handler
        self.count = 0
        self.total_elements = 0
        self._lock = threading.Lock()

    def on_message(self, kind, payload, meta):
        if kind not in ("frame", "reset"):
            raise InvalidArgument(f"codec-stats session accepts kinds 'frame' and 'reset', got {kind!r}")
        with self._lock:
            if kind == "reset":
                self.count = self.total_elements = 0
                return [("reset", b"", {})]
            stats, dec = self.handler.stats(payload)
            self.count += 1
            self.total_elements += stats["elements"]
            stats.update(count=self.count, total_elements=self.total_elements)
        return [("stats", json.dumps(stats).encode(), {"content-type": "application/json", TIMING_DECODE: repr(dec)})]

    def nbytes(self):
        return 0  # only counters are kept between messages


BUILTIN = {"echo": EchoHandler, "codec-stats": CodecStatsHandler}


__all__ = ["EchoHandler", "CodecStatsHandler", "BUILTIN", "tensor_stats", "DecodeBudget", "decoded_nbytes"]
