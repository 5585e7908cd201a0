"""Mercury split runtime: device -> (in-process channel) -> server TaskHandler, tiny ViT."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collab.vit as cv
from collab.errors import InvalidArgument
from collab.transport.inproc import InprocClient
from collab.vit import mercury
from collab.vit.runtime import MercuryDevice, MercuryHandler, MetaStore, decode_logits, tiny_params
from collab.vit.runtime_model import NumpyViT


@pytest.fixture()
def setup(tmp_path):
    p = tiny_params(grid=4, depth=3, seed=3)
    vit = NumpyViT(p, grid=4)
    r = np.random.default_rng(5)
    for rate, split in [(0.5, 1), (0.75, 2)]:
        k = cv.prune_count(16, rate)
        np.savez(tmp_path / f"meta_r{int(rate * 100)}_s{split}.npz", meta=r.standard_normal((k, 32)).astype(np.float32),
                 head_w=r.standard_normal((32, 5)).astype(np.float32), head_b=r.standard_normal(5).astype(np.float32),
                 rate_pct=int(rate * 100), split=split, method="ours")
    np.savez(tmp_path / "topk_r50_s1.npz", meta=np.zeros((8, 32), np.float32), head_w=np.zeros((32, 5), np.float32),
             head_b=np.zeros(5, np.float32), rate_pct=50, split=1, method="topk")
    store = MetaStore(str(tmp_path))
    return vit, store


def _direct(vit, store, images, rate, split):
    """The same model in one process: the numpy ViT patched by mercury.apply, then the head."""
    m, w, b = store.get(int(rate * 100), split)
    try:
        return mercury.apply(vit, rate, split=split, meta=m).forward(images) @ w + b
    finally:
        mercury.remove(vit)


@pytest.mark.parametrize("rate,split", [(0.5, 1), (0.75, 2)])
def test_split_roundtrip_matches_direct(setup, rate, split):
    vit, store = setup
    assert set(store.entries) == {(50, 1), (75, 2)}  # the topk file is not a runtime artifact
    images = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    dev = MercuryDevice(vit, rate, split)
    payload, meta = dev.run(images)
    client = InprocClient([MercuryHandler(vit, store)])
    out, rmeta, timings = client.infer("mercury-vit", payload, meta)
    logits = decode_logits(out, rmeta)
    want = _direct(vit, store, images, rate, split)
    np.testing.assert_allclose(logits, want, atol=2e-2, rtol=1e-2)  # tokens travel as float16
    assert rmeta["argmax"] == ",".join(str(i) for i in logits.argmax(1))
    k = cv.prune_count(16, rate)
    assert len(payload) == 3 * (17 - k) * 32 * 2


def test_split_roundtrip_with_cls_mean_head(tmp_path):
    """A head twice the width reads CLS beside the mean of the other tokens (meta tokens included)."""
    vit = NumpyViT(tiny_params(grid=4, depth=3, seed=4), grid=4)
    r = np.random.default_rng(6)
    k = cv.prune_count(16, 0.5)
    m, w, b = (r.standard_normal((k, 32)).astype(np.float32), r.standard_normal((64, 5)).astype(np.float32),
               r.standard_normal(5).astype(np.float32))
    np.savez(tmp_path / "meta_r50_s2.npz", meta=m, head_w=w, head_b=b, rate_pct=50, split=2, method="ours")
    images = r.standard_normal((2, 3, 8, 8)).astype(np.float32)
    payload, meta = MercuryDevice(vit, 0.5, 2).run(images)
    logits = decode_logits(*MercuryHandler(vit, MetaStore(str(tmp_path))).infer(payload, meta))
    try:
        patched = mercury.apply(vit, 0.5, split=2, meta=m)
        want = patched.features(patched.run_blocks(patched.embed(images), 0, vit.depth), "cls+mean") @ w + b
    finally:
        mercury.remove(vit)
    np.testing.assert_allclose(logits, want, atol=2e-2, rtol=1e-2)  # tokens travel as float16


def test_split_with_slicer_codec(setup):
    vit, store = setup
    images = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    dev = MercuryDevice(vit, 0.5, 1, codec={"sparsity": 0.0, "qbits": [12]})
    payload, meta = dev.run(images)
    assert meta["encoding"] == "slicer"
    h = MercuryHandler(vit, store)
    logits = decode_logits(*h.infer(payload, meta))
    np.testing.assert_allclose(logits, _direct(vit, store, images, 0.5, 1), atol=5e-2, rtol=5e-2)
    sess = h.open_session({})
    [(kind, out, m)] = sess.on_message("tokens", payload, meta)
    assert kind == "logits" and m["argmax"] == ",".join(str(i) for i in logits.argmax(1))
    sess.close()


def test_bad_requests(setup):
    vit, store = setup
    h = MercuryHandler(vit, store)
    images = np.zeros((1, 3, 8, 8), np.float32)
    payload, meta = MercuryDevice(vit, 0.5, 1).run(images)
    for bad in [{**meta, "shape": "1,5,32"}, {**meta, "rate": "x"}, {**meta, "split": "9"}, {**meta, "encoding": "raw"},
                {k: v for k, v in meta.items() if k != "shape"}, {**meta, "rate": "0.25"}, {**meta, "shape": "1,9,31"}]:
        with pytest.raises(InvalidArgument):
            h.infer(payload, bad)
    with pytest.raises(InvalidArgument):
        h.infer(payload[:-2], meta)
    nan = np.frombuffer(payload, np.float16).copy()
    nan[3] = np.nan
    with pytest.raises(InvalidArgument):
        h.infer(nan.tobytes(), meta)
    with pytest.raises(ValueError):  # collab.errors.FrameError
        h.infer(b"\x00" * 16, {**meta, "encoding": "slicer"})
    with pytest.raises(InvalidArgument):
        h.open_session({}).on_message("other", payload, meta)
    with pytest.raises(InvalidArgument):
        MercuryDevice(vit, 0.5, 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=3000), rate=st.sampled_from(["0.5", "0.75", "0.1", "nan", "-1"]),
       shape=st.sampled_from(["1,9,32", "2,9,32", "1,5,32", "0,9,32", "1,9", "a,b,c"]),
       enc=st.sampled_from(["f16", "slicer"]), split=st.sampled_from(["1", "2", "3", "0", "-1"]))
def test_fuzz_server_only_raises_value_errors(setup, payload, rate, shape, enc, split):
    vit, store = setup
    h = MercuryHandler(vit, store)
    try:
        out, m = h.infer(payload, {"rate": rate, "split": split, "shape": shape, "encoding": enc})
    except ValueError:
        return
    assert len(out) == 4 * int(m["shape"].split(",")[0]) * 5


def test_runtime_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, numpy as np, collab.vit.runtime as r, collab.vit.weights, collab.vit.data; "
            "from collab.vit.runtime_model import NumpyViT; v = NumpyViT(r.tiny_params(), 4); "
            "r.MercuryDevice(v, 0.5, 1).run(np.zeros((1, 3, 8, 8), np.float32)); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_split_over_grpc_transport(setup):
    pytest.importorskip("grpc")
    import collab
    from collab.transport import Server
    vit, store = setup
    images = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    payload, meta = MercuryDevice(vit, 0.75, 2).run(images)
    want = decode_logits(*MercuryHandler(vit, store).infer(payload, meta))
    with Server([MercuryHandler(vit, store)], port=0, workers=1) as srv, collab.Client(srv.address) as c:
        out, rmeta, timings = c.infer("mercury-vit", payload, meta)
        np.testing.assert_array_equal(decode_logits(out, rmeta), want)
        with pytest.raises(ValueError):
            c.infer("mercury-vit", payload[:-2], meta)
