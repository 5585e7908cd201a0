"""Native codec == numpy reference, byte for byte, on fresh random inputs."""
import ml_dtypes
import numpy as np
import pytest

import collab
import collab.codec as codec
from collab.reference import slicer as ref

from codec_inputs import DTYPES, KINDS, make

SHAPES = [(), (1,), (0,), (0, 5), (7,), (3, 4, 5), (197, 48), (2, 1, 33)]
PARAMS = [
    dict(sparsity=0.0),
    dict(sparsity=0.5),
    dict(sparsity=0.75, blocks=(2, 3), qbits=(8, 4, 2)),
    dict(sparsity=0.9, blocks=(4, 4), qbits=(8, 6, 4, 2), delta=0.2),
    dict(sparsity=0.3, lam=0.25, blocks=(3, 1), qbits=(16, 1)),
    dict(sparsity=0.999, lam=0.9, seed=7),
    dict(sparsity=0.6, blocks=(64, 64), qbits=(3,), delta=1.5),
]


def assert_same(x, **kw):
    native = codec.encode(x, **kw)
    expected = ref.encode(x, **kw)
    assert native == expected, f"frames differ for {x.dtype} {x.shape} {kw}"
    a, b = codec.decode(native), ref.decode(expected)
    assert a.dtype == b.dtype == x.dtype and a.shape == b.shape == x.shape
    assert a.tobytes() == b.tobytes()
    return native


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", KINDS)
def test_parity_kinds(rng, dtype, kind):
    for shape in SHAPES:
        x = make(rng, kind, shape, dtype)
        for kw in PARAMS:
            assert_same(x, **{"seed": int(rng.integers(0, 2**63)), **kw})


@pytest.mark.parametrize("code", [0, 1, 2, 3])
def test_parity_each_index_code(rng, code):
    for kind in ["normal", "ties", "sparse"]:
        x = make(rng, kind, (33, 17))
        for s in (0.0, 0.4, 0.95):
            assert_same(x, sparsity=s, blocks=(2, 2), qbits=(8, 3), index_code=code)


def test_parity_large_multichunk(rng):
    # Large enough for the native code to split work across threads and radix levels.
    x = make(rng, "activations", (300, 768))
    for threads in (1, 2, 3):
        f = codec.encode(x, 0.75, blocks=(3, 2), qbits=(8, 4, 2), threads=threads)
        assert f == ref.encode(x, 0.75, blocks=(3, 2), qbits=(8, 4, 2))


def test_parity_ties_need_rng(rng):
    # Many more ties at the threshold than slots: the seeded choice must match exactly.
    x = np.ones(5000, dtype=np.float32)
    x[:100] = 2.0
    for seed in (0, 1, 2**64 - 1, int(rng.integers(0, 2**63))):
        f = assert_same(x, sparsity=0.5, seed=seed)
        assert np.count_nonzero(codec.decode(f)) == 2500
    a = codec.decode(codec.encode(x, 0.5, seed=1))
    b = codec.decode(codec.encode(x, 0.5, seed=2))
    assert not np.array_equal(a, b), "different seeds should pick different ties"


def test_scalar_and_simd_kernels_agree(rng):
    level = collab.simd_level()
    xs = [make(rng, k, (129, 67), d) for k in ("normal", "wide", "activations") for d in DTYPES]
    try:
        frames = {}
        for lv in ("scalar", level):
            collab.set_simd_level(lv)
            frames[lv] = [(codec.encode(x, 0.6, blocks=(2, 2), qbits=(8, 5), delta=0.1), x) for x in xs]
            frames[lv] = [(f, codec.decode(f).tobytes()) for f, _ in frames[lv]]
        assert frames["scalar"] == frames[level]
    finally:
        collab.set_simd_level("auto")


def test_bfloat16_roundtrip_dtype(rng):
    x = make(rng, "normal", (10, 10), ml_dtypes.bfloat16)
    y = codec.decode(codec.encode(x, 0.0, qbits=(16,)))
    assert y.dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(y.astype(np.float32), x.astype(np.float32), rtol=1e-2, atol=1e-3)
