"""Mercury regional pruning: native kernel vs numpy reference, edge cases, bad input."""
import numpy as np
import pytest

import collab
import collab.vit as cv
from collab.errors import InvalidArgument
from collab.reference import mercury as ref

REPEATS = range(6)


def _check_same(x, rate, region=2, has_cls=True):
    got = cv.regional_prune(x, rate, region, has_cls=has_cls)
    want = ref.regional_prune(np.asarray(x, np.float32) if x.dtype != np.float32 else x, rate, region, has_cls=has_cls)
    np.testing.assert_array_equal(got, want)
    return got


@pytest.mark.parametrize("repeat", REPEATS)
def test_native_matches_reference_random(repeat, rng):
    # fresh inputs on every run: rng is seeded from the OS per test (conftest prints the seed on
    # failure), and the repeat index is part of the stream's seed
    r = np.random.default_rng([int(rng.integers(2**63)), repeat])
    for grid, region in [(8, 2), (4, 2), (6, 3), (4, 4), (2, 1), (1, 1), (6, 2)]:
        n = grid * grid
        b = int(r.integers(1, 4))
        c = int(r.integers(1, 20))
        has_cls = bool(r.integers(0, 2))
        x = r.standard_normal((b, n + has_cls, c)).astype(np.float32)
        max_rate = 1 - 1 / region ** 2
        for rate in [0.0, max_rate, float(r.uniform(0, max_rate))]:
            kept = _check_same(x, rate, region, has_cls)
            k = cv.prune_count(n, rate, region)
            assert kept.shape == (b, n + has_cls - k)
            assert np.all(np.diff(kept, axis=1) > 0)
            if has_cls:
                assert np.all(kept[:, 0] == 0)


def test_float16_input_matches_reference_on_upcast():
    r = np.random.default_rng(7)
    x = r.standard_normal((2, 65, 16)).astype(np.float16)
    np.testing.assert_array_equal(cv.regional_prune(x, 0.5), ref.regional_prune(x.astype(np.float32), 0.5))


def test_max_rate_keeps_one_token_per_region_and_cls():
    r = np.random.default_rng(3)
    x = r.standard_normal((1, 65, 24)).astype(np.float32)
    kept = cv.regional_prune(x, 0.75)[0]
    assert kept[0] == 0 and len(kept) == 17
    cells = {((t - 1) // 8 // 2, (t - 1) % 8 // 2) for t in kept[1:]}
    assert len(cells) == 16


def test_rate_zero_keeps_everything():
    x = np.random.default_rng(1).standard_normal((65, 8)).astype(np.float32)
    np.testing.assert_array_equal(cv.regional_prune(x, 0.0), np.arange(65))


def test_ties_duplicates_and_zeros():
    r = np.random.default_rng(11)
    base = r.standard_normal((4, 16)).astype(np.float32)
    # every token is one of 4 vectors: massive exact ties in scores and max-similarities
    x = base[r.integers(0, 4, size=65)][None].copy()
    for rate in (0.25, 0.5, 0.6, 0.75):
        _check_same(x, rate)
    z = np.zeros((2, 65, 8), np.float32)
    kept = _check_same(z, 0.5)
    # all scores tie: first token of each region preserved, then lowest indices pruned first
    assert kept.shape == (2, 33)
    c = np.ones((1, 17, 3), np.float32)
    _check_same(c, 0.75)
    half = r.standard_normal((1, 65, 8)).astype(np.float32)
    half[0, 1::2] = 0
    _check_same(half, 0.4)


def test_single_token_grid():
    x = np.random.default_rng(0).standard_normal((3, 2, 5)).astype(np.float32)
    np.testing.assert_array_equal(cv.regional_prune(x, 0.0, region=1), [[0, 1]] * 3)
    np.testing.assert_array_equal(ref.regional_prune(x, 0.0, region=1), [[0, 1]] * 3)
    with pytest.raises(InvalidArgument):
        cv.regional_prune(x, 0.5, region=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_raises(bad):
    x = np.random.default_rng(0).standard_normal((2, 17, 4)).astype(np.float32)
    x[1, 5, 2] = bad
    with pytest.raises(ValueError, match="NaN|Inf"):
        cv.regional_prune(x, 0.5)
    with pytest.raises(ValueError, match="NaN|Inf"):
        ref.regional_prune(x, 0.5)
    y = np.zeros((17, 4), np.float32)
    y[0, 0] = bad  # in the CLS token
    with pytest.raises(ValueError):
        cv.regional_prune(y, 0.0)


@pytest.mark.parametrize("shape,region", [((2, 10, 4), 2), ((10, 4), 2), ((2, 17, 4), 3), ((4,), 2),
                                          ((1, 1, 17, 4), 2), ((2, 1, 4), 2), ((2, 17, 0), 2), ((2, 0, 4), 2)])
def test_bad_shapes(shape, region):
    x = np.ones(shape, np.float32)
    with pytest.raises(ValueError):
        cv.regional_prune(x, 0.25, region)
    with pytest.raises(ValueError):
        ref.regional_prune(x, 0.25, region)


@pytest.mark.parametrize("rate", [0.76, 1.0, -0.1, float("nan"), float("inf"), "x", None])
def test_bad_rates(rate):
    x = np.ones((1, 65, 4), np.float32)
    with pytest.raises(ValueError):
        cv.regional_prune(x, rate)


def test_bad_region_and_dtype():
    x = np.ones((1, 65, 4), np.float32)
    for region in (0, -2, 1.5, True):
        with pytest.raises(ValueError):
            cv.regional_prune(x, 0.25, region)
    with pytest.raises(ValueError):
        cv.regional_prune(x.astype(np.float64), 0.25)
    with pytest.raises(ValueError):
        cv.regional_prune(x.astype(np.int32), 0.25)


def test_prune_count_matches_reference():
    for n in (1, 4, 16, 64, 256):
        for region in (1, 2, 4):
            if int(np.sqrt(n)) % region:
                continue
            for rate in np.linspace(0, 1 - 1 / region ** 2, 7):
                assert cv.prune_count(n, rate, region) == ref.n_prune_for(n, rate, region)


def test_torch_input_returns_torch():
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 65, 12)
    kept = cv.regional_prune(x, 0.5)
    assert isinstance(kept, torch.Tensor) and kept.dtype == torch.int64
    np.testing.assert_array_equal(kept.numpy(), ref.regional_prune(x.numpy(), 0.5))
    nc = torch.randn(2, 12, 65).transpose(1, 2)  # non-contiguous
    np.testing.assert_array_equal(cv.regional_prune(nc, 0.25).numpy(), ref.regional_prune(nc.numpy(), 0.25))


def test_cuda_matches_cpu():
    torch = pytest.importorskip("torch")
    if not (collab.cuda_available() and torch.cuda.is_available()):
        pytest.skip("no CUDA device (the CUDA kernel is compile-only on this machine)")
    x = torch.randn(3, 65, 32)
    np.testing.assert_array_equal(cv.regional_prune(x.cuda(), 0.6).cpu().numpy(), cv.regional_prune(x, 0.6).numpy())
