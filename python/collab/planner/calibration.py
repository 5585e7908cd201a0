"""Codec time calibration: encode/decode milliseconds of the native codec on this device,
measured over tensor sizes x sparsities x block counts, interpolated for the planner
(SLICER Sec. 3.3: zeta-hat from device-specific lookup tables calibrated offline).

JSON schema "collab.calibration/1":
    {"schema": "collab.calibration/1", "device": {...}, "created": "...", "dtype": "float32",
     "qbits": [8], "threads": 2, "repeats": 5,
     "sizes": [1024, ...],                 # elements, increasing
     "sparsities": [0.0, 0.5, ...],        # increasing, in [0, 1)
     "blocks": [[1, 1], [2, 2], ...],      # (M+, M-) pairs measured
     "encode_ms": [[[...]]],               # [block][size][sparsity] median ms
     "decode_ms": [[[...]]]}
Interpolation: piecewise linear in log(size) and in sparsity; between block pairs linear in
M+ + M-; below the smallest size the smallest size's time; above the largest, time grows in
proportion to size (the codec is linear-time).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidArgument
from ._io import read_json, write_json

__all__ = ["CalibrationError", "CalibrationTable", "load_calibration", "measure_calibration", "SCHEMA"]

SCHEMA = "collab.calibration/1"


class CalibrationError(InvalidArgument):
    """A calibration file that does not follow the collab.calibration/1 schema."""


def _interp_axis(x, grid):
    """Indices i0, i1 and weight t so that value = v[i0] * (1 - t) + v[i1] * t (clamped)."""
    grid = np.asarray(grid, dtype=np.float64)
    x = np.clip(np.asarray(x, dtype=np.float64), grid[0], grid[-1])
    if grid.size == 1:
        z = np.zeros(x.shape, dtype=np.int64)
        return z, z, np.zeros(x.shape)
    i1 = np.clip(np.searchsorted(grid, x, side="right"), 1, grid.size - 1)
    i0 = i1 - 1
    t = (x - grid[i0]) / (grid[i1] - grid[i0])
    return i0, i1, t


@dataclass
class CalibrationTable:
    sizes: np.ndarray
    sparsities: np.ndarray
    blocks: list
    encode_ms: np.ndarray
    decode_ms: np.ndarray
    device: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.sizes = np.asarray(self.sizes, dtype=np.float64)
        self.sparsities = np.asarray(self.sparsities, dtype=np.float64)
        self.blocks = [tuple(int(v) for v in b) for b in self.blocks]
        shape = (len(self.blocks), self.sizes.size, self.sparsities.size)
        for name in ("encode_ms", "decode_ms"):
            a = np.asarray(getattr(self, name), dtype=np.float64)
            if a.shape != shape:
                raise CalibrationError(f"{name} must have shape {shape} (blocks x sizes x sparsities), got {a.shape}")
            if not np.all(np.isfinite(a)) or np.any(a < 0):
                raise CalibrationError(f"{name} must hold finite times >= 0")
            setattr(self, name, a)
        if self.sizes.size == 0 or np.any(self.sizes <= 0) or np.any(np.diff(self.sizes) <= 0):
            raise CalibrationError("sizes must be positive and strictly increasing")
        if self.sparsities.size == 0 or np.any(np.diff(self.sparsities) <= 0) or self.sparsities[0] < 0 \
                or self.sparsities[-1] >= 1:
            raise CalibrationError("sparsities must be strictly increasing in [0, 1)")
        if not self.blocks or any(len(b) != 2 or min(b) < 1 for b in self.blocks):
            raise CalibrationError("blocks must be a non-empty list of (M+, M-) pairs >= 1")
        tot = [sum(b) for b in self.blocks]
        order = np.argsort(tot, kind="stable")
        self._btot = np.array(tot, dtype=np.float64)[order]
        if np.any(np.diff(self._btot) == 0):
            # several pairs with the same total: average them per total
            uniq = np.unique(self._btot)
            self._enc = np.stack([self.encode_ms[[i for i in range(len(tot)) if tot[i] == u]].mean(0) for u in uniq])
            self._dec = np.stack([self.decode_ms[[i for i in range(len(tot)) if tot[i] == u]].mean(0) for u in uniq])
            self._btot = uniq
        else:
            self._enc, self._dec = self.encode_ms[order], self.decode_ms[order]

    def _lookup(self, table, numel, sparsity, blocks_total):
        numel = np.asarray(numel, dtype=np.float64)
        if np.any(numel < 0) or not np.all(np.isfinite(numel)):
            raise InvalidArgument("numel must be finite and >= 0")
        s = np.asarray(sparsity, dtype=np.float64)
        b = np.asarray(blocks_total, dtype=np.float64)
        numel, s, b = np.broadcast_arrays(numel, s, b)
        logn = np.log(np.maximum(numel, 1.0))
        a0, a1, ta = _interp_axis(b, self._btot)
        n0, n1, tn = _interp_axis(logn, np.log(self.sizes))
        s0, s1, ts = _interp_axis(s, self.sparsities)

        def at(ai, ni):
            return table[ai, ni, s0] * (1 - ts) + table[ai, ni, s1] * ts

        def over_n(ai):
            return at(ai, n0) * (1 - tn) + at(ai, n1) * tn

        v = over_n(a0) * (1 - ta) + over_n(a1) * ta
        scale = np.maximum(numel / self.sizes[-1], 1.0)  # linear growth past the largest size
        out = v * scale
        return out if out.ndim else float(out)

    def encode_time_ms(self, numel, sparsity, blocks=(1, 1)):
        return self._lookup(self._enc, numel, sparsity, _btotal(blocks))

    def decode_time_ms(self, numel, sparsity, blocks=(1, 1)):
        return self._lookup(self._dec, numel, sparsity, _btotal(blocks))

    # -- io -----------------------------------------------------------------------------------
    def to_json(self):
        d = {"schema": SCHEMA, "device": self.device, "sizes": [int(v) for v in self.sizes],
             "sparsities": [float(v) for v in self.sparsities], "blocks": [list(b) for b in self.blocks],
             "encode_ms": self.encode_ms.tolist(), "decode_ms": self.decode_ms.tolist()}
        d.update(self.meta)
        return d

    def save(self, path):
        write_json(path, self.to_json())

    @classmethod
    def from_json(cls, d, where="calibration"):
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise CalibrationError(f"{where}: schema must be {SCHEMA!r}")
        try:
            sizes, sp, bl = d["sizes"], d["sparsities"], d["blocks"]
            enc, dec = d["encode_ms"], d["decode_ms"]
        except KeyError as e:
            raise CalibrationError(f"{where}: missing {e.args[0]!r}") from None
        try:
            sizes = np.asarray(sizes, dtype=np.float64)
            sp = np.asarray(sp, dtype=np.float64)
            enc = np.asarray(enc, dtype=np.float64)
            dec = np.asarray(dec, dtype=np.float64)
            if not isinstance(bl, list) or not all(isinstance(b, list) and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in b) for b in bl):
                raise TypeError("blocks")
        except (TypeError, ValueError) as e:
            raise CalibrationError(f"{where}: malformed table ({e})") from None
        if sizes.ndim != 1 or sp.ndim != 1:
            raise CalibrationError(f"{where}: sizes and sparsities must be lists of numbers")
        known = {"schema", "device", "sizes", "sparsities", "blocks", "encode_ms", "decode_ms"}
        return cls(sizes, sp, bl, enc, dec, device=d.get("device", {}) if isinstance(d.get("device"), dict) else {},
                   meta={k: v for k, v in d.items() if k not in known})


def _btotal(blocks):
    b = np.asarray(blocks)
    if b.shape[-1:] != (2,):
        raise InvalidArgument(f"blocks must be (M+, M-) pairs, got {blocks!r}")
    return b.sum(axis=-1)


def load_calibration(path) -> CalibrationTable:
    d, name = read_json(path, CalibrationError, "calibration")
    return CalibrationTable.from_json(d, where=name)


def device_info(threads=None) -> dict:
    import platform

    info = {"host": platform.node(), "machine": platform.machine(), "processor": platform.processor() or "",
            "python": platform.python_version(), "cpus": os.cpu_count()}
    if threads:
        info["threads"] = int(threads)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def measure_calibration(sizes=(1024, 16384, 98688, 393216, 1572864), sparsities=(0.0, 0.5, 0.75, 0.9, 0.95),
                        blocks=((1, 1), (2, 2), (4, 4)), qbits=(8,), repeats=5, threads=None, seed=0,
                        progress=print) -> CalibrationTable:
    """Time collab.codec.encode/decode (median of `repeats`) on float32 normal tensors."""
    from .. import codec

    sizes = sorted(int(v) for v in sizes)
    sparsities = sorted(float(v) for v in sparsities)
    if repeats < 1:
        raise InvalidArgument("repeats must be >= 1")
    rng = np.random.default_rng(seed)
    enc = np.zeros((len(blocks), len(sizes), len(sparsities)))
    dec = np.zeros_like(enc)
    total = enc.size
    done = 0
    t_start = time.perf_counter()
    for ni, n in enumerate(sizes):
        # heavy-ish tails like real activations: normal with a few large outliers
        x = rng.standard_normal(n).astype(np.float32)
        x[rng.integers(0, n, size=max(1, n // 200))] *= 8
        x = x.reshape(1, -1) if n % 384 else x.reshape(-1, 384)
        for bi, b in enumerate(blocks):
            q = tuple(qbits)[: max(b)] or (8,)
            for si, s in enumerate(sparsities):
                frame = codec.encode(x, s, blocks=b, qbits=q, threads=threads)
                codec.decode(frame)  # warm-up
                te, td = [], []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    frame = codec.encode(x, s, blocks=b, qbits=q, threads=threads)
                    t1 = time.perf_counter()
                    codec.decode(frame)
                    t2 = time.perf_counter()
                    te.append(t1 - t0)
                    td.append(t2 - t1)
                enc[bi, ni, si] = float(np.median(te)) * 1e3
                dec[bi, ni, si] = float(np.median(td)) * 1e3
                done += 1
            if progress:
                progress(f"[calibrate] {done}/{total} size={n} blocks={b}: encode "
                         f"{enc[bi, ni].min():.3f}-{enc[bi, ni].max():.3f} ms, decode "
                         f"{dec[bi, ni].min():.3f}-{dec[bi, ni].max():.3f} ms "
                         f"({time.perf_counter() - t_start:.1f} s)")
    import datetime

    meta = {"created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dtype": "float32", "qbits": list(qbits), "threads": threads or 0, "repeats": repeats}
    return CalibrationTable(np.array(sizes), np.array(sparsities), [list(b) for b in blocks], enc, dec,
                            device=device_info(threads), meta=meta)
