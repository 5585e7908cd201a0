"""Built-in tasks: enough to test and smoke-check a server without any model.

    echo         infer: returns the payload and meta unchanged (meta gets "echo.bytes"); with meta
                 "echo.reply_bytes" = N it returns N zero bytes instead (for one-way transfer
                 measurements; N <= 64 MiB).
                 session: answers every message with ("echo", payload, meta).
    codec-stats  infer: decodes a collab codec frame, returns JSON statistics of the tensor
                 (shape, dtype, nonzeros, min/max/mean, L2 norm, frame header); a malformed frame
                 is an INVALID_ARGUMENT. session: the same per message, plus running totals;
                 `nbytes()` reports the decoded bytes it keeps (the last tensor).

`collab serve --task echo --task codec-stats` hosts them; `--task NAME=module:factory` hosts
your own.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np

from ..errors import InvalidArgument
from .handlers import TIMING_DECODE, TaskHandler, TaskSession


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


def tensor_stats(frame: bytes, max_elements: int):
    from .. import codec
    t0 = time.perf_counter()
    x = codec.decode(frame, max_elements=max_elements)
    dec = time.perf_counter() - t0
    info = codec.inspect(frame)
    xf = x.astype(np.float64, copy=False).ravel()
    finite = bool(np.isfinite(xf).all())
    stats = {
        "shape": list(x.shape), "dtype": str(x.dtype), "elements": int(x.size),
        "nonzeros": int(np.count_nonzero(xf)), "frame_bytes": len(frame),
        "min": float(xf.min()) if xf.size else 0.0, "max": float(xf.max()) if xf.size else 0.0,
        "mean": float(xf.mean()) if xf.size else 0.0, "l2": float(np.sqrt(np.dot(xf, xf))) if xf.size else 0.0,
        "finite": finite, "header": {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))},
    }
    return x, stats, dec


class CodecStatsHandler(TaskHandler):
    """Decodes collab codec frames. `max_elements` bounds the decoded size (a few bytes can
    describe a huge tensor)."""

    name = "codec-stats"

    def __init__(self, max_elements: int = 1 << 24):
        self.max_elements = int(max_elements)

    def infer(self, payload, meta):
        _, stats, dec = tensor_stats(payload, self.max_elements)
        return json.dumps(stats).encode(), {"content-type": "application/json", TIMING_DECODE: repr(dec)}

    def open_session(self, meta):
        return _StatsSession(self.max_elements)


class _StatsSession(TaskSession):
    def __init__(self, max_elements):
        self.max_elements = max_elements
        self.count = 0
        self.total_elements = 0
        self._last = None
        self._lock = threading.Lock()

    def on_message(self, kind, payload, meta):
        if kind not in ("frame", "reset"):
            raise InvalidArgument(f"codec-stats session accepts kinds 'frame' and 'reset', got {kind!r}")
        with self._lock:
            if kind == "reset":
                self.count = self.total_elements = 0
                self._last = None
                return [("reset", b"", {})]
            x, stats, dec = tensor_stats(payload, self.max_elements)
            self._last = x
            self.count += 1
            self.total_elements += x.size
            stats.update(count=self.count, total_elements=self.total_elements)
        return [("stats", json.dumps(stats).encode(), {"content-type": "application/json", TIMING_DECODE: repr(dec)})]

    def nbytes(self):
        last = self._last
        return 0 if last is None else int(last.nbytes)

    def close(self):
        self._last = None


BUILTIN = {"echo": EchoHandler, "codec-stats": CodecStatsHandler}


__all__ = ["EchoHandler", "CodecStatsHandler", "BUILTIN", "tensor_stats"]
