"""The LLM task under hostile or careless clients: every limit is on by default and refuses
from the headers, before the work or the memory is spent (child processes where a crash or a
memory bomb is possible). Counts, not timings: the tokenizer is never reached by an oversized
prompt, the decoder never by rows that cannot fit the context."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

from _llm_common import require_llama, tiny_split, tiny_task_and_device

pytestmark = pytest.mark.usefixtures("_llama")


@pytest.fixture(scope="module")
def _llama():
    require_llama()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def zero_frame(n_rows: int, width: int) -> bytes:
    """A valid all-zero SLICER frame declaring (n_rows, width), built without allocating it: a
    zero tensor keeps no value, so only the shape varints and the checksum change."""
    from collab import codec

    small = codec.encode(np.zeros((1, width), np.float32), 0.5)
    assert small[7] == 2  # ndim
    pos = 8
    for _ in range(2):  # skip the two shape varints
        while small[pos] & 0x80:
            pos += 1
        pos += 1
    body = small[:8] + _varint(n_rows) + _varint(width) + small[pos:-4]
    frame = body + struct.pack("<I", zlib.crc32(body))
    assert tuple(codec.inspect(frame)["shape"]) == (n_rows, width)
    return frame


def rows_message(frame: bytes, n_rows: int, width: int) -> bytes:
    from collab.llm import protocol

    return protocol._ROWS_HDR.pack(protocol.ROWS_MAGIC, 1, 1, width) + \
        protocol._SEG_HDR.pack(protocol.KIND_SLICER, n_rows, len(frame)) + frame


_CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    from test_llm_hardening import rows_message, zero_frame
    from collab.llm.server import LlmTask
    task = LlmTask(head={head!r}, tail={tail!r}, n_ctx=256)
    width = task.tail.n_embd
    msg = rows_message(zero_frame({n_rows}, width), {n_rows}, width)
    s = task.open_session({{"mode": "roundtrip"}})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = []
    for _ in range(4):
        try:
            s.on_message("rows", msg, {{}})
        except ValueError as e:
            errors.append(f"{{type(e).__name__}}: {{e}}")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"bytes": len(msg), "errors": errors, "peak_growth_kib": after - before}}))
""")


def test_rows_declaring_more_than_the_context_are_refused_before_decoding(tmp_path):
    """A ~80-byte rows message whose all-zero frame declares 450,000 rows (the attack that once
    peaked at +1.46 GB per message on SmolLM2; 115 MB of rows on this 64-wide model) in a
    256-token context: refused from the headers, four times in a row, with no memory growth."""
    head, tail = tiny_split(4, 2)
    n_rows = 450_000
    code = _CHILD.format(tests=str(__import__("pathlib").Path(__file__).parent), head=str(head), tail=str(tail),
                         n_rows=n_rows)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(res)
    assert res["bytes"] < 100
    assert len(res["errors"]) == 4 and all("ProtocolError" in e and "room" in e for e in res["errors"])
    assert res["peak_growth_kib"] < 32 * 1024  # far below the 1 GiB the frame declares


def test_decode_rows_has_a_decoded_size_budget():
    from collab.llm import protocol

    width = 576
    msg = rows_message(zero_frame(450_000, width), 450_000, width)
    assert len(msg) < 100
    info_err = None
    try:
        protocol.decode_rows(msg, n_embd=width)  # library default: refuses 1 GB of output
    except protocol.ProtocolError as e:
        info_err = str(e)
    assert info_err and "bytes" in info_err


def test_oversized_prompt_is_refused_before_tokenizing():
    from collab.errors import InvalidArgument

    task, _ = tiny_task_and_device()
    calls = []
    real = task.head.tokenize
    task.head.tokenize = lambda *a, **k: calls.append(1) or real(*a, **k)
    s = task.open_session({"mode": "server-only"})
    try:
        with pytest.raises(InvalidArgument, match="limit"):
            s.on_message("prompt", b"a" * (20 << 20), {})
        assert calls == []  # the 20 MiB never reached the tokenizer
    finally:
        s.close()
    s = task.open_session({"mode": "server-only", "max_tokens": "2"})
    try:  # a normal prompt still works (and is tokenized once)
        replies = list(s.on_message("prompt", b"the cat", {}))
        assert calls == [1] and 1 <= len(replies) <= 2
    finally:
        s.close()


def test_kv_state_with_trailing_junk_is_refused():
    from collab.llm import protocol

    task, dev = tiny_task_and_device()
    hi = task.head.info
    with dev.head.session("head", n_ctx=256) as h:
        rows = h.decode(dev.head.tokenize("the cat sat"))
        state = h.state_get()
        n_past = h.n_past
    good = protocol.encode_state(state, n_layer=hi["n_layer"], n_embd=hi["n_embd"], n_past=n_past)
    bad = protocol.encode_state(state + b"\x00" * (1 << 20), n_layer=hi["n_layer"], n_embd=hi["n_embd"],
                                n_past=n_past)  # a consistent header and checksum around the junk
    s = task.open_session({"mode": "kv-handoff", "max_tokens": "2"})
    try:
        with pytest.raises(ValueError, match="trailing"):
            s.on_message("state", bad, {})
    finally:
        s.close()
    s = task.open_session({"mode": "kv-handoff", "max_tokens": "2"})
    try:  # the same state without the junk is accepted and generates
        assert list(s.on_message("state", good, {})) == []
        out = list(s.on_message("rows", protocol.encode_rows(rows), {}))
        assert out and out[0][0] == "token"
    finally:
        s.close()


def test_busy_is_resource_exhausted_with_per_client_quota_and_idle_eviction():
    from collab.transport import ResourceBusy

    task, _ = tiny_task_and_device(max_sessions=3, max_sessions_per_identity=2, busy_idle_s=0.2)
    a1 = task.open_session({"mode": "roundtrip", "collab.identity": "a"})
    a2 = task.open_session({"mode": "roundtrip", "collab.identity": "a"})
    with pytest.raises(ResourceBusy) as e:  # a third for the same client: its quota
        task.open_session({"mode": "roundtrip", "collab.identity": "a"})
    assert "per client" in str(e.value)
    b1 = task.open_session({"mode": "roundtrip", "collab.identity": "b"})
    a1.last_active = a2.last_active = b1.last_active = __import__("time").monotonic()  # all just active
    with pytest.raises(ResourceBusy, match="busy"):
        task.open_session({"mode": "roundtrip", "collab.identity": "c"})
    a1.last_active -= 60  # idle for a minute while c waits: c takes its slot
    c1 = task.open_session({"mode": "roundtrip", "collab.identity": "c"})
    assert task.evicted == 1 and task.open_sessions() == 3
    with pytest.raises(ValueError, match="idle while other clients waited"):
        a1.on_message("rows", b"", {})
    for s in (a2, b1, c1):
        s.close()
    assert task.open_sessions() == 0


def test_busy_over_grpc_is_resource_exhausted_not_invalid_argument():
    pytest.importorskip("grpc")
    from collab.transport import Client, Server
    from collab.transport.errors import ServerBusy

    task, _ = tiny_task_and_device(max_sessions=1, max_sessions_per_identity=1)
    with Server([task], port=0) as srv:
        client = Client(srv.address, timeout=60)
        with client.session("llm", {"mode": "roundtrip"}):
            with pytest.raises(ServerBusy) as e:
                client.session("llm", {"mode": "roundtrip"})
            assert e.value.code == "RESOURCE_EXHAUSTED"
            # unary calls still work while the session slots are full
            out, meta, _ = client.infer("llm", b"the cat", {"max_tokens": "2"})
            assert int(meta["n_tokens"]) >= 1
        client.close()


def test_compressed_rows_never_bigger_than_raw():
    from collab.llm import protocol

    x = np.random.default_rng(0).standard_normal((40, 64)).astype(np.float32)
    # no sparsity and 16-bit codes: the codec frame cannot beat float16 rows
    p = protocol.encode_rows(x, protocol.RowPolicy(keep_last=4, sparsity=0.0, qbits=(16,)))
    segs = protocol.inspect_rows(p)["segments"]
    assert [k for k, _, _ in segs] == ["f16", "f32"]
    assert len(p) < x.nbytes
    q = protocol.encode_rows(x, protocol.RowPolicy(keep_last=4, sparsity=0.9, qbits=(4,)))
    assert protocol.inspect_rows(q)["segments"][0][0] == "slicer"


@pytest.mark.parametrize("argv, match", [
    (["--auth-token", ""], "empty"),
    (["--auth-token-file", "/nonexistent/token"], "cannot read token file"),
])
def test_llm_serve_security_options_refuse_fail_open(argv, match):
    from collab.llm import cli
    from collab.transport.security import server_credentials_from_args

    args = _serve_args(argv)
    with pytest.raises(ValueError, match=match):
        server_credentials_from_args(args)
    assert cli.run(args) == 2  # a clear message before the model loads, no traceback


def test_llm_serve_tls_files_checked(tmp_path):
    from collab.transport.security import server_credentials_from_args
    from tls_certs import self_signed

    cert, key = self_signed(tmp_path)
    with pytest.raises(ValueError, match="swapped"):
        server_credentials_from_args(_serve_args(["--tls-cert", str(key), "--tls-key", str(cert)]))
    with pytest.raises(ValueError, match="both"):
        server_credentials_from_args(_serve_args(["--tls-cert", str(cert)]))
    sec = server_credentials_from_args(_serve_args(["--tls-cert", str(cert), "--tls-key", str(key),
                                                    "--auth-token", "t0k"]))
    assert sec.auth_token == "t0k" and sec.tls and sec.tls_cert.startswith(b"-----BEGIN CERTIFICATE")


def test_llm_serve_port_range(capsys):
    with pytest.raises(SystemExit):
        _serve_args(["--port", "99999"])
    assert "0..65535" in capsys.readouterr().err
    assert _serve_args(["--port", "0"]).port == 0


def _serve_args(argv):
    import argparse

    from collab.llm import cli

    p = argparse.ArgumentParser()
    cli.add_arguments(p, "llm")
    args = p.parse_args(["serve", *argv])
    args.command = "llm"
    return args


def test_fc_rows_declaring_more_than_the_context_are_refused_before_decoding():
    """The same check for FC-code payloads (CLFC, the trained codec): the declared rows are
    compared with the room left in the context before the codecs are even loaded."""
    from collab.llm.protocol import ProtocolError
    from collab.llm.server import LlmTask

    head, tail = tiny_split(4, 2)
    task = LlmTask(head=head, tail=tail, n_ctx=256)
    width = task.tail.n_embd
    msg = struct.pack("<4sBBHIIIII", b"CLFC", 1, 2, 0, width, width // 8, 450_000, 0, 450_000) + b"\0" * 4
    s = task.open_session({"mode": "roundtrip"})
    try:
        for _ in range(2):
            with pytest.raises(ProtocolError, match="room"):
                s.on_message("rows", msg, {})
        assert task._codecs is None  # refused from the header: no decoder was loaded
    finally:
        s.close()
