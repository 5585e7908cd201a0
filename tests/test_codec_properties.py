"""Properties the SLICER codec guarantees (SLICER Sec. 3), checked on the native codec."""
import math

import ml_dtypes
import numpy as np
import pytest

import collab.codec as codec
from collab.reference import slicer as ref

from codec_inputs import DTYPES, make


def block_positions(frame):
    h = ref.parse_header(frame)
    return h, ref.decode_positions(h)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.75, 0.9, 0.99])
def test_exact_count_and_top_magnitudes(rng, dtype, sparsity):
    x = make(rng, "normal", (97, 61), dtype)
    frame = codec.encode(x, sparsity, blocks=(3, 2), qbits=(8, 4, 2))
    y = codec.decode(frame)
    mag = np.abs(x.astype(np.float32)).ravel()
    k_keep = math.floor((1 - sparsity) * x.size)
    kept = np.flatnonzero(y.ravel())
    assert len(kept) == min(k_keep, np.count_nonzero(mag))
    dropped = np.setdiff1d(np.arange(x.size), kept)
    if len(kept) and len(dropped):
        assert mag[kept].min() >= mag[dropped].max()
    # Signs survive: every kept value has the sign of its input.
    assert np.all(np.sign(y.ravel()[kept].astype(np.float32)) == np.sign(x.ravel()[kept].astype(np.float32)))


@pytest.mark.parametrize("lam", [0.1, 0.5, 0.9])
def test_asymmetric_filter_keeps_exact_count_and_cutoffs(rng, lam):
    x = make(rng, "normal", (50, 40))
    s = 0.7
    y = codec.decode(codec.encode(x, s, lam=lam)).ravel()
    x = x.ravel()
    k_keep = math.floor((1 - s) * x.size)
    kept = y != 0
    assert kept.sum() == k_keep
    # Eq. 7 shape: one tau with x > (1+lam) tau or x < -(1-lam) tau for every kept element
    # and for no dropped one, i.e. kept elements dominate in a(x) = x/(1+lam) | -x/(1-lam).
    a = np.where(x > 0, x / (1 + lam), -x / (1 - lam))
    assert a[kept].min() >= a[~kept].max()
    assert (x[kept] < 0).sum() > (x[kept] > 0).sum(), "lam > 0 favours negative values"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", ["normal", "wide", "activations", "ties"])
def test_error_within_one_step_of_its_block(rng, dtype, kind):
    x = make(rng, kind, (64, 80), dtype)
    frame = codec.encode(x, 0.5, blocks=(3, 3), qbits=(8, 4, 2), delta=0.3)
    y = codec.decode(frame).astype(np.float32).ravel()
    xf = x.astype(np.float32).ravel()
    h, positions = block_positions(frame)
    for b, pos in zip(h["block_info"], positions):
        if not len(pos):
            continue
        err = np.abs(y[pos] - xf[pos])
        # one quantization step, plus the rounding of the result to float32 and to the dtype
        ulp = np.spacing(np.abs(xf[pos])) if dtype == np.float32 else np.abs(xf[pos]) * 2.0 ** -7
        assert np.all(err <= float(b["step"]) + 2 * ulp), (b, err.max())


@pytest.mark.parametrize("shape", [(), (1,), (0,), (5,), (197, 384), (512, 576), (1, 4096), (8, 14, 14)])
@pytest.mark.parametrize("blocks,qbits", [((1, 1), (8,)), ((3, 3), (8, 4, 2)), ((4, 2), (16, 1)), ((64, 64), (8,))])
def test_frame_never_exceeds_predict_bits(rng, shape, blocks, qbits):
    for kind in ("normal", "ties", "sparse", "positive"):
        x = make(rng, kind, shape)
        for s in (0.0, 0.5, 0.9, 0.999):
            frame = codec.encode(x, s, blocks=blocks, qbits=qbits, seed=int(rng.integers(1 << 62)))
            bound = codec.predict_bits(shape, s, blocks=blocks, qbits=qbits)
            assert 8 * len(frame) <= bound
            assert bound == ref.predict_bits(shape, s, blocks=blocks, qbits=qbits)


def test_abq_lowers_bits_only_within_delta(rng):
    x = make(rng, "normal", (100, 100))
    bits0 = [b["bits"] for b in codec.inspect(codec.encode(x, 0.5, blocks=(2, 2), qbits=(8,)))["block_info"]]
    assert bits0 == [8, 8, 8, 8], "delta=0 keeps the configured widths"
    info = codec.inspect(codec.encode(x, 0.5, blocks=(2, 2), qbits=(8,), delta=0.6))
    assert all(1 <= b["bits"] < 8 for b in info["block_info"])
    big = codec.inspect(codec.encode(x, 0.5, blocks=(2, 2), qbits=(8,), delta=1e9))
    assert all(b["bits"] == 1 for b in big["block_info"])


def test_inspect_reports_layout(rng):
    x = make(rng, "normal", (20, 30))
    f = codec.encode(x, 0.75, lam=0.1, blocks=(2, 3), qbits=(8, 4), delta=0.05, seed=9)
    info = codec.inspect(f)
    assert info["shape"] == (20, 30) and info["dtype"] == "float32"
    assert info["blocks"] == (2, 3) and info["qbits"] == (8, 4) and info["seed"] == 9
    assert info["k_keep"] == 150 and info["n_pos"] + info["n_neg"] == 150
    assert info["header_bytes"] + info["index_bytes"] + info["value_bytes"] + 4 == info["total_bytes"] == len(f)
    assert [b["sign"] for b in info["block_info"]] == [1, 1, -1, -1, -1]
    assert sum(b["count"] for b in info["block_info"]) == 150
    ri = ref.inspect(f)
    for key in ("shape", "k_keep", "n_pos", "n_neg", "index_code", "header_bytes", "index_bytes", "value_bytes"):
        assert info[key] == ri[key], key


def test_auto_index_code_is_smallest(rng):
    x = make(rng, "normal", (64, 64))
    for s in (0.1, 0.5, 0.9, 0.99):
        sizes = {c: len(codec.encode(x, s, index_code=c)) for c in codec.INDEX_CODES}
        auto = codec.encode(x, s)
        assert len(auto) == min(sizes.values())
        assert codec.inspect(auto)["index_code"] == min(sizes, key=lambda c: (sizes[c], codec.INDEX_CODES[c]))


def test_decode_into_out_and_reuse(rng):
    x = make(rng, "normal", (16, 16), ml_dtypes.bfloat16)
    f = codec.encode(x, 0.5)
    out = np.full((16, 16), 7, dtype=ml_dtypes.bfloat16)
    assert codec.decode(f, out=out) is out
    assert out.tobytes() == codec.decode(f).tobytes()
    with pytest.raises(ValueError):
        codec.decode(f, out=np.empty((16, 16), np.float32))
    with pytest.raises(ValueError):
        codec.decode(f, out=np.empty((16, 8), ml_dtypes.bfloat16))
