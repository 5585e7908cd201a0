"""Write golden frames from the numpy reference for the C++ tests (tests/cpp/golden/).

The C++ test re-encodes each input natively and compares bytes, which checks every build
(x86 AVX2, scalar, ARM64 NEON under qemu) against the reference without Python at test time.
Re-run after a deliberate format change:  python tests/cpp/make_golden.py
"""
import pathlib
import struct

import ml_dtypes
import numpy as np

from collab.reference import slicer as ref

OUT = pathlib.Path(__file__).parent / "golden"
DT = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(ml_dtypes.bfloat16): 2}

CASES = [
    ((197, 384), np.float32, dict(sparsity=0.75, blocks=(3, 3), qbits=(8, 4, 2))),
    ((1, 4096), np.float32, dict(sparsity=0.9, blocks=(1, 1), qbits=(8,))),
    ((64, 77), np.float16, dict(sparsity=0.5, blocks=(2, 2), qbits=(8, 4), delta=0.2)),
    ((40, 40), ml_dtypes.bfloat16, dict(sparsity=0.6, lam=0.3, blocks=(2, 1), qbits=(6,), seed=3)),
    ((3, 5, 7), np.float32, dict(sparsity=0.2, blocks=(4, 4), qbits=(16, 2), index_code=0)),
    ((1000,), np.float32, dict(sparsity=0.5, index_code=2)),
    ((50, 20), np.float32, dict(sparsity=0.5, blocks=(2, 2), qbits=(8,), index_code=1)),
    ((), np.float32, dict(sparsity=0.0)),
    ((300, 768), np.float32, dict(sparsity=0.5, blocks=(2, 2), qbits=(8, 4))),  # multi-chunk
]


def main():
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(20261125)
    names = []
    for i, (shape, dtype, kw) in enumerate(CASES):
        x = rng.standard_t(4, size=shape).astype(np.float32)
        if i == 5:  # ties everywhere
            x = np.round(x * 2) / 2
        x = x.astype(dtype)
        frame = ref.encode(x, **kw)
        p = dict(lam=0.0, delta=0.0, seed=0, blocks=(1, 1), qbits=(8,), index_code=None) | kw
        blob = struct.pack("<II", DT[x.dtype], x.ndim) + struct.pack(f"<{x.ndim}q", *x.shape)
        blob += struct.pack("<dddQ", p["sparsity"], p["lam"], p["delta"], p["seed"])
        blob += struct.pack("<III", *p["blocks"], len(p["qbits"])) + bytes(p["qbits"])
        blob += struct.pack("<i", -1 if p["index_code"] is None else p["index_code"])
        raw = np.ascontiguousarray(x).tobytes()
        blob += struct.pack("<Q", len(raw)) + raw + struct.pack("<Q", len(frame)) + frame
        name = f"case{i:02d}.bin"
        (OUT / name).write_bytes(blob)
        names.append(name)
    (OUT / "index.txt").write_text("\n".join(names) + "\n")
    print(f"wrote {len(names)} golden cases to {OUT}")


if __name__ == "__main__":
    main()
