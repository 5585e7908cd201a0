"""Device-side recovery of LLM sessions when their replica dies or drains.

    client = FailoverClient(collab.Client("127.0.0.1:8080", options=retry_options()))
    g = device.generate(prompt, mode="kv-handoff", client=client)   # unchanged caller
    client.failovers                                                  # sessions recovered

A session is one gRPC stream pinned to one replica (the proxy hashes its x-collab-session
key). When that stream fails - the replica was SIGKILLed (the proxy resets the stream:
UNAVAILABLE / INTERNAL "RST_STREAM"), its drain deadline cut the session, or a replica
answered FAILED_PRECONDITION "session unknown: ..." - the wrapper opens a new session under
the same key (the proxy now sends it to the next replica on the hash ring) and replays every
message the device sent so far. What that means per mode:
    kv-handoff   resends the head's KV state and the prefill rows; the new replica streams again
    shortcut     resends the prefill rows; the new replica streams again
    roundtrip    restarts the prefill: the prompt rows, then one row per token already seen
    server-only  resends the prompt; the new replica streams again
Decoding is greedy, so the new replica answers the replies the device already has again (one
message per token, streamed or not); they are checked byte for byte (a mismatch raises
DATA_LOSS rather than mixing two generations) and dropped, and the caller's recv() returns the
next reply: one slower request, not an error. The replay log is bounded (max_replay_bytes): the rows and state the device
already sent once.
"""
from __future__ import annotations

import logging
import time
import uuid

from ..transport.errors import TransportError

log = logging.getLogger("collab.llm.failover")

# Stream failures that mean "the replica holding this session is gone", not "bad request".
LOST = {"UNAVAILABLE", "CANCELLED", "ABORTED", "UNKNOWN"}
SESSION_UNKNOWN = "session unknown"


def session_lost(e: BaseException) -> bool:
    if isinstance(e, EOFError):  # the server ended the stream without a reply (cut at a drain deadline)
        return True
    if not isinstance(e, TransportError):
        return False
    if e.code in LOST:
        return True
    if e.code == "FAILED_PRECONDITION" and e.details.startswith(SESSION_UNKNOWN):
        return True
    # A proxy resetting the stream of a dead upstream surfaces as INTERNAL RST_STREAM;
    # a task's own failure is INTERNAL "task failed: ..." and is not retried.
    return e.code == "INTERNAL" and "RST_STREAM" in e.details


class FailoverClient:
    """Wraps a client (collab.Client) so its sessions survive the loss of their replica."""

    def __init__(self, client, *, max_failovers: int = 3, max_replay_bytes: int = 256 << 20,
                 backoff_s: float = 0.1):
        self.client = client
        self.max_failovers = int(max_failovers)
        self.max_replay_bytes = int(max_replay_bytes)
        self.backoff_s = float(backoff_s)
        self.failovers = 0

    def session(self, task: str, meta=None, *, session_key: str | None = None, timeout=None) -> "ReplaySession":
        return ReplaySession(self, task, dict(meta or {}), session_key or uuid.uuid4().hex, timeout)

    def infer(self, *a, **kw):  # stateless: gRPC's retry policy covers it
        return self.client.infer(*a, **kw)

    def close(self):
        self.client.close()


class ReplaySession:
    def __init__(self, owner: FailoverClient, task: str, meta: dict, key: str, timeout):
        self.owner, self.task, self.meta, self.key, self.timeout = owner, task, meta, key, timeout
        self._log = []          # (kind, payload, meta) sent so far
        self._log_bytes = 0
        self._got = []          # (kind, payload) delivered to the caller
        self.recoveries = 0
        self.replicas = []      # replicas that served this session, in order
        self._s = None
        try:
            self._s = self._open()
        except (TransportError, EOFError) as e:
            if not session_lost(e):
                raise
            self._recover(e)

    def _open(self):
        s = self.owner.client.session(self.task, self.meta, session_key=self.key, timeout=self.timeout)
        self.replicas.append(getattr(s, "replica", ""))
        return s

    @property
    def replica(self) -> str:
        return self.replicas[-1] if self.replicas else ""

    def _recover(self, err: BaseException):
        while True:
            if self.recoveries >= self.owner.max_failovers:
                raise err
            self.recoveries += 1
            self.owner.failovers += 1
            log.warning("session %s lost on replica %s (%s); reopening and replaying %d messages", self.key,
                        self.replica or "?", err, len(self._log))
            try:
                self._s.cancel()
            except Exception:
                pass
            time.sleep(self.owner.backoff_s * (2 ** (self.recoveries - 1)))
            try:
                self._s = self._open()
                for kind, payload, meta in self._log:
                    self._s.send(kind, payload, meta)
                for want_kind, want_payload in self._got:
                    kind, payload, _ = self._s.recv(self.timeout)
                    if (kind, bytes(payload)) != (want_kind, want_payload):
                        raise TransportError("DATA_LOSS", f"replica {self.replica} answered the replayed session "
                                             f"{self.key} differently (reply {kind!r}); not mixing generations")
                return
            except (TransportError, EOFError) as e:
                if not session_lost(e):
                    raise
                err = e

    def send(self, kind: str, payload: bytes = b"", meta=None) -> None:
        meta = dict(meta or {})
        self._log_bytes += len(payload)
        if self._log_bytes > self.owner.max_replay_bytes:
            raise TransportError("RESOURCE_EXHAUSTED", f"session sent over {self.owner.max_replay_bytes} bytes: "
                                 "too much to keep for a replay")
        self._log.append((kind, bytes(payload), meta))
        try:
            self._s.send(kind, payload, meta)
        except (TransportError, EOFError) as e:
            if not session_lost(e):
                raise
            self._recover(e)  # the replay re-sent this message too

    def recv(self, timeout=None):
        while True:
            try:
                kind, payload, meta = self._s.recv(timeout if timeout is not None else self.timeout)
            except (TransportError, EOFError) as e:
                if not session_lost(e) or (self._log and self._log[-1][0] == "end"):
                    raise
                self._recover(e)
                continue
            self._got.append((kind, bytes(payload)))
            return kind, payload, meta

    def close(self):
        self._s.close()

    def cancel(self):
        self._s.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):  # the current stream closes (cancels on an exception) as usual
        return self._s.__exit__(*exc)
