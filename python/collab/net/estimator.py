"""Bandwidth estimation from measured transfers (for per-request re-planning)."""
from __future__ import annotations

import math

from ..errors import InvalidArgument

__all__ = ["BandwidthEstimator"]


def _num(name, v, lo=None, lo_open=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
        raise InvalidArgument(f"{name} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v) or (lo is not None and (v < lo or (lo_open and v == lo))):
        raise InvalidArgument(f"{name} must be finite and {'>' if lo_open else '>='} {lo}, got {v!r}")
    return v


class BandwidthEstimator:
    """Exponentially weighted moving average of measured throughput.

    Each `update(nbytes, seconds, rtt_s)` forms a sample nbytes*8 / (seconds - rtt_s) bit/s
    (the RTT part of a transfer carries no bytes) and sets
        estimate <- alpha * sample + (1 - alpha) * estimate
    (the first sample initialises it unless `initial_bps` is given). Transfers shorter than
    `min_bytes` are ignored: a single packet says little about capacity. The round-trip time
    estimate is an EWMA of the rtt_s values passed in.

    mode="harmonic" instead reports the harmonic mean of the last `window` samples (robust to
    the short bursts that make one small transfer look fast; as used by MPC video players).
    """

    def __init__(self, alpha: float = 0.3, initial_bps: float | None = None, min_bytes: int = 0,
                 initial_rtt_s: float = 0.0, mode: str = "ewma", window: int = 5):
        if mode not in ("ewma", "harmonic"):
            raise InvalidArgument(f"mode must be 'ewma' or 'harmonic', got {mode!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise InvalidArgument(f"window must be a positive integer, got {window!r}")
        self.mode, self.window, self._recent = mode, window, []
        self.alpha = _num("alpha", alpha, 0.0, lo_open=True)
        if self.alpha > 1.0:
            raise InvalidArgument(f"alpha must be in (0, 1], got {alpha!r}")
        self.estimate_bps = None if initial_bps is None else _num("initial_bps", initial_bps, 0.0, lo_open=True)
        self.min_bytes = int(_num("min_bytes", min_bytes, 0.0))
        self.rtt_s = _num("initial_rtt_s", initial_rtt_s, 0.0)
        self.samples = 0

    def update(self, nbytes, seconds, rtt_s: float = 0.0) -> float | None:
        """Add one measured transfer; returns the new estimate (bit/s)."""
        nbytes = _num("nbytes", nbytes, 0.0)
        seconds = _num("seconds", seconds, 0.0, lo_open=True)
        rtt_s = _num("rtt_s", rtt_s, 0.0)
        if self.samples == 0 and rtt_s > 0:
            self.rtt_s = rtt_s
        elif rtt_s > 0:
            self.rtt_s = self.alpha * rtt_s + (1 - self.alpha) * self.rtt_s
        if nbytes < max(self.min_bytes, 1):
            return self.estimate_bps
        busy = seconds - rtt_s
        if busy <= 0:  # the whole time was round trip: the sample says only "fast"; cap it
            busy = max(seconds * 1e-3, 1e-9)
        sample = nbytes * 8.0 / busy
        if self.mode == "harmonic":
            self._recent = (self._recent + [sample])[-self.window:]
            self.estimate_bps = len(self._recent) / sum(1.0 / v for v in self._recent)
        elif self.estimate_bps is None:
            self.estimate_bps = sample
        else:
            self.estimate_bps = self.alpha * sample + (1 - self.alpha) * self.estimate_bps
        self.samples += 1
        return self.estimate_bps

    def __repr__(self):
        e = "none" if self.estimate_bps is None else f"{self.estimate_bps / 1e6:.3f} Mbit/s"
        how = f"alpha={self.alpha}" if self.mode == "ewma" else f"harmonic window={self.window}"
        return f"BandwidthEstimator({how}, estimate={e}, samples={self.samples})"
