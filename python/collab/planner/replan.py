"""Per-request re-planning from measured transfers."""
from __future__ import annotations

from ..errors import InvalidArgument
from ..net import BandwidthEstimator, FixedRateLink
from .search import Plan, Planner

__all__ = ["Replanner"]


class Replanner:
    """Keeps an EWMA (or, mode="harmonic", a windowed harmonic mean) of measured bandwidth and
    re-plans each request on a fixed-rate link at
    that estimate (the client cannot see the future of the real link), optionally scaled down by
    `safety` in (0, 1] to leave headroom for the estimate's error.

        rp = Replanner(planner, initial_bps=20e6)
        plan = rp.plan()                   # before a request
        ...send plan.bits/8 bytes, measure...
        rp.observe(nbytes, seconds)        # after it (seconds includes the RTT)
    """

    def __init__(self, planner: Planner, *, alpha: float = 0.3, initial_bps: float | None = None,
                 min_bytes: int = 0, estimator: BandwidthEstimator | None = None, safety: float = 1.0,
                 mode: str = "ewma", window: int = 5):
        if not (0 < safety <= 1):
            raise InvalidArgument(f"safety must be in (0, 1], got {safety!r}")
        self.planner = planner
        self.safety = float(safety)
        self.estimator = estimator or BandwidthEstimator(alpha=alpha, initial_bps=initial_bps, min_bytes=min_bytes,
                                                         initial_rtt_s=planner.rtt_ms / 1000, mode=mode,
                                                         window=window)
        if self.estimator.estimate_bps is None and initial_bps is None:
            raise InvalidArgument("Replanner needs initial_bps (or an estimator with an estimate) to plan "
                                  "before the first measurement")
        self.history = []

    def current_link(self) -> FixedRateLink:
        """A fixed-rate link at safety x the estimate (safety < 1 leaves headroom)."""
        bps = self.estimator.estimate_bps * self.safety
        return FixedRateLink(bps, name=f"estimate {bps / 1e6:.2f} Mbit/s")

    def plan(self, start_ms: float = 0.0) -> Plan:
        p = self.planner.with_link(self.current_link(), rtt_ms=self.estimator.rtt_s * 1000).search(start_ms)
        self.history.append((start_ms, self.estimator.estimate_bps, p))
        return p

    def observe_timings(self, nbytes, timings: dict):
        """Feed a transport reply's timings (collab.Client: seconds under "transfer")."""
        if not isinstance(timings, dict) or "transfer" not in timings:
            raise InvalidArgument("timings must be a dict with a 'transfer' entry (seconds)")
        return self.observe(nbytes, timings["transfer"])

    def observe(self, nbytes, seconds, rtt_s=None):
        """Feed one measured transfer (seconds from send to acknowledgement, RTT included)."""
        rtt = self.estimator.rtt_s if rtt_s is None else rtt_s
        return self.estimator.update(nbytes, seconds, rtt_s=rtt)
