"""The split VLM: head rows over text + image rows, tail, answer; equal to the unsplit VLM run by
llama.cpp's own mtmd helper when the rows go exact (R = identity). Tiny random models."""
from __future__ import annotations

import numpy as np
import pytest

from _llm_common import require_llama, tiny_split
from _vlm_common import TINY_EMBD, require_mtmd, tiny_llm, tiny_parts

from collab.errors import InvalidArgument


def _need_native_vision():
    require_llama()
    from collab.vlm.split import vision_available

    if not vision_available():
        pytest.skip("collab was built without libmtmd (VLM image encoder stubbed)")


def _device(**kw):
    from collab.vlm.split import VlmDevice

    head, _tail = tiny_split(4, 2)
    _, _, mmproj = tiny_parts()
    return VlmDevice(mmproj, head=head, full=tiny_llm(), n_ctx=256, **kw)


def _client():
    from collab.llm.server import LlmTask
    from collab.net.link import LinkClient

    head, tail = tiny_split(4, 2)
    return LinkClient([LlmTask(head=head, tail=tail, n_ctx=256)])


def test_native_encoder_matches_ctypes_mtmd():
    _need_native_vision()
    require_mtmd()
    from collab.vlm.mtmd import LlamaModel, MtmdVision
    from collab.vlm.split import NativeVision

    _, _, mmproj = tiny_parts()
    img = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    a = NativeVision(mmproj, tiny_llm()).encode(img)
    b = MtmdVision(mmproj, LlamaModel(tiny_llm())).encode(img)
    assert a.shape == (4, TINY_EMBD)
    np.testing.assert_array_equal(a, b)


def test_layout_matches_mtmd_chunks():
    _need_native_vision()
    require_mtmd()
    from collab.vlm.mtmd import LlamaModel, MtmdVision, Prompt

    _, _, mmproj = tiny_parts()
    pr = Prompt(MtmdVision(mmproj, LlamaModel(tiny_llm())), "Is this a bag?")
    before, after = _device().layout("Is this a bag?")
    assert list(before) == pr.before and list(after) == pr.after and pr.n_image == 4


def test_head_takes_image_rows_and_tail_matches_full():
    _need_native_vision()
    from collab.llm.runtime import Model

    head, tail = tiny_split(4, 2)
    rng = np.random.default_rng(1)
    toks = rng.integers(3, 200, 5)
    rows = rng.standard_normal((4, TINY_EMBD)).astype(np.float32)
    mf, mh, mt = Model(tiny_llm()), Model(head), Model(tail)
    with mf.session("full", n_ctx=64) as f, mh.session("head", n_ctx=64) as h, mt.session("tail", n_ctx=64) as t:
        f.decode(toks)
        ref = f.decode_rows(rows)
        hid = np.concatenate([h.decode(toks), h.decode_rows(rows)])
        assert hid.shape == (9, TINY_EMBD)
        got = t.decode_rows(hid)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
        with pytest.raises(Exception):
            h.decode_rows(np.full((2, TINY_EMBD), np.nan, np.float32))


def test_tail_in_the_full_models_chunks_reproduces_its_logits_exactly():
    """The full model decodes text, image rows, text as three batches; a tail that decodes the
    head's rows in the same three batches (the device's "chunks" meta) gives the very same
    logits, bit for bit. One batch differs by float rounding (llama.cpp's kernels depend on the
    batch shape), which is what flipped near-tie answers of the trained VLM."""
    _need_native_vision()
    from collab.llm.runtime import Model
    from collab.llm.server import _prefill_chunks

    head, tail = tiny_split(4, 2)
    rng = np.random.default_rng(3)
    before, after = rng.integers(3, 200, 7), rng.integers(3, 200, 5)
    img = rng.standard_normal((4, TINY_EMBD)).astype(np.float32)
    mf, mh, mt = Model(tiny_llm()), Model(head), Model(tail)
    with mf.session("full", n_ctx=64) as f, mh.session("head", n_ctx=64) as h:
        f.decode(before)
        f.decode_rows(img)
        want = f.decode(after)[-1]
        hid = np.concatenate([h.decode(before), h.decode_rows(img), h.decode(after)])
    spans = _prefill_chunks(f"{len(before)},{len(img)},{len(after)}", hid.shape[0])
    assert spans == [(0, 7), (7, 11), (11, 16)]
    with mt.session("tail", n_ctx=64) as t:
        for a, b in spans:
            got = t.decode_rows(hid[a:b])[-1]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("spec", ["7,4", "7,4,6", "0,11,5", "-1,12,5", "a,b", "7;4;5", ",".join(["1"] * 65)])
def test_bad_prefill_chunks_are_refused(spec):
    from collab.llm.server import _prefill_chunks

    n = 65 if spec.count(",") == 64 else 16
    with pytest.raises(InvalidArgument):
        _prefill_chunks(spec, n)
    assert _prefill_chunks(None, n) == [(0, n)]


def test_split_sends_chunk_boundaries():
    _need_native_vision()
    dev = _device()
    img = np.random.default_rng(4).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    before, after = dev.layout("Is this a bag?")
    sent = []

    class Spy:
        def __init__(self, c):
            self.c = c

        def session(self, task, meta):
            s = self.c.session(task, meta)
            send = s.send

            def spy(kind, payload, m):
                sent.append((kind, dict(m)))
                return send(kind, payload, m)

            s.send = spy
            return s

    client = _client()
    local = dev.ask(img, "Is this a bag?", mode="device-only", max_tokens=12)
    for mode in ("roundtrip", "kv-handoff"):
        sent.clear()
        g = dev.ask(img, "Is this a bag?", mode=mode, client=Spy(client), max_tokens=12)
        assert g.tokens == local.tokens, mode
        rows = [m for k, m in sent if k == "rows"]
        assert rows[0] == {"chunks": f"{len(before)},4,{len(after)}"}
        assert all("chunks" not in m for m in rows[1:])


def test_split_answer_equals_unsplit_mtmd():
    """R = identity. The chain: llama.cpp's own mtmd_helper_eval_chunks on the whole model and
    collab's native prefill (collab_vlm_vision rows + text tokens in a FULL session) give the
    same prompt logits (to float rounding: different batch shapes); the split (device head with
    the image rows, server tail over the link) generates exactly the device-only tokens.
    (Greedy tokens of a tiny random model are compared with the unsplit run only for the first
    token: its logits are flat enough for rounding to flip later near-ties.)"""
    _need_native_vision()
    require_mtmd()
    from collab.vlm.mtmd import UnsplitVlm

    _, _, mmproj = tiny_parts()
    ref = UnsplitVlm(mmproj, tiny_llm(), n_ctx=256)
    dev = _device()
    client = _client()
    rng = np.random.default_rng(2)
    for q in ("What is this item?", "Is this footwear?"):
        img = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
        want, n_past = ref.prefill(img, q)
        before, after = dev.layout(q)
        assert n_past == len(before) + 4 + len(after)
        dev._pending = (before, dev.vision.encode(img), after)
        with dev.full.session("full", n_ctx=256) as s:
            got = dev._prefill(s)[-1][-1]
        dev._pending = None
        np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max())
        local = dev.ask(img, q, mode="device-only", max_tokens=6)
        assert local.tokens[0] == int(want.argmax())
        for mode in ("roundtrip", "kv-handoff"):
            g = dev.ask(img, q, mode=mode, client=client, max_tokens=6)
            assert g.tokens == local.tokens, mode
    ref.close()


def test_bad_inputs_are_clear_errors():
    _need_native_vision()
    from collab.vlm.split import NativeVision

    dev = _device()
    with pytest.raises(InvalidArgument):
        dev.ask(np.zeros((28, 28, 3), np.float32), "q?", mode="device-only")
    with pytest.raises(InvalidArgument):
        dev.ask(np.zeros((28, 28, 3), np.uint8), "", mode="device-only")
    with pytest.raises(InvalidArgument):
        dev.ask(np.zeros((28, 28, 3), np.uint8), "q?", mode="server-only")
    _, _, mmproj48 = tiny_parts(n_out=48)
    with pytest.raises(InvalidArgument, match="width 48"):
        NativeVision(mmproj48, tiny_llm())
    v = NativeVision(tiny_parts()[2], tiny_llm())
    from collab import _native

    with pytest.raises(InvalidArgument, match="resize"):
        v._v.encode(np.zeros((30, 28, 3), np.uint8))
    del _native


def test_native_truncated_or_foreign_mmproj(tmp_path):
    _need_native_vision()
    from collab.vlm.split import NativeVision

    data = tiny_parts()[2].read_bytes()
    bad = tmp_path / "t.gguf"
    bad.write_bytes(data[: len(data) - 1000])
    with pytest.raises(InvalidArgument, match="truncated"):
        NativeVision(bad, tiny_llm())
    with pytest.raises(InvalidArgument, match="not an mmproj"):
        NativeVision(tiny_llm(), tiny_llm())
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(InvalidArgument):
        NativeVision(tmp_path / "junk.gguf", tiny_llm())
