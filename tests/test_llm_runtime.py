"""Native split runner (llama.cpp): head+tail logits equal the full model's, bit for bit on
CPU, for a tiny random GGUF written here and for SmolLM2 at split points 1, middle, L-1;
bad input raises clear errors; sessions are independent; KV state moves between sessions."""
from __future__ import annotations

import numpy as np
import pytest

from _llm_common import require_llama, smollm2_split, tiny_model, tiny_split

pytestmark = pytest.mark.usefixtures("_llama")


@pytest.fixture(scope="module")
def _llama():
    require_llama()


def _run_split(full_path, head_path, tail_path, prompt_tokens, steps=4, n_batch=0):
    """Prefill + greedy steps on the full model and on head->tail; return both logit lists."""
    from collab.llm.runtime import Model, greedy

    full, head, tail = Model(full_path), Model(head_path), Model(tail_path)
    n = len(prompt_tokens)
    with full.session("full", n_batch=n_batch) as f, head.session("head", n_batch=n_batch) as h, \
            tail.session("tail", n_batch=n_batch) as t:
        lf = [f.decode(prompt_tokens, n_outputs=n)]
        rows = h.decode(prompt_tokens)
        assert rows.shape == (n, head.n_embd) and rows.dtype == np.float32
        lt = [t.decode_rows(rows, n_outputs=n)]
        for _ in range(steps):
            tok = greedy(lf[-1][-1])
            lf.append(f.decode([tok]))
            lt.append(t.decode_rows(h.decode([tok])))
        assert f.n_past == h.n_past == t.n_past == n + steps
    return lf, lt


def _max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.mark.parametrize("at", [1, 2, 3])
def test_tiny_split_is_exact(at):
    head, tail = tiny_split(4, at)
    prompt = np.arange(3, 40, 3, dtype=np.int32)
    lf, lt = _run_split(tiny_model(4), head, tail, prompt)
    diff = _max_diff(lf, lt)
    print(f"tiny at={at}: max|diff| = {diff}")
    assert diff == 0.0
    assert all(np.all(np.isfinite(x)) for x in lf)
    assert np.std(lf[0]) > 0  # a real, non-degenerate model output


def test_tiny_chunked_prefill():
    """Prompts longer than n_batch go through several llama_decode calls."""
    head, tail = tiny_split(4, 2)
    prompt = (np.arange(50, dtype=np.int32) * 7) % 290
    lf, lt = _run_split(tiny_model(4), head, tail, prompt, steps=2, n_batch=16)
    assert _max_diff(lf, lt) == 0.0


def test_model_info_and_tokenizer():
    from collab.llm.runtime import Model

    head, tail = tiny_split(4, 3)
    h, t, f = Model(head), Model(tail), Model(tiny_model(4))
    assert (h.part, h.n_layer, h.info["split_at"], h.info["n_layer_total"]) == ("head", 3, 3, 4)
    assert (t.part, t.n_layer) == ("tail", 1)
    assert f.part == "full" and f.n_layer == 4 and f.info["arch"] == "llama"
    toks = f.tokenize("hello world")
    assert toks[0] == f.info["bos"] and len(toks) >= 2
    assert "hello world" in f.detokenize(toks[1:])
    assert f.is_eog(f.info["eos"]) and not f.is_eog(5) and not f.is_eog(10 ** 6)


def test_bad_input():
    from collab.errors import FrameError, InvalidArgument
    from collab.llm.runtime import Model

    head, tail = tiny_split(4, 2)
    h, t = Model(head), Model(tail)
    with pytest.raises(InvalidArgument, match="not a GGUF|cannot open"):
        Model(__file__)
    with pytest.raises(InvalidArgument):
        Model("/nonexistent.gguf")
    with h.session("head", n_ctx=32) as s, t.session("tail", n_ctx=32) as ts:
        with pytest.raises(InvalidArgument, match="out of range"):
            s.decode([1, 10 ** 6])
        with pytest.raises(InvalidArgument, match="out of range"):
            s.decode([-1])
        with pytest.raises(InvalidArgument):
            s.decode([])
        with pytest.raises(InvalidArgument, match="context full"):
            s.decode(np.ones(s.n_ctx + 1, np.int32))
        assert s.n_past == 0  # nothing got in
        # a head session takes input embedding rows (a VLM's image rows): hidden rows out
        assert s.decode_rows(np.zeros((1, h.n_embd), np.float32)).shape == (1, h.n_embd)
        s.truncate(0)
        with pytest.raises(InvalidArgument, match="decode_rows"):
            ts.decode([1])
        with pytest.raises(InvalidArgument, match="shape"):
            ts.decode_rows(np.zeros((2, h.n_embd + 1), np.float32))
        bad = np.zeros((2, h.n_embd), np.float32)
        bad[1, 3] = np.inf
        with pytest.raises(InvalidArgument, match="NaN"):
            ts.decode_rows(bad)
        with pytest.raises(InvalidArgument, match="n_outputs"):
            ts.decode_rows(np.zeros((2, h.n_embd), np.float32), n_outputs=3)
        rows = s.decode([1, 2, 3])
        with pytest.raises(FrameError):
            ts.state_set(b"\x00" * 64)  # not a llama.cpp state
        assert ts.n_past == 0
        ts.decode_rows(rows)
        with pytest.raises(InvalidArgument):
            ts.truncate(5)
        ts.truncate(1)
        assert ts.n_past == 1
    with pytest.raises(ValueError, match="closed"):
        s.decode([1])
    with pytest.raises(InvalidArgument, match="role"):
        h.session("middle")


def test_sessions_are_independent():
    """Interleaved sessions on one model give the same results as one at a time."""
    from collab.llm.runtime import Model

    head, tail = tiny_split(4, 2)
    h, t = Model(head), Model(tail)
    prompts = [np.array([1, 20, 30, 40], np.int32), np.array([1, 50, 60], np.int32)]

    def alone(p):
        with h.session("head") as a, t.session("tail") as b:
            return b.decode_rows(a.decode(p))

    ref = [alone(p) for p in prompts]
    sess = [(h.session("head"), t.session("tail")) for _ in prompts]
    rows = [a.decode(p) for (a, _), p in zip(sess, prompts)]
    out = [b.decode_rows(r) for (_, b), r in zip(sess, rows)]
    for (a, b) in sess:
        a.close()
        b.close()
    assert all(np.array_equal(x, y) for x, y in zip(ref, out))


def test_kv_state_moves_between_sessions():
    from collab.llm.runtime import Model, greedy

    head, tail = tiny_split(4, 2)
    h, t = Model(head), Model(tail)
    prompt = np.array([1, 11, 22, 33, 44, 55], np.int32)
    with h.session("head") as a, h.session("head") as b, t.session("tail") as ts:
        rows = a.decode(prompt)
        state = a.state_get()
        assert len(state) > 0
        b.state_set(state)
        assert b.n_past == a.n_past == prompt.size
        tok = greedy(ts.decode_rows(rows)[-1])
        assert np.array_equal(a.decode([tok]), b.decode([tok]))  # same KV -> same next row


def test_smollm2_split_is_exact():
    """SmolLM2-135M (30 layers, Q4_1/Q8_0): exact at split points 1, 15 and 29."""
    from collab.llm.models import smollm2_path
    from collab.llm.runtime import Model

    parts = smollm2_split((1, 15, 29))
    full = smollm2_path()
    prompt = Model(parts[15][0]).tokenize("The capital of France is")
    for at, (head, tail) in parts.items():
        lf, lt = _run_split(full, head, tail, prompt, steps=3)
        diff = _max_diff(lf, lt)
        print(f"SmolLM2 at={at}: max|diff| = {diff}")
        assert diff == 0.0, f"at={at}: max|diff| {diff}"


def test_fuzz_kv_state_set():
    """Mutated / truncated KV states (what a hostile peer could send past the CRC) are either
    rejected with FrameError or accepted as a consistent cache; never a crash."""
    from collab.errors import FrameError
    from collab.llm.runtime import Model

    head, _ = tiny_split(4, 2)
    h = Model(head)
    with h.session("head") as a, h.session("head") as b:
        a.decode(np.array([1, 5, 6, 7, 8, 9], np.int32))
        st = a.state_get()
        rng = np.random.default_rng(7)
        rejected = 0
        for i in range(150):
            m = bytearray(st)
            if i % 2:
                m = m[: int(rng.integers(1, len(m)))]
            else:
                for _ in range(int(rng.integers(1, 5))):
                    m[int(rng.integers(0, len(m)))] = int(rng.integers(0, 256))
            try:
                b.state_set(bytes(m))
            except FrameError:
                rejected += 1
                assert b.n_past == 0
                continue
            assert 0 < b.n_past <= b.n_ctx
            b.decode([3]) if b.n_past < b.n_ctx else None
        assert rejected >= 75  # every truncation is refused
