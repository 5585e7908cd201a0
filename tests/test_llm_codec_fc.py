"""Native (ggml) FC nets against the numpy reference and torch, the FC-code wire format
(round trip, int8/f16, fuzzed decoder), and "R with the identity codec equals the
uncompressed path"."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab.errors import InvalidArgument
from collab.llm.artifact import KIND_CODEC, KIND_SHORTCUT, FcNet
from collab.llm.fcnet import FcRowPolicy, NativeNet, decode_fc_rows, fc_segments, inspect_fc_rows
from collab.llm.protocol import ProtocolError

from test_llm_shortcut_artifact import random_net


def native(net):
    try:
        return NativeNet(net.to_bytes())
    except InvalidArgument as e:
        pytest.skip(f"collab built without the native FC nets: {e}")


@pytest.mark.parametrize("d,k,n,storage", [(16, 4, 1, "f32"), (64, 8, 300, "f32"), (576, 72, 37, "f16"),
                                           (8, 8, 5, "f16")])
def test_native_matches_numpy(d, k, n, storage):
    rng = np.random.default_rng(d + n)
    x = (rng.standard_normal((n, d)) * 3).astype(np.float32)
    s = random_net(KIND_SHORTCUT, d=d, seed=n, storage=storage)
    ns = native(s)
    assert ns.kind == "shortcut" and ns.n_embd == d and ns.split_at == 3
    assert np.allclose(ns.project(x), s.project(x), atol=2e-4, rtol=2e-4)
    c = random_net(KIND_CODEC, d=d, k=k, seed=n + 1, storage=storage)
    nc = native(c)
    code = nc.encode(x)
    assert np.allclose(code, c.encode(x), atol=2e-4, rtol=2e-4)
    assert np.allclose(nc.decode(code), c.decode(code), atol=2e-4, rtol=2e-4)


def test_native_matches_torch():
    torch = pytest.importorskip("torch")
    from collab.llm.train.nets import Codec, Shortcut, stats

    torch.manual_seed(0)
    d = 32
    X, Y = torch.randn(200, d) * 0.2 + 0.1, torch.randn(200, d) * 4 - 1
    sc = Shortcut(d, stats(X), stats(Y - X))
    cd = Codec(d, d // 8, stats(Y))
    for m in (sc, cd):
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.2)
    hdr = dict(split_at=2, n_layer_total=30, model_digest=b"\0" * 32)
    ns, nc = native(sc.export(**hdr)), native(cd.export(**hdr))
    x = torch.randn(13, d) * 0.2
    with torch.no_grad():
        assert np.allclose(ns.project(x.numpy()), sc(x).numpy(), atol=1e-4, rtol=1e-4)
        assert np.allclose(nc.decode(nc.encode(Y[:13].numpy())), cd(Y[:13]).numpy(), atol=1e-3, rtol=1e-4)


def test_native_rejects_bad_input():
    ns = native(random_net(KIND_SHORTCUT))
    with pytest.raises(ValueError):
        ns.project(np.full((2, 16), np.nan, np.float32))
    with pytest.raises(ValueError):
        ns.project(np.zeros((2, 15), np.float32))
    with pytest.raises(ValueError):
        ns.encode(np.zeros((2, 16), np.float32))  # a shortcut net has no encoder


class IdentityCodec:
    """encode = decode = identity (code_dim = d): the FC path must then change nothing."""

    def __init__(self, d):
        self.n_embd = self.code_dim = d

    def encode(self, x):
        return np.asarray(x, np.float32)

    def decode(self, c):
        return np.asarray(c, np.float32)


def test_identity_codec_is_exact():
    rows = np.random.default_rng(0).standard_normal((11, 16)).astype(np.float16).astype(np.float32)
    for keep in (0, 3, 11, 0.5):
        pol = FcRowPolicy(IdentityCodec(16), keep_last=keep, dtype="f16")
        assert np.array_equal(decode_fc_rows(pol.encode(rows), pol.codec), rows)


@pytest.mark.parametrize("dtype", ["f16", "int8"])
def test_fc_payload_roundtrip(dtype):
    c = random_net(KIND_CODEC, d=16, k=4)
    rows = np.random.default_rng(3).standard_normal((20, 16)).astype(np.float32)
    pol = FcRowPolicy(c, keep_last=5, dtype=dtype)
    p = pol.encode(rows)
    out = decode_fc_rows(p, c)
    lo, hi = pol.span(20)
    assert (lo, hi) == (1, 15)
    assert np.array_equal(out[:lo], rows[:lo]) and np.array_equal(out[hi:], rows[hi:])
    want = c.decode(c.encode(rows[lo:hi]))
    tol = 2e-3 if dtype == "f16" else 5e-2
    assert np.allclose(out[lo:hi], want, atol=tol * np.abs(want).max())
    raw = 20 * 16 * 4
    assert len(p) < raw
    with pytest.raises(InvalidArgument):
        FcRowPolicy(c, dtype="int4")


_C = random_net(KIND_CODEC, d=8, k=2)
_P = FcRowPolicy(_C, keep_last=2, dtype="int8").encode(np.ones((6, 8), np.float32))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.integers(0, 10 ** 6), st.integers(1, 255))
def test_fuzz_fc_payload(junk, pos, val):
    buf = bytearray(_P)
    buf[pos % (len(buf) - 4)] ^= val
    buf[-4:] = struct.pack("<I", zlib.crc32(bytes(buf[:-4])))
    for b in (bytes(buf), junk, _P[: pos % len(_P)], b"CLFC" + junk):
        try:
            out = decode_fc_rows(b, _C)
        except ProtocolError:
            continue
        # accepted only when it is exactly a payload: its checksum holds, its header says
        # these rows and these bytes
        assert zlib.crc32(b[:-4]) == struct.unpack("<I", b[-4:])[0]
        info = inspect_fc_rows(b, n_embd=8)
        assert out.dtype == np.float32 and out.shape == (info["n_rows"], 8) and np.all(np.isfinite(out))
        assert len(b) == 28 + sum(n for _, _, n in fc_segments(info)) + 4  # header, data, crc


def _fc_header(n_rows, lo, hi, d=8, k=2, dt=2):
    return struct.pack("<4sBBHIIIII", b"CLFC", 1, dt, 0, d, k, n_rows, lo, hi)


def test_fc_payload_is_checked_from_its_header_first():
    """Rows beyond the receiver's room, wrong widths and wrong lengths (trailing bytes, one
    byte short) are refused from the header, before the checksum or any decoding."""
    import struct
    import zlib

    rows = np.random.default_rng(5).standard_normal((6, 8)).astype(np.float32)
    p = FcRowPolicy(_C, keep_last=2, dtype="int8").encode(rows)
    info = inspect_fc_rows(p, n_embd=8, max_rows=6)
    assert (info["n_rows"], info["lo"], info["hi"], info["code_dim"], info["dtype"]) == (6, 1, 4, 2, "int8")
    assert fc_segments(info) == [("f32", 1, 32), ("fc-int8", 3, 3 * 4 + 3 * 2), ("f32", 2, 64)]
    assert len(p) == 28 + sum(n for _, _, n in fc_segments(info)) + 4
    with pytest.raises(ProtocolError, match="room"):
        inspect_fc_rows(p, n_embd=8, max_rows=5)
    with pytest.raises(ProtocolError, match="width"):
        inspect_fc_rows(p, n_embd=16)
    for bad in (p + b"\0", p[:-5] + p[-4:]):
        body = bad[:-4]
        bad = body + struct.pack("<I", zlib.crc32(body))  # a valid checksum does not help
        with pytest.raises(ProtocolError, match="bytes"):
            decode_fc_rows(bad, _C)
    # 32 bytes declaring 450,000 rows: refused as more than the room, before anything else
    bomb = _fc_header(450_000, 0, 450_000) + b"\0\0\0\0"
    with pytest.raises(ProtocolError, match="room"):
        inspect_fc_rows(bomb, n_embd=8, max_rows=256)
    with pytest.raises(ProtocolError, match="bytes"):
        inspect_fc_rows(bomb, n_embd=8)  # no room given: its length does not match its header


def test_server_has_no_fc_codec_for_another_model():
    """The shipped codecs are bound to the embedded model: a server of another model (a tiny
    random GGUF) starts with none (it used to fail to start with --load-nets) and refuses FC
    payloads with a clear error instead of decoding them with the wrong net."""
    from _llm_common import require_llama, tiny_model
    from collab.llm.fcnet import FcCodecs, find_artifact

    require_llama()
    if find_artifact("codec", 15, 8) is None:
        pytest.skip("no shipped codec for split 15 in this install (built without llama.cpp?)")
    codecs = FcCodecs.default(tiny_model(), 15)
    assert codecs.by_k == {}
