"""Small synthetic profiles / calibration tables for planner tests (not measurements)."""
from __future__ import annotations

import numpy as np

from collab.planner import CalibrationTable, Layer, Profile


def single_shot_profile(ms, shapes, weights, work=None, input_shape=(1, 3, 16, 16)):
    work = work or [0] * len(ms)
    layers = [Layer(name=f"l{i}", weight_bytes=int(w), work_bytes=int(k), ms=float(t), out_shape=tuple(sh))
              for i, (t, sh, w, k) in enumerate(zip(ms, shapes, weights, work))]
    return Profile(kind="single_shot", layers=layers, model="synthetic", input_shape=tuple(input_shape))


def ar_profile(prefill, decode, hidden, weights, kv):
    layers = [Layer(name=f"blk.{i}", weight_bytes=int(w), prefill_ms_per_token=float(p), decode_ms=float(d),
                    hidden=int(h), kv_bytes_per_token=int(k))
              for i, (p, d, h, w, k) in enumerate(zip(prefill, decode, hidden, weights, kv))]
    return Profile(kind="autoregressive", layers=layers, model="synthetic-ar")


def calibration(enc_scale=1e-5, dec_scale=5e-6, rng=None):
    """A table whose times grow with size and blocks and fall with sparsity (random jitter)."""
    sizes = np.array([64, 1024, 16384, 262144])
    sp = np.array([0.0, 0.5, 0.9])
    blocks = [[1, 1], [2, 2], [4, 4]]
    base = sizes[None, :, None] * (1.2 - sp[None, None, :]) * (1 + 0.1 * np.arange(3)[:, None, None])
    jit = 1.0 if rng is None else rng.uniform(0.5, 1.5, size=base.shape)
    return CalibrationTable(sizes, sp, blocks, base * enc_scale * jit + 0.01, base * dec_scale * jit + 0.01)
