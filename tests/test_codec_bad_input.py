"""Bad parameters and bad tensors get a clear ValueError, never a crash."""
import numpy as np
import pytest

import collab.codec as codec
from collab.errors import InvalidArgument


@pytest.fixture
def x(rng):
    return rng.standard_normal((8, 8)).astype(np.float32)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_nonfinite_input(x, bad, dtype):
    x = x.astype(dtype)
    x[3, 5] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        codec.encode(x, 0.5)


def test_nonfinite_input_in_dropped_part_still_rejected():
    x = np.zeros(100000, np.float32)
    x[-1] = np.nan  # in the SIMD tail, and would be dropped by ATKF anyway
    with pytest.raises(ValueError, match="NaN or Inf"):
        codec.encode(x, 0.99)


@pytest.mark.parametrize("s", [-0.1, 1.0, 1.5, np.nan, np.inf])
def test_sparsity_range(x, s):
    with pytest.raises(ValueError, match="sparsity"):
        codec.encode(x, s)


@pytest.mark.parametrize("s", ["0.5", None, [0.5], True])
def test_sparsity_type(x, s):
    with pytest.raises(ValueError):
        codec.encode(x, s)


@pytest.mark.parametrize("kw", [dict(qbits=(0,)), dict(qbits=(17,)), dict(qbits=()), dict(qbits=(8, 8, 8)),
                                dict(qbits=(-1,)), dict(blocks=(0, 1)), dict(blocks=(1, 65)), dict(blocks=(1,)),
                                dict(blocks=(1, 1, 1)), dict(lam=1.0), dict(lam=-0.5), dict(delta=-1.0),
                                dict(delta=np.nan), dict(seed=-1), dict(seed=2**64), dict(seed=1.5),
                                dict(index_code=7), dict(index_code="gzip"), dict(qbits="8")])
def test_bad_parameters(x, kw):
    with pytest.raises(ValueError):
        codec.encode(x, 0.5, **kw)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8, np.complex64, bool])
def test_wrong_dtype(dtype):
    with pytest.raises(InvalidArgument, match="dtype"):
        codec.encode(np.ones((4, 4), dtype=dtype), 0.5)


def test_too_many_dims():
    with pytest.raises(ValueError):
        codec.encode(np.ones((1,) * 9, np.float32), 0.5)


def test_predict_bits_bad_arguments():
    with pytest.raises(ValueError):
        codec.predict_bits((4, -1), 0.5)
    with pytest.raises(ValueError):
        codec.predict_bits((4, 4), 1.0)
    with pytest.raises(ValueError):
        codec.predict_bits((2**20, 2**20), 0.5)


def test_non_contiguous_input_is_fine(rng):
    x = rng.standard_normal((32, 32)).astype(np.float32)
    assert codec.encode(x[:, ::2], 0.5) == codec.encode(np.ascontiguousarray(x[:, ::2]), 0.5)
    assert codec.encode(x.T, 0.5) == codec.encode(np.ascontiguousarray(x.T), 0.5)
