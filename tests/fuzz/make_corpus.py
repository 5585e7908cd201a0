"""Seed corpus for fuzz_decode: real frames of every index code, dtype and block layout.

Each file is one selector byte (bit 0 set: the fuzzer recomputes the CRC; bit 1 set: the
decoder's output limit is 16 * (selector >> 2) bytes) + a frame. Selector 0x43 sets a
256-byte limit, which the larger seeds exceed.
Re-run after a format change:  python tests/fuzz/make_corpus.py
"""
import pathlib

import ml_dtypes
import numpy as np

from collab.reference import slicer as ref

OUT = pathlib.Path(__file__).parent / "corpus"


def main():
    OUT.mkdir(exist_ok=True)
    for f in [*OUT.glob("seed-*"), *OUT.glob("limit-*")]:
        f.unlink()
    rng = np.random.default_rng(7)
    n = 0
    for shape in [(), (1,), (9,), (4, 6), (2, 3, 5), (16, 24)]:
        for dtype in (np.float32, np.float16, ml_dtypes.bfloat16):
            x = rng.standard_normal(shape).astype(dtype)
            for code in range(4):
                for kw in (dict(sparsity=0.5), dict(sparsity=0.8, blocks=(2, 3), qbits=(8, 3), delta=0.2)):
                    frame = ref.encode(x, index_code=code, **kw)
                    for selector in (0, 1):
                        (OUT / f"seed-{n:03d}").write_bytes(bytes([selector]) + frame)
                        n += 1
                    (OUT / f"limit-{n // 2 - 1:03d}").write_bytes(bytes([0x43]) + frame)
    print(f"wrote {n + n // 2} seeds to {OUT}")


if __name__ == "__main__":
    main()
