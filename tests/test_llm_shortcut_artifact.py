"""The CLFN file of trained MindFusion nets (collab.llm.artifact): round trips, refusals of
corrupt or mismatched files (numpy reader and the native loader), fuzzed parser, and the
numpy reference against an independent float64 forward."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab.errors import FrameError
from collab.llm.artifact import KIND_CODEC, KIND_SHORTCUT, ArtifactError, FcNet, expected_tensors

DIG = bytes(range(32))


def random_net(kind, d=16, k=4, seed=0, storage="f32", at=3):
    rng = np.random.default_rng(seed)
    t = {n: (rng.standard_normal(s) * (0.5 if len(s) == 1 else s[1] ** -0.5)).astype(np.float32)
         for n, s in expected_tensors(kind, d, k)}
    return FcNet(kind, d, at, 30, DIG, t, code_dim=k if kind == KIND_CODEC else 0, meta={"x": 1}, storage=storage)


def ref_mlp(x, layers):
    h = x.astype(np.float64)
    for i, (w, b) in enumerate(layers):
        h = h @ w.astype(np.float64).T + b
        if i < len(layers) - 1:
            h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    return h


@pytest.mark.parametrize("storage", ["f32", "f16"])
def test_roundtrip_and_reference(storage):
    rng = np.random.default_rng(1)
    s = random_net(KIND_SHORTCUT, storage=storage)
    s2 = FcNet.from_bytes(s.to_bytes(), kind=KIND_SHORTCUT, n_embd=16, model_digest=DIG, split_at=3)
    assert s2.storage == storage and s2.meta == {"x": 1}
    for n in s.tensors:
        assert np.array_equal(s.tensors[n], s2.tensors[n])
    x = rng.standard_normal((9, 16)).astype(np.float32)
    t = s2.tensors
    ref = x + ref_mlp(x, [(t[f"w{i}"], t[f"b{i}"]) for i in range(1, 5)])
    assert np.allclose(s2.project(x), ref, atol=1e-4, rtol=1e-4)
    c = FcNet.from_bytes(random_net(KIND_CODEC, storage=storage).to_bytes())
    t = c.tensors
    code = c.encode(x)
    assert code.shape == (9, 4)
    assert np.allclose(code, ref_mlp(x, [(t["enc1.w"], t["enc1.b"]), (t["enc2.w"], t["enc2.b"])]), atol=1e-4)
    assert np.allclose(c.decode(code), ref_mlp(code, [(t["dec1.w"], t["dec1.b"]), (t["dec2.w"], t["dec2.b"])]),
                       atol=1e-4)


def test_refusals():
    buf = random_net(KIND_SHORTCUT).to_bytes()
    with pytest.raises(ArtifactError, match="different model"):
        FcNet.from_bytes(buf, model_digest=b"\1" * 32)
    with pytest.raises(ArtifactError, match="n_embd"):
        FcNet.from_bytes(buf, n_embd=32)
    with pytest.raises(ArtifactError, match="codec"):
        FcNet.from_bytes(buf, kind=KIND_CODEC)
    with pytest.raises(ArtifactError, match="split point"):
        FcNet.from_bytes(buf, split_at=4)
    bad = bytearray(buf)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(ArtifactError, match="checksum"):
        FcNet.from_bytes(bytes(bad))
    with pytest.raises(ArtifactError):
        FcNet.from_bytes(buf[:-9])
    with pytest.raises(ArtifactError, match="magic"):
        FcNet.from_bytes(b"XXXX" + buf[4:])
    t = dict(random_net(KIND_SHORTCUT).tensors)
    t["w1"] = t["w1"].copy()
    t["w1"][0, 0] = np.nan
    with pytest.raises(ValueError):
        FcNet(KIND_SHORTCUT, 16, 3, 30, DIG, t)


def test_native_loader_refuses_like_numpy():
    from collab.llm.fcnet import NativeNet

    try:
        buf = random_net(KIND_SHORTCUT).to_bytes()
        NativeNet(buf)
    except ValueError as e:
        if "no native FC nets" in str(e) or "without llama" in str(e):
            pytest.skip("collab built without llama.cpp/ggml")
        raise
    with pytest.raises(FrameError, match="different model"):
        NativeNet(buf, model_digest=b"\1" * 32)
    with pytest.raises(FrameError, match="n_embd"):
        NativeNet(buf, n_embd=32)
    with pytest.raises(FrameError, match="codec"):
        NativeNet(buf, kind="codec")
    bad = bytearray(buf)
    bad[200] ^= 1
    with pytest.raises(FrameError, match="checksum"):
        NativeNet(bytes(bad))


_FUZZ = random_net(KIND_CODEC, d=8, k=2).to_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10 ** 6), st.integers(1, 255), st.booleans())
def test_fuzz_parsers(pos, val, fix_crc):
    import struct
    import zlib

    from collab.llm.fcnet import NativeNet

    buf = bytearray(_FUZZ)
    buf[pos % (len(buf) - 4)] ^= val
    if fix_crc:  # get past the checksum so the structural checks are exercised too
        buf[-4:] = struct.pack("<I", zlib.crc32(bytes(buf[:-4])))
    for b in (bytes(buf), _FUZZ[: pos % len(_FUZZ)]):
        try:
            FcNet.from_bytes(b)
        except ArtifactError:
            pass
        try:
            NativeNet(b)
        except ValueError:  # FrameError / InvalidArgument / unsupported build
            pass
