"""LLM session failover: two in-process replicas behind nginx; the replica holding a session is
stopped mid-generation; the device recovers (kv-handoff resends KV state + rows, roundtrip
restarts the prefill) and the caller gets the same tokens, not an error."""
from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("grpc_health.v1")
from _llm_common import require_llama, tiny_model, tiny_split  # noqa: E402

from collab.transport import TaskSession  # noqa: E402
from collab.transport.errors import TransportError  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StopReplicaAfter:
    """Client wrapper: stops the replica serving the first session after its n-th reply."""

    def __init__(self, client, servers, n):
        self.client, self.servers, self.n, self.fired = client, servers, n, None

    def session(self, task, meta=None, **kw):
        s = self.client.session(task, meta, **kw)
        if self.fired is not None:
            return s
        outer, seen = self, [0]
        recv = s.recv

        def recv_then_stop(timeout=None):
            r = recv(timeout)
            seen[0] += 1
            if seen[0] == outer.n and outer.fired is None:
                outer.fired = s.replica
                outer.servers[s.replica].stop(grace=0)
            return r
        s.recv = recv_then_stop
        return s


class Paced:
    """An LlmTask whose streamed replies come one per `gap_s` at most. The server streams the
    tokens of server-only / kv-handoff / shortcut as they are decoded; the tiny model would
    have streamed them all before the test stops the replica, so nothing would be cut."""

    def __init__(self, task, gap_s=0.1):
        self.task, self.gap_s, self.name = task, gap_s, task.name

    def open_session(self, meta):
        inner, gap = self.task.open_session(meta), self.gap_s

        class S(TaskSession):
            def on_message(self, kind, payload, meta):
                out = inner.on_message(kind, payload, meta)
                if out is None or isinstance(out, (list, tuple)):
                    return out

                def paced():
                    try:
                        first = True
                        while True:
                            if not first:
                                time.sleep(gap)
                            first = False
                            try:
                                r = next(out)
                            except StopIteration:
                                return
                            yield r
                    finally:
                        out.close()
                return paced()

            def close(self):
                inner.close()
        return S()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    require_llama()
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    from collab.fleet import start_proxy
    from collab.llm.device import Device
    from collab.llm.server import LlmTask
    from collab.transport import Server

    head, tail = tiny_split(4, 2)
    dev = Device(head=head, full=tiny_model(4), n_ctx=256)
    made = []

    def make():
        srv = Server([Paced(LlmTask(head=head, tail=tail, n_ctx=256, n_threads=1))], port=0, workers=1).start()
        made.append(srv)
        return srv
    port = free_port()
    state = tmp_path_factory.mktemp("proxy")
    proxy = None

    def up():
        nonlocal proxy
        if proxy is not None:
            proxy.terminate()
            proxy.wait(10)
        servers = {s.replica.replica_id: s for s in (make(), make())}
        proxy = start_proxy(state, port, [s.address for s in servers.values()])
        return servers
    yield dev, up, f"127.0.0.1:{port}"
    if proxy is not None:
        proxy.terminate()
        proxy.wait(10)
    for s in made:
        s.stop(grace=0)


@pytest.mark.parametrize("mode,after", [("kv-handoff", 1), ("roundtrip", 3), ("server-only", 1)])
def test_session_survives_its_replica(replicas, mode, after):
    from collab.llm.failover import FailoverClient
    from collab.transport import Client
    from collab.transport.retry import retry_options

    dev, up, target = replicas
    prompt = "the cat sat on the mat"
    ref = dev.generate(prompt, mode="device-only", max_tokens=10, chat=False)
    assert ref.n_generated > after, "the tiny model stopped too early to cut the session mid-way"
    servers = up()
    raw = Client(target, options=retry_options())
    killer = StopReplicaAfter(raw, servers, after)
    fc = FailoverClient(killer)
    try:
        g = dev.generate(prompt, mode=mode, client=fc, max_tokens=10, chat=False)
    finally:
        raw.close()
    assert killer.fired in servers
    assert fc.failovers == 1
    assert g.tokens == ref.tokens and g.text == ref.text


def test_session_lost_classification():
    from collab.llm.failover import session_lost

    assert session_lost(TransportError("UNAVAILABLE", "connection refused"))
    rst = "Stream removed (RST_STREAM (Received RST_STREAM with error code 2))"
    assert session_lost(TransportError("INTERNAL", rst))
    assert session_lost(TransportError("FAILED_PRECONDITION", "session unknown: replica r1 holds no open session 'k'"))
    assert session_lost(EOFError("the server ended the session"))
    assert not session_lost(TransportError("INTERNAL", "task failed: ValueError: x"))
    assert not session_lost(TransportError("INVALID_ARGUMENT", "bad rows"))
    assert not session_lost(TransportError("FAILED_PRECONDITION", "something else"))
    assert not session_lost(ValueError("x"))


def test_gives_up_after_max_failovers(replicas):
    """Every replica gone: the caller gets the error after the bounded failovers, no hang."""
    from collab.llm.failover import FailoverClient
    from collab.transport import Client
    from collab.transport.retry import retry_options

    dev, up, target = replicas
    servers = up()
    raw = Client(target, options=retry_options(max_attempts=2, max_backoff_s=0.2))

    class StopAll(StopReplicaAfter):
        def session(self, task, meta=None, **kw):
            s = super().session(task, meta, **kw)
            for srv in self.servers.values():
                if self.fired is not None:
                    srv.stop(grace=0)
            return s
    fc = FailoverClient(StopAll(raw, servers, 1), max_failovers=2, backoff_s=0.01)
    try:
        with pytest.raises(TransportError):
            dev.generate("the cat sat on the mat", mode="kv-handoff", client=fc, max_tokens=10, chat=False)
    finally:
        raw.close()
    assert fc.failovers == 2


class _FlakyLink:
    """In-process client whose first `fail_opens` session opens fail with UNAVAILABLE and whose
    sessions (when `cut_after` is set) lose their stream after that many replies."""

    def __init__(self, link, fail_opens=0, cut_after=None, cut_code="UNAVAILABLE", cut_details="gone"):
        self.link, self.fail_opens, self.cut_after = link, fail_opens, cut_after
        self.cut_code, self.cut_details, self.opens = cut_code, cut_details, 0

    def session(self, task, meta=None, session_key=None, timeout=None):
        self.opens += 1
        if self.opens <= self.fail_opens:
            raise TransportError("CANCELLED", "replica died while opening")
        s = self.link.session(task, meta)
        if self.cut_after is None or self.opens > self.fail_opens + 1:
            return s
        n, recv, outer = [0], s.recv, self

        def recv_cut(timeout=None):
            if n[0] >= outer.cut_after:
                raise TransportError(outer.cut_code, outer.cut_details)
            n[0] += 1
            return recv(timeout)
        s.recv = recv_cut
        return s


@pytest.fixture(scope="module")
def link_setup():
    require_llama()
    from collab.llm.device import Device
    from collab.net.link import LinkClient
    from collab.llm.server import LlmTask

    head, tail = tiny_split(4, 2)
    dev = Device(head=head, full=tiny_model(4), n_ctx=256)
    return dev, LinkClient([LlmTask(head=head, tail=tail, n_ctx=256, n_threads=1)])


def test_open_that_fails_is_retried(link_setup):
    from collab.llm.failover import FailoverClient

    dev, link = link_setup
    ref = dev.generate("hello world", mode="device-only", max_tokens=6, chat=False)
    fc = FailoverClient(_FlakyLink(link, fail_opens=1), backoff_s=0.0)
    g = dev.generate("hello world", mode="kv-handoff", client=fc, max_tokens=6, chat=False)
    assert g.tokens == ref.tokens and fc.failovers == 1


def test_session_unknown_status_is_recovered(link_setup):
    from collab.llm.failover import FailoverClient

    dev, link = link_setup
    ref = dev.generate("hello world", mode="device-only", max_tokens=6, chat=False)
    assert ref.n_generated > 2
    flaky = _FlakyLink(link, cut_after=2, cut_code="FAILED_PRECONDITION",
                       cut_details="session unknown: replica r1 holds no open session 'k'")
    fc = FailoverClient(flaky, backoff_s=0.0)
    g = dev.generate("hello world", mode="roundtrip", client=fc, max_tokens=6, chat=False)
    assert g.tokens == ref.tokens and fc.failovers == 1 and flaky.opens == 2


def test_task_error_is_not_replayed(link_setup):
    from collab.llm.failover import FailoverClient

    dev, link = link_setup
    fc = FailoverClient(_FlakyLink(link, cut_after=1, cut_code="INVALID_ARGUMENT", cut_details="bad rows"))
    with pytest.raises(TransportError, match="bad rows"):
        dev.generate("hello world", mode="roundtrip", client=fc, max_tokens=6, chat=False)
    assert fc.failovers == 0


def test_replay_log_is_bounded(link_setup):
    from collab.llm.failover import FailoverClient

    dev, link = link_setup
    fc = FailoverClient(_FlakyLink(link), max_replay_bytes=16)
    with pytest.raises(TransportError, match="too much to keep"):
        dev.generate("hello world", mode="kv-handoff", client=fc, max_tokens=6, chat=False)
