"""Decode modes end to end in process (server TaskHandler + device over an emulated link):
server-only, roundtrip and kv-handoff produce exactly device-only's greedy tokens; shortcut
runs (untrained projection, no quality claim); protocol misuse is refused."""
from __future__ import annotations

import numpy as np
import pytest

from _llm_common import require_llama, smollm2_or_skip, smollm2_split, tiny_model, tiny_split

pytestmark = pytest.mark.usefixtures("_llama")


@pytest.fixture(scope="module")
def _llama():
    require_llama()


@pytest.fixture(scope="module")
def tiny_setup():
    from collab.llm.device import Device
    from collab.net.link import LinkClient
    from collab.llm.server import LlmTask

    head, tail = tiny_split(4, 2)
    task = LlmTask(head=head, tail=tail, n_ctx=256)
    dev = Device(head=head, full=tiny_model(4), n_ctx=256)
    return task, dev, LinkClient([task])


def test_tiny_all_modes(tiny_setup):
    from collab.llm.protocol import RowPolicy

    task, dev, client = tiny_setup
    ref = dev.generate("the cat sat on the mat", mode="device-only", max_tokens=12, chat=False)
    assert ref.n_generated >= 1 and ref.round_trips == 0 and ref.bytes_up == 0
    for mode in ("server-only", "roundtrip", "kv-handoff"):
        g = dev.generate("the cat sat on the mat", mode=mode, client=client, max_tokens=12, chat=False)
        assert g.tokens == ref.tokens, mode
        assert g.text == ref.text
        assert g.bytes_up > 0 and g.bytes_down > 0 and g.round_trips >= 1
    rt = dev.generate("the cat sat on the mat", mode="roundtrip", client=client, max_tokens=12, chat=False)
    kv = dev.generate("the cat sat on the mat", mode="kv-handoff", client=client, max_tokens=12, chat=False)
    assert rt.round_trips == rt.n_generated           # one wait per generated token
    assert kv.round_trips == 1                         # state + rows up, then the tokens stream down
    assert kv.extra["state_bytes"] > 0
    sc = dev.generate("the cat sat on the mat", mode="shortcut", client=client, max_tokens=12, chat=False)
    assert sc.tokens[0] == ref.tokens[0]  # the first token never uses the shortcut
    assert 1 <= sc.n_generated <= 12
    # compressed early rows, last tokens exact: runs, first token usually survives
    comp = dev.generate("the cat sat on the mat", mode="roundtrip", client=client, max_tokens=4, chat=False,
                        policy=RowPolicy(keep_last=2, sparsity=0.5, qbits=(8,)))
    assert comp.extra["prefill_payload"] < rt.extra["prefill_payload"]


def test_server_refuses_misuse(tiny_setup):
    from collab.errors import InvalidArgument
    from collab.llm import protocol

    task, dev, _ = tiny_setup
    with pytest.raises(InvalidArgument, match="mode"):
        task.open_session({"mode": "telepathy"})
    with pytest.raises(InvalidArgument, match="max_tokens"):
        task.open_session({"mode": "roundtrip", "max_tokens": "0"})
    s = task.open_session({"mode": "roundtrip", "max_tokens": "3"})
    try:
        with pytest.raises(protocol.ProtocolError):
            s.on_message("rows", b"garbage", {})
        with pytest.raises(InvalidArgument, match="unknown"):
            s.on_message("continue", b"", {})  # streaming modes need no 'continue'; roundtrip never did
        with pytest.raises(InvalidArgument, match="unknown"):
            s.on_message("hello", b"", {})
        with pytest.raises(protocol.ProtocolError, match="width"):
            s.on_message("rows", protocol.encode_rows(np.zeros((2, 8), np.float32)), {})
    finally:
        s.close()
    s = task.open_session({"mode": "kv-handoff", "max_tokens": "3"})
    try:
        with pytest.raises(protocol.ProtocolError):
            s.on_message("state", b"CLKV" + b"\x00" * 40, {})
        rows = np.zeros((3, task.tail.n_embd), np.float32)
        with pytest.raises(InvalidArgument, match="state"):
            s.on_message("rows", protocol.encode_rows(rows), {})
    finally:
        s.close()
    # sessions are freed on close: many open/close cycles never exhaust the slots
    for _ in range(task.max_sessions + 2):
        task.open_session({"mode": "roundtrip"}).close()


def test_unary_infer(tiny_setup):
    task, dev, _ = tiny_setup
    ref = dev.generate("hello world", mode="device-only", max_tokens=6, chat=False)
    text, meta = task.infer("hello world".encode(), {"max_tokens": "6"})
    assert text.decode() == ref.text and int(meta["n_tokens"]) == ref.n_generated


def test_smollm2_kv_handoff_64_tokens_identical():
    """kv-handoff (and roundtrip) on SmolLM2 split at 15: 64 greedy tokens identical to device-only."""
    from collab.llm.device import Device
    from collab.net.link import LinkClient
    from collab.llm.server import LlmTask

    full = smollm2_or_skip()
    head, tail = smollm2_split((1, 15, 29))[15]
    task = LlmTask(head=head, tail=tail, n_ctx=512)
    dev = Device(head=head, full=full, n_ctx=512)
    client = LinkClient([task])
    prompt = "Write a short story about a robot who learns to paint."
    ref = dev.generate(prompt, mode="device-only", max_tokens=64)
    kv = dev.generate(prompt, mode="kv-handoff", client=client, max_tokens=64)
    print(f"device-only: {ref.n_generated} tokens: {ref.text!r}")
    assert ref.n_generated == 64, "the prompt should not end before 64 tokens"
    assert kv.tokens == ref.tokens
    assert kv.round_trips == 1
    assert len(kv.token_times) == 64 and kv.ttst_s > kv.ttft_s
