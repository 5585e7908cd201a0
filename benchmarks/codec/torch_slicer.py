"""The SLICER pipeline written the way a PyTorch user would write it (benchmark baseline).

Same stages as collab's codec (ATKF via topk, sign separation, MS via sort, per-block AIQ,
CSR positions), in torch ops on CPU, serialized with numpy at the end. It does not produce
collab frames byte for byte (ties are broken by topk's order and there is no ABQ or index
code choice); it is the "what would I otherwise do" speed baseline.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def encode(x: torch.Tensor, sparsity: float, blocks=(1, 1), qbits=(8,)):
    shape = tuple(x.shape)
    flat = x.reshape(-1).float()
    numel = flat.numel()
    k = math.floor((1.0 - sparsity) * numel)
    cols = shape[-1] if shape else 1
    _, idx = torch.topk(flat.abs(), k, sorted=False)  # ATKF
    vals = flat[idx]
    parts = []
    for sign, m_blocks in ((1, blocks[0]), (-1, blocks[1])):
        sel = vals > 0 if sign > 0 else vals < 0
        pos, mag = idx[sel], vals[sel].abs()
        order = torch.argsort(mag, descending=True)  # MS: equal-cardinality magnitude blocks
        for m, chunk in enumerate(torch.tensor_split(order, m_blocks)):
            q = qbits[min(m, len(qbits) - 1)]
            p, v = pos[chunk], mag[chunk]
            if p.numel() == 0:
                parts.append((sign, q, 0.0, 0.0, p, torch.zeros(0, dtype=torch.int32)))
                continue
            p, perm = torch.sort(p)  # CSR needs row-major order
            v = v[perm]
            lo, hi = v.min(), v.max()
            step = (hi - lo) / (2**q - 1)
            codes = torch.zeros_like(v, dtype=torch.int32) if step == 0 else \
                torch.round((v - lo) / step).clamp_(0, 2**q - 1).to(torch.int32)
            parts.append((sign, q, float(lo), float(step), p, codes))
    # Serialize: CSR (row pointers + column indices) and bit-packed codes per block.
    rows = numel // cols if cols else 0
    cdt = np.uint16 if cols <= 65536 else np.uint32
    out = [np.array([len(shape), *shape, len(parts)], dtype=np.int64).tobytes()]
    for sign, q, lo, step, p, codes in parts:
        r = torch.div(p, cols, rounding_mode="floor")
        row_ptr = torch.zeros(rows + 1, dtype=torch.int64)
        row_ptr[1:] = torch.cumsum(torch.bincount(r, minlength=rows), 0)
        c = (p - r * cols).numpy().astype(cdt)
        bits = ((codes.numpy()[:, None] >> np.arange(q)) & 1).astype(np.uint8)
        out += [np.array([sign, q, p.numel()], np.int64).tobytes(), np.array([lo, step], np.float32).tobytes(),
                row_ptr.numpy().astype(np.uint32).tobytes(), c.tobytes(),
                np.packbits(bits.reshape(-1), bitorder="little").tobytes()]
    return b"".join(out)


def decode(buf: bytes) -> torch.Tensor:
    ndim = int(np.frombuffer(buf, np.int64, 1)[0])
    head = np.frombuffer(buf, np.int64, ndim + 2)
    shape, nparts = tuple(int(d) for d in head[1:ndim + 1]), int(head[ndim + 1])
    numel = math.prod(shape)
    cols = shape[-1] if shape else 1
    rows = numel // cols if cols else 0
    cdt = np.uint16 if cols <= 65536 else np.uint32
    off = 8 * (ndim + 2)
    out = torch.zeros(numel)
    for _ in range(nparts):
        sign, q, n = (int(v) for v in np.frombuffer(buf, np.int64, 3, off))
        lo, step = np.frombuffer(buf, np.float32, 2, off + 24)
        off += 32
        row_ptr = np.frombuffer(buf, np.uint32, rows + 1, off)
        off += 4 * (rows + 1)
        c = np.frombuffer(buf, cdt, n, off)
        off += c.nbytes
        nb = (n * q + 7) // 8
        bits = np.unpackbits(np.frombuffer(buf, np.uint8, nb, off), bitorder="little")[: n * q].reshape(n, q)
        off += nb
        if n:
            codes = torch.from_numpy((bits.astype(np.int32) << np.arange(q, dtype=np.int32)).sum(1))
            r = torch.repeat_interleave(torch.arange(rows), torch.from_numpy(np.diff(row_ptr).astype(np.int64)))
            p = r * cols + torch.from_numpy(c.astype(np.int64))
            out[p] = sign * (float(lo) + codes.float() * float(step))
    return out.reshape(shape)
