"""SLICER Eq. 1: epsilon-outage communication latency over a Rayleigh-fading wireless link.

    L_c(l, R) = B(x_l) / R * ceil( ln(eps) / ln(P_o(R)) ) + zeta(x_l)               (Eq. 1)
    P_o(R)    = 1 - exp( -(2^(R/W) - 1) / gamma )

Symbols:
  B(x_l)  bits of the (compressed) intermediate feature sent at split l
  R       transmission rate in bit/s chosen by the sender (coding rate * symbol rate)
  W       channel bandwidth in Hz, so R/W is the spectral efficiency in bit/s/Hz
  gamma   mean signal-to-noise ratio (linear, not dB) of the fading channel
  P_o(R)  outage probability of one transmission: a Rayleigh channel's instantaneous SNR is
          exponential with mean gamma, and rate R fails when W*log2(1 + SNR) < R, i.e. when
          SNR < 2^(R/W) - 1, which has probability 1 - exp(-(2^(R/W) - 1)/gamma)
  eps     target residual outage: the payload is (re)sent n times so that P_o(R)^n <= eps, hence
          n = ceil(ln eps / ln P_o(R)) transmissions each lasting B/R seconds
  zeta    encoding time of the feature before transmission (from the calibration table)
A channel so good that P_o underflows still needs one transmission: n >= 1 here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgument

__all__ = ["db_to_linear", "outage_probability", "transmissions", "outage_latency_ms", "best_rate",
           "OutageLink"]

LN2 = math.log(2.0)


def db_to_linear(db):
    return 10.0 ** (np.asarray(db, dtype=np.float64) / 10.0)


def _pos(name, v):
    a = np.asarray(v, dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise InvalidArgument(f"{name} must be positive and finite, got {v!r}")
    return a


def _eps(eps):
    e = float(eps)
    if not (0.0 < e < 1.0):
        raise InvalidArgument(f"epsilon must be in (0, 1), got {eps!r}")
    return e


def outage_probability(rate_bps, bandwidth_hz, snr):
    """P_o(R) = 1 - exp(-(2^(R/W) - 1) / gamma), computed with expm1 to keep small values exact."""
    r, w, g = _pos("rate", rate_bps), _pos("bandwidth", bandwidth_hz), _pos("snr", snr)
    return -np.expm1(-np.expm1(r / w * LN2) / g)


def transmissions(eps, p_out):
    """n = max(1, ceil(ln eps / ln P_o)): sends needed for residual outage <= eps."""
    e = _eps(eps)
    p = np.asarray(p_out, dtype=np.float64)
    with np.errstate(divide="ignore"):
        lp = np.log(p)
    n = np.where(p >= 1.0, np.inf, np.ceil(np.log(e) / np.where(lp < 0, lp, -np.inf)))
    return np.maximum(n, 1.0)


def outage_latency_ms(bits, rate_bps, bandwidth_hz, snr, eps, zeta_ms=0.0):
    """Eq. 1 in milliseconds (bits, rate, zeta may be arrays; broadcast)."""
    b = np.asarray(bits, dtype=np.float64)
    if np.any(b < 0) or not np.all(np.isfinite(b)):
        raise InvalidArgument("bits must be finite and >= 0")
    n = transmissions(eps, outage_probability(rate_bps, bandwidth_hz, snr))
    out = b / np.asarray(rate_bps, dtype=np.float64) * 1000.0 * n + np.asarray(zeta_ms, dtype=np.float64)
    return out if out.ndim else float(out)


def best_rate(bandwidth_hz, snr, eps, max_transmissions=4096):
    """The rate R minimising Eq. 1's time per bit, n(R) / R (independent of B and zeta).

    For a fixed number of sends n the largest usable rate has P_o(R) = eps^(1/n), i.e.
    R_n = W log2(1 + gamma * (-ln(1 - eps^(1/n)))); the optimum is the best of R_1..R_max.
    Returns (R in bit/s, n)."""
    w, g, e = float(_pos("bandwidth", bandwidth_hz)), float(_pos("snr", snr)), _eps(eps)
    n = np.arange(1, int(max_transmissions) + 1, dtype=np.float64)
    target = np.exp(np.log(e) / n)                      # eps^(1/n), the per-send outage allowed
    rate = w * np.log1p(g * -np.log1p(-target)) / LN2 * (1 - 1e-12)
    rate = np.maximum(rate, 1e-300)
    sends = transmissions(e, outage_probability(rate, w, g))
    k = int(np.argmin(sends / rate))
    return float(rate[k]), int(sends[k])


@dataclass(frozen=True)
class OutageLink:
    """A wireless link described by Eq. 1: bandwidth W (Hz), mean SNR gamma (linear), eps, and
    the rate R (bit/s; None picks best_rate). comm_ms() is the B/R * n part of Eq. 1."""

    bandwidth_hz: float
    snr: float
    eps: float
    rate_bps: float | None = None

    def __post_init__(self):
        _pos("bandwidth", self.bandwidth_hz)
        _pos("snr", self.snr)
        _eps(self.eps)
        if self.rate_bps is None:
            object.__setattr__(self, "rate_bps", best_rate(self.bandwidth_hz, self.snr, self.eps)[0])
        else:
            _pos("rate", self.rate_bps)

    @property
    def sends(self) -> int:
        return int(transmissions(self.eps, outage_probability(self.rate_bps, self.bandwidth_hz, self.snr)))

    def effective_bps(self) -> float:
        """Goodput R / n."""
        return self.rate_bps / self.sends

    mean_bps = effective_bps

    def transfer_time(self, nbytes, start_ms=0.0, rtt_ms=0.0):
        out = outage_latency_ms(np.asarray(nbytes, dtype=np.float64) * 8, self.rate_bps, self.bandwidth_hz,
                                self.snr, self.eps) + float(rtt_ms)
        return out

    @classmethod
    def parse(cls, spec: str) -> "OutageLink":
        """"W_MHZ,SNR_DB,EPS[,RATE_MBPS]" e.g. "10,10,0.01"."""
        parts = spec.split(",")
        if len(parts) not in (3, 4):
            raise InvalidArgument(f"outage link spec is W_MHZ,SNR_DB,EPS[,RATE_MBPS], got {spec!r}")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise InvalidArgument(f"outage link spec is W_MHZ,SNR_DB,EPS[,RATE_MBPS], got {spec!r}") from None
        if not all(math.isfinite(v) for v in vals):
            raise InvalidArgument(f"outage link values must be finite, got {spec!r}")
        rate = vals[3] * 1e6 if len(vals) == 4 else None
        return cls(vals[0] * 1e6, float(db_to_linear(vals[1])), vals[2], rate)

    def __str__(self):
        return (f"eps-outage W={self.bandwidth_hz / 1e6:g} MHz gamma={10 * math.log10(self.snr):.1f} dB "
                f"eps={self.eps:g} R={self.rate_bps / 1e6:.3f} Mbit/s x{self.sends} sends")
