"""Wire formats of collab.llm (hidden rows with the token-range policy, KV-state frames,
token ids): round trips, policy ranges, and fuzzed decoders."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab.llm import protocol
from collab.llm.protocol import ProtocolError, RowPolicy


def rows(n=7, d=32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_exact_rows_roundtrip_bit_for_bit():
    x = rows()
    y = protocol.decode_rows(protocol.encode_rows(x), n_embd=32)
    assert y.dtype == np.float32 and np.array_equal(x.view(np.uint32), y.view(np.uint32))


@pytest.mark.parametrize("keep_last,n_full", [(3, 3), (0, 0), (100, 7), (0.5, 4), (1.0, 7), (None, 7)])
def test_policy_keeps_last_tokens_exact(keep_last, n_full):
    x = rows(7, 64, 1)
    pol = RowPolicy(keep_last=keep_last, sparsity=0.75, qbits=(4,))
    assert pol.n_full(7) == n_full
    y = protocol.decode_rows(protocol.encode_rows(x, pol), n_embd=64)
    assert y.shape == x.shape
    assert np.array_equal(y[7 - n_full:], x[7 - n_full:])  # the question rows: full fidelity
    if n_full < 7:
        early = y[: 7 - n_full]
        assert not np.array_equal(early, x[: 7 - n_full])   # compressed: lossy
        assert np.mean(early == 0) >= 0.7                    # 75 % sparsity drops most values


def test_policy_payload_smaller():
    x = rows(64, 576, 2)
    exact = len(protocol.encode_rows(x))
    comp = len(protocol.encode_rows(x, RowPolicy(keep_last=8, sparsity=0.9, qbits=(4,))))
    f16 = len(protocol.encode_rows(x, RowPolicy(keep_last=8, sparsity=None)))
    assert comp < f16 < exact


def test_f16_full_rows():
    x = rows()
    y = protocol.decode_rows(protocol.encode_rows(x, RowPolicy(full_dtype="f16")))
    assert np.array_equal(y, x.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("bad", [dict(full_dtype="f64"), dict(keep_last=-1), dict(keep_last=1.5),
                                 dict(keep_last=True), dict(sparsity=1.0)])
def test_bad_policy(bad):
    with pytest.raises(ValueError):
        RowPolicy(**bad)


def test_rows_bad_input():
    with pytest.raises(ValueError):
        protocol.encode_rows(np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError):
        protocol.encode_rows(np.zeros(4, np.float32))
    p = protocol.encode_rows(rows())
    with pytest.raises(ProtocolError, match="width"):
        protocol.decode_rows(p, n_embd=16)
    with pytest.raises(ProtocolError, match="trailing"):
        protocol.decode_rows(p + b"x")
    bad = np.array(rows())
    bad[0, 0] = np.nan
    with pytest.raises(ProtocolError, match="NaN"):
        protocol.decode_rows(protocol.encode_rows(bad))
    with pytest.raises(ProtocolError):
        protocol.decode_rows("text")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.integers(0, 10 ** 6))
def test_fuzz_decode_rows(junk, cut):
    x = rows(3, 8)
    valid = protocol.encode_rows(x, RowPolicy(keep_last=1, sparsity=0.5))
    # the untouched payload decodes, and to the same rows every time
    ref = protocol.decode_rows(valid, n_embd=8)
    assert ref.shape == (3, 8) and np.array_equal(ref[-1], x[-1])
    decoded = 0
    for buf in (junk, valid[: cut % (len(valid) + 1)], protocol.ROWS_MAGIC + junk,
                valid[:12] + junk, bytes(b ^ (cut & 0xFF) if i == cut % len(valid) else b
                                          for i, b in enumerate(valid))):
        try:
            y = protocol.decode_rows(buf, n_embd=8)
        except ProtocolError:
            continue
        decoded += 1
        # whatever decodes is well formed, and the header pass agrees with what was decoded
        assert y.dtype == np.float32 and y.ndim == 2 and y.shape[1] == 8 and np.all(np.isfinite(y))
        assert protocol.inspect_rows(buf, n_embd=8)["n_rows"] == y.shape[0]
        if buf == valid:
            assert np.array_equal(y, ref)
    if cut % (len(valid) + 1) == len(valid) or cut & 0xFF == 0:
        assert decoded >= 1  # the full-length cut / a zero xor leave the valid payload


def test_state_frame():
    blob = bytes(range(256)) * 3
    f = protocol.encode_state(blob, n_layer=4, n_embd=64, n_past=9)
    assert protocol.decode_state(f, n_layer=4, n_embd=64) == (blob, 9)
    with pytest.raises(ProtocolError, match="model"):
        protocol.decode_state(f, n_layer=5, n_embd=64)
    with pytest.raises(ProtocolError, match="checksum"):
        protocol.decode_state(f[:-1] + bytes([f[-1] ^ 1]), n_layer=4, n_embd=64)
    with pytest.raises(ProtocolError):
        protocol.decode_state(f[:-1], n_layer=4, n_embd=64)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2 ** 31 - 1))
def test_fuzz_state_and_tokens(junk, n_past):
    # a frame built around arbitrary state bytes decodes back to exactly them
    if junk:
        assert protocol.decode_state(protocol.encode_state(junk, n_layer=4, n_embd=64, n_past=n_past),
                                     n_layer=4, n_embd=64) == (junk, n_past)
    for buf in (junk, protocol.STATE_MAGIC + junk):
        try:
            state, n = protocol.decode_state(buf, n_layer=4, n_embd=64)
        except ProtocolError:
            pass
        else:  # accepted: the frame is exactly the encoding of what came out
            assert protocol.encode_state(state, n_layer=4, n_embd=64, n_past=n) == buf
        try:
            t = protocol.decode_tokens(buf, n_vocab=100)
        except ProtocolError:
            pass
        else:
            assert protocol.encode_tokens(t) == buf and t.min() >= 0 and t.max() < 100
    ids = np.frombuffer(junk[: len(junk) // 4 * 4], dtype="<u4") % 100
    if ids.size:
        assert protocol.decode_tokens(protocol.encode_tokens(ids), n_vocab=100).tolist() == ids.tolist()


def test_tokens():
    t = protocol.decode_tokens(protocol.encode_tokens([1, 2, 99]), n_vocab=100)
    assert t.tolist() == [1, 2, 99]
    with pytest.raises(ProtocolError):
        protocol.decode_tokens(protocol.encode_tokens([100]), n_vocab=100)
    with pytest.raises(ProtocolError):
        protocol.decode_tokens(b"\x01\x00\x00")


# The shortcut file format moved to collab.llm.artifact (CLFN): tests/test_llm_shortcut_artifact.py


def test_raw_spans_roundtrip_and_checks():
    from collab.errors import InvalidArgument
    from collab.llm.protocol import decode_rows, encode_rows_raw, inspect_rows

    x = rows(7, 16, seed=5)
    buf = encode_rows_raw(x, [(2, "f32"), (3, "f16"), (2, "f32")])
    assert [s[:2] for s in inspect_rows(buf)["segments"]] == [("f32", 2), ("f16", 3), ("f32", 2)]
    got = decode_rows(buf, n_embd=16)
    np.testing.assert_array_equal(got[:2], x[:2])
    np.testing.assert_array_equal(got[5:], x[5:])
    np.testing.assert_allclose(got[2:5], x[2:5], rtol=1e-3, atol=1e-3)
    assert len(encode_rows_raw(x, [(0, "f32"), (7, "f16")])) < len(encode_rows_raw(x, [(7, "f32")]))
    for bad in ([(6, "f32")], [(7, "int8")], [(3, "f32"), (5, "f16")]):
        with pytest.raises(InvalidArgument):
            encode_rows_raw(x, bad)
