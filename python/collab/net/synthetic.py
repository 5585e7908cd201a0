"""Synthetic cellular-like mahimahi traces, generated from a seed: so every documented command
(the shaping benchmark, the planner examples) runs on a fresh clone without the recorded traces.

The capacity follows a log-normal AR(1) process in steps of `step_ms` (LTE-like fluctuation
around `mean_mbps`), with rare outages (no delivery opportunity for 100-600 ms). Opportunities
(one 1500-byte packet each) are placed every millisecond the accumulated capacity allows, the
way mahimahi traces are recorded. Deterministic for a given seed.

    tr = synthetic_trace(duration_s=30, mean_mbps=8, seed=1)    # a collab.net.Trace
    write_trace("synthetic.up", tr)                             # a mahimahi file
"""
from __future__ import annotations

import os

import numpy as np

from .._validate import check_float
from .trace import PACKET_BYTES, Trace

__all__ = ["synthetic_trace", "write_trace"]


def synthetic_trace(duration_s: float = 30.0, mean_mbps: float = 8.0, *, seed: int = 0, step_ms: int = 100,
                    variability: float = 0.5, outage_rate_per_min: float = 2.0, name: str = "") -> Trace:
    """A looping Trace of `duration_s` seconds whose long-run mean is close to mean_mbps.
    variability: standard deviation of the log capacity (0 = fixed rate)."""
    check_float("duration_s", duration_s, 1.0, 3600.0)
    check_float("mean_mbps", mean_mbps, 0.1, 10_000.0)
    check_float("step_ms", step_ms, 1, 60_000)
    check_float("variability", variability, 0.0, 3.0)
    check_float("outage_rate_per_min", outage_rate_per_min, 0.0, 60.0)
    check_float("seed", seed, 0, 2**63 - 1)
    rng = np.random.default_rng(int(seed))
    n_ms = int(duration_s * 1000)
    steps = -(-n_ms // int(step_ms))
    rho = 0.9  # correlation of consecutive steps: capacity drifts, it does not flicker
    z = np.empty(steps)
    z[0] = rng.standard_normal()
    eps = rng.standard_normal(steps)
    for i in range(1, steps):
        z[i] = rho * z[i - 1] + np.sqrt(1 - rho * rho) * eps[i]
    # log-normal with mean exactly mean_mbps (before outages)
    mbps = mean_mbps * np.exp(variability * z - variability ** 2 / 2)
    per_ms = np.repeat(mbps, int(step_ms))[:n_ms] * 1e6 / 8 / 1000 / PACKET_BYTES  # packets per ms
    n_out = rng.poisson(outage_rate_per_min * duration_s / 60.0)
    for _ in range(n_out):
        t = int(rng.integers(0, n_ms))
        per_ms[t:t + int(rng.integers(100, 600))] = 0.0
    credit = np.cumsum(per_ms)
    counts = np.diff(np.floor(credit).astype(np.int64), prepend=0)
    ts = np.repeat(np.arange(1, n_ms + 1, dtype=np.int64), counts)
    if ts.size == 0 or ts[-1] != n_ms:
        ts = np.append(ts, n_ms)  # the period is the whole duration
    return Trace(ts, name=name or f"synthetic-{mean_mbps:g}mbps-seed{seed}")


def write_trace(path, trace) -> str:
    """Write a Trace (or an array of ms timestamps) as a mahimahi file; returns the path."""
    tr = trace if isinstance(trace, Trace) else Trace(np.asarray(trace))
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(tr.to_text())
    os.replace(tmp, path)
    return path
