"""Mahimahi bandwidth traces and fixed-rate links.

A mahimahi trace file has one integer per line: the time in milliseconds (from the start of
the trace) of one opportunity to deliver a packet of up to `PACKET_BYTES` (1500) bytes. Several
opportunities in the same millisecond repeat the timestamp. Timestamps never decrease and the
last one is the trace period: when the trace ends, mahimahi starts it again shifted by the last
timestamp (opportunity i of loop q happens at ts[i] + q * ts[-1]). A file containing just "1"
is a 12 Mbit/s fixed link. This module follows those rules (mahimahi's LinkQueue) exactly,
including when a packet may leave: mahimahi works in whole milliseconds and, before queueing a
packet that arrives at `now`, burns every opportunity at or before `now`; so bytes handed to the
link at time t (ms, possibly fractional) use opportunities strictly after floor(t).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .._validate import check_float
from ..errors import InvalidArgument

__all__ = ["PACKET_BYTES", "TraceFormatError", "Trace", "FixedRateLink", "load_trace", "parse_trace",
           "parse_link"]

PACKET_BYTES = 1500
# A trace file larger than this is refused (a 10-minute 200 Mbit/s trace is ~ 100 MB of text).
MAX_TRACE_BYTES = 1 << 30


class TraceFormatError(InvalidArgument):
    """A trace file or string that is not a valid mahimahi trace."""


def _check_nbytes(nbytes):
    a = np.asarray(nbytes)
    if a.dtype.kind not in "iuf" or a.dtype == np.bool_:
        raise InvalidArgument(f"byte counts must be numbers, got {nbytes!r}")
    if a.size and (not np.all(np.isfinite(a)) or np.any(a < 0)):
        raise InvalidArgument("byte counts must be finite and >= 0")
    return a


def _check_times(start_ms):
    try:
        a = np.asarray(start_ms, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidArgument(f"start times must be numbers (ms), got {start_ms!r}") from None
    if a.size and (not np.all(np.isfinite(a)) or np.any(a < 0)):
        raise InvalidArgument("start times must be finite and >= 0 ms")
    return a


@dataclass(frozen=True)
class Trace:
    """A looping mahimahi trace: `timestamps` (int64 ms, nondecreasing, last > 0)."""

    timestamps: np.ndarray
    name: str = "trace"
    packet_bytes: int = PACKET_BYTES
    _cum: np.ndarray = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        raw = np.asarray(self.timestamps)
        if raw.dtype.kind not in "iuf" or (raw.dtype.kind == "f" and (
                not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)))):
            raise TraceFormatError(f"{self.name}: timestamps must be integers (ms)")
        ts = np.ascontiguousarray(raw, dtype=np.int64)
        if ts.ndim != 1 or ts.size == 0:
            raise TraceFormatError(f"{self.name}: a trace needs at least one timestamp")
        if ts[0] < 0:
            raise TraceFormatError(f"{self.name}: timestamps must be >= 0")
        if ts.size > 1 and np.any(np.diff(ts) < 0):
            i = int(np.flatnonzero(np.diff(ts) < 0)[0]) + 1
            raise TraceFormatError(f"{self.name}: timestamps must be nondecreasing (entry {i + 1}: "
                                   f"{ts[i]} after {ts[i - 1]})")
        if ts[-1] <= 0:
            raise TraceFormatError(f"{self.name}: the trace must last a nonzero time (last timestamp > 0)")
        if isinstance(self.packet_bytes, bool) or int(self.packet_bytes) <= 0:
            raise InvalidArgument("packet_bytes must be a positive integer")
        ts.setflags(write=False)
        object.__setattr__(self, "timestamps", ts)

    # -- basic properties -------------------------------------------------------------------
    @property
    def period_ms(self) -> int:
        return int(self.timestamps[-1])

    @property
    def opportunities(self) -> int:
        """Delivery opportunities per period."""
        return int(self.timestamps.size)

    def mean_bps(self) -> float:
        """Average capacity over one period, bits per second."""
        return self.opportunities * self.packet_bytes * 8 * 1000.0 / self.period_ms

    # -- opportunity arithmetic ---------------------------------------------------------------
    def _time_of(self, g):
        """Time (ms) of global opportunity index g (int64 array): loop g // n, entry g % n."""
        n = self.opportunities
        return self.timestamps[g % n] + (g // n) * self.period_ms

    def _first_at_or_after(self, t):
        """Global index of the first opportunity at time >= t (t: float64 array, >= 0)."""
        n, p = self.opportunities, self.period_ms
        # Loop q holds times in [ts[0] + qP, (q+1)P]; the first usable one is in loop
        # q = ceil(t / P) - 1 (or 0), where t - qP lies in (0, P], so searchsorted never overflows.
        q = np.maximum(np.ceil(t / p) - 1, 0).astype(np.int64)
        r = t - q * p
        i = np.searchsorted(self.timestamps, r, side="left")
        return q * n + i

    def _first_usable(self, t):
        """Global index of the first opportunity bytes handed over at t may use (> floor(t))."""
        return self._first_at_or_after(np.floor(t) + 1.0)

    def delivery_times(self, nbytes, start_ms=0.0):
        """Time (ms, absolute) at which the last byte of a transfer is delivered on the link.

        The transfer needs ceil(nbytes / packet_bytes) opportunities strictly after
        floor(start_ms) (as mahimahi); it ends at the time of the last one (start_ms itself for
        0 bytes). Vectorised.
        """
        b = _check_nbytes(nbytes)
        t = _check_times(start_ms)
        b, t = np.broadcast_arrays(b, t)
        packets = np.ceil(b / self.packet_bytes).astype(np.int64)
        g = self._first_usable(t) + packets - 1
        end = self._time_of(np.maximum(g, 0)).astype(np.float64)
        out = np.where(packets > 0, end, t)
        return out if out.ndim else float(out)

    def fifo_delivery_times(self, nbytes, start_ms):
        """Delivery times of transfers that share the link one after another (FIFO): transfer k
        may only use opportunities after floor(start_ms[k]) that earlier transfers left unused.
        start_ms must be nondecreasing. Returns an array like nbytes."""
        b = np.atleast_1d(_check_nbytes(nbytes))
        t = np.atleast_1d(_check_times(start_ms))
        b, t = np.broadcast_arrays(b, t)
        if t.size > 1 and np.any(np.diff(t) < 0):
            raise InvalidArgument("start times of FIFO transfers must be nondecreasing")
        packets = np.ceil(b / self.packet_bytes).astype(np.int64)
        first = self._first_usable(t.astype(np.float64))
        out = np.empty(b.shape, dtype=np.float64)
        free = np.int64(0)  # first opportunity not used by earlier transfers
        for k in range(b.size):
            if packets[k] == 0:
                out[k] = t[k]
                continue
            g0 = max(first[k], free)
            g = g0 + packets[k] - 1
            out[k] = self._time_of(g)
            free = g + 1
        return out

    def transfer_time(self, nbytes, start_ms=0.0, rtt_ms=0.0):
        """Milliseconds from start_ms until the sender sees the transfer complete: the
        time to drain nbytes through the trace plus one round trip (request/ack delay)."""
        rtt = check_float("rtt_ms", rtt_ms, 0)
        out = np.asarray(self.delivery_times(nbytes, start_ms)) - _check_times(start_ms) + rtt
        return out if out.ndim else float(out)

    # -- bandwidth views ------------------------------------------------------------------------
    def windowed_bps(self, window_ms=1000, duration_ms=None):
        """Capacity in consecutive windows of window_ms, bits per second (looping the trace
        up to duration_ms, default one period). Returns (window start times ms, bps)."""
        if isinstance(window_ms, bool) or not isinstance(window_ms, (int, float, np.integer, np.floating)) \
                or not math.isfinite(window_ms) or window_ms <= 0:
            raise InvalidArgument(f"window_ms must be a positive number, got {window_ms!r}")
        duration = float(self.period_ms if duration_ms is None else duration_ms)
        if not math.isfinite(duration) or duration <= 0:
            raise InvalidArgument("duration_ms must be positive")
        nwin = int(math.ceil(duration / window_ms))
        loops = int(math.ceil(nwin * window_ms / self.period_ms)) + 1  # cover the last whole window
        times = (self.timestamps[None, :] + self.period_ms * np.arange(loops, dtype=np.int64)[:, None]).ravel()
        # Opportunity at exactly k*P exists twice (end of loop k-1, start of loop k when ts[0] == 0):
        # both are real opportunities, as in mahimahi.
        times = times[times < nwin * window_ms]
        counts = np.bincount((times // window_ms).astype(np.int64), minlength=nwin)[:nwin]
        starts = np.arange(nwin, dtype=np.float64) * window_ms
        return starts, counts * self.packet_bytes * 8 * 1000.0 / window_ms

    def bps_between(self, t0_ms, t1_ms):
        """Average capacity in [t0, t1), bits per second."""
        if not (math.isfinite(t0_ms) and math.isfinite(t1_ms)) or t0_ms < 0 or t1_ms <= t0_ms:
            raise InvalidArgument("need 0 <= t0_ms < t1_ms")
        count = self._first_at_or_after(np.float64(t1_ms)) - self._first_at_or_after(np.float64(t0_ms))
        return float(count) * self.packet_bytes * 8 * 1000.0 / (t1_ms - t0_ms)

    def to_text(self) -> str:
        return "\n".join(str(int(v)) for v in self.timestamps) + "\n"


@dataclass(frozen=True)
class FixedRateLink:
    """A constant-rate link of `bps` bits per second (no packetisation)."""

    bps: float
    name: str = "fixed"

    def __post_init__(self):
        if isinstance(self.bps, bool) or not isinstance(self.bps, (int, float, np.integer, np.floating)) \
                or not math.isfinite(self.bps) or self.bps <= 0:
            raise InvalidArgument(f"a fixed-rate link needs a positive finite rate in bit/s, got {self.bps!r}")

    def mean_bps(self) -> float:
        return float(self.bps)

    def delivery_times(self, nbytes, start_ms=0.0):
        b = _check_nbytes(nbytes)
        t = _check_times(start_ms)
        out = t + b * 8 * 1000.0 / self.bps
        return out if np.ndim(out) else float(out)

    def transfer_time(self, nbytes, start_ms=0.0, rtt_ms=0.0):
        rtt = check_float("rtt_ms", rtt_ms, 0)
        b, t = np.broadcast_arrays(_check_nbytes(nbytes), _check_times(start_ms))
        out = b * 8 * 1000.0 / self.bps + rtt
        return out if out.ndim else float(out)

    def windowed_bps(self, window_ms=1000, duration_ms=1000):
        nwin = int(math.ceil(float(duration_ms) / window_ms))
        return np.arange(nwin, dtype=np.float64) * window_ms, np.full(nwin, float(self.bps))

    def bps_between(self, t0_ms, t1_ms):
        return float(self.bps)


def parse_trace(text: str, name: str = "trace", packet_bytes: int = PACKET_BYTES) -> Trace:
    """Parse mahimahi trace text. Raises TraceFormatError naming the first bad line."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as e:
            raise TraceFormatError(f"{name}: not an ASCII text file ({e})") from None
    lines = text.splitlines()
    # A final newline (or trailing blank lines) is fine; blank lines in between are not (mahimahi refuses them).
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise TraceFormatError(f"{name}: empty trace (no timestamps)")
    stripped = [ln.strip() for ln in lines]
    ok = np.fromiter((s.isdigit() and s.isascii() for s in stripped), dtype=bool, count=len(stripped))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        bad = lines[i] if len(lines[i]) <= 40 else lines[i][:40] + "..."
        raise TraceFormatError(f"{name}: line {i + 1} is not a nonnegative integer millisecond timestamp: {bad!r}")
    if any(len(s) > 15 for s in stripped):
        raise TraceFormatError(f"{name}: timestamp too large")
    ts = np.array(stripped, dtype=np.int64)
    d = np.diff(ts)
    if d.size and np.any(d < 0):
        i = int(np.flatnonzero(d < 0)[0]) + 1
        raise TraceFormatError(f"{name}: line {i + 1}: timestamp {ts[i]} is smaller than the previous one "
                               f"({ts[i - 1]}); timestamps must be nondecreasing")
    if ts[-1] <= 0:
        raise TraceFormatError(f"{name}: the trace must last a nonzero time (last timestamp > 0)")
    return Trace(ts, name=name, packet_bytes=packet_bytes)


def load_trace(path, packet_bytes: int = PACKET_BYTES) -> Trace:
    """Load a mahimahi trace file (any user file; validated)."""
    p = os.fspath(path)
    try:
        size = os.path.getsize(p)
    except OSError as e:
        raise TraceFormatError(f"cannot read trace file {p!r}: {e.strerror}") from None
    if size > MAX_TRACE_BYTES:
        raise TraceFormatError(f"{p}: trace file too large ({size} bytes)")
    with open(p, "rb") as f:
        data = f.read()
    return parse_trace(data, name=os.path.basename(p), packet_bytes=packet_bytes)


def _float(s, what):
    try:
        v = float(s)
    except ValueError:
        raise InvalidArgument(f"{what} must be a number, got {s!r}") from None
    if not math.isfinite(v):
        raise InvalidArgument(f"{what} must be finite, got {s!r}")
    return v


def parse_link(spec: str):
    """A link from a short spec: "fixed:MBPS" (Mbit/s), "trace:PATH", a path to a trace file, or
    "synthetic:MBPS[,SEED]" (a generated 60 s cellular-like trace, see collab.net.synthetic).
    (The epsilon-outage wireless link lives in collab.planner.outage: "outage:W_MHZ,SNR_DB,EPS".)"""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgument(f"link spec must be a non-empty string, got {spec!r}")
    kind, _, rest = spec.partition(":")
    if kind == "fixed" and rest:
        mbps = _float(rest, "fixed-link rate (Mbit/s)")
        return FixedRateLink(mbps * 1e6, name=f"fixed {mbps:g} Mbit/s")
    if kind == "trace" and rest:
        return load_trace(rest)
    if kind == "synthetic" and rest:
        from .synthetic import synthetic_trace

        mbps, _, seed = rest.partition(",")
        return synthetic_trace(60.0, _float(mbps, "synthetic-link rate (Mbit/s)"),
                               seed=int(_float(seed or "0", "synthetic-link seed")))
    if os.path.exists(spec):
        return load_trace(spec)
    raise InvalidArgument(f"unknown link spec {spec!r}: use fixed:MBPS, trace:PATH, synthetic:MBPS[,SEED] or outage:W_MHZ,SNR_DB,EPS")
