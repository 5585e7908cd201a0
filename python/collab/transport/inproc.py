"""In-process loopback with the same interface as collab.Client (no network, no grpcio).

    client = InprocClient([MyTaskHandler()])
    out, meta, timings = client.infer("my-task", payload, {"split": "4"})
    with client.session("my-task", {}) as s:
        s.send("step", b"...", {})
        kind, payload, meta = s.recv()

Calls run synchronously in the caller's thread. Errors are raised as the same exception
types the gRPC client raises (InvalidRequest for a task's ValueError, TransportError with
code NOT_FOUND / INTERNAL, ...), and meta is normalised the way the wire normalises it, so
code tested here behaves the same against a real server.
"""
from __future__ import annotations

import collections
import time
import uuid
from typing import Dict, Iterable, Optional, Union

from .base import ClientBase, ClientSessionBase
from .common import check_session_key
from .errors import InvalidRequest, ServerBusy, TransportError
from .handlers import (OPEN_KIND, ResourceBusy, TaskHandler, check_kind, check_meta, check_payload, check_replies,
                       check_reply, pop_task_timings, wire_meta)


def as_transport_error(e: Exception, what: str) -> TransportError:
    """What the gRPC client raises when a task call fails with `e` (e itself if it is one)."""
    if isinstance(e, TransportError):
        return e
    if isinstance(e, ResourceBusy):
        return ServerBusy("RESOURCE_EXHAUSTED", str(e))
    if isinstance(e, ValueError):
        return InvalidRequest("INVALID_ARGUMENT", f"{type(e).__name__}: {e}")
    return TransportError("INTERNAL", f"{what} failed: {type(e).__name__}: {e}")


def call_task(fn, what: str):
    """Run a task call and raise what the gRPC client would raise for its failure."""
    try:
        return fn()
    except Exception as e:
        err = as_transport_error(e, what)
        if err is e:
            raise
        raise err from e


def task_timings(run_s, dec, enc, total):
    return {"queue": 0.0, "compute": max(0.0, run_s - dec - enc), "decode": dec, "encode": enc,
            "server": run_s, "transfer": 0.0, "total": total}


class InprocClient(ClientBase):
    def __init__(self, handlers: Union[Iterable[TaskHandler], Dict[str, TaskHandler]]):
        items = handlers.items() if isinstance(handlers, dict) else [(h.name, h) for h in handlers]
        self._handlers = dict(items)
        self.served = 0      # single-shot calls answered (health() reports them)
        self.rejected = 0    # refused for load (a task's ResourceBusy)

    def _handler(self, task):
        h = self._handlers.get(task)
        if h is None:
            raise TransportError("NOT_FOUND", f"unknown task {task!r}; hosted: {', '.join(sorted(self._handlers))}")
        return h

    def infer(self, task: str, payload: bytes, meta=None, *, timeout: Optional[float] = None,
              session_key: Optional[str] = None):
        t0 = time.perf_counter()
        check_session_key(session_key)  # one replica here: nothing to route
        h = self._handler(task)
        meta = check_meta(meta)
        meta.setdefault("request_id", uuid.uuid4().hex[:16])
        rid = meta["request_id"]
        meta = call_task(lambda: wire_meta(meta), "request")
        payload = check_payload(payload)
        t1 = time.perf_counter()
        try:
            out_payload, out_meta = call_task(lambda: check_reply(h.infer(payload, dict(meta)), task),
                                              f"task {task!r}")
        except ServerBusy:
            self.rejected += 1
            raise
        run_s = time.perf_counter() - t1
        dec, enc = pop_task_timings(out_meta)
        out_meta = call_task(lambda: wire_meta(out_meta), f"task {task!r} reply")
        out_meta.pop("request_id", None)
        out_meta["request_id"] = rid
        self.served += 1
        return out_payload, out_meta, task_timings(run_s, dec, enc, time.perf_counter() - t0)

    def session(self, task: str, meta=None, *, timeout: Optional[float] = None,
                session_key: Optional[str] = None) -> "InprocSession":
        check_session_key(session_key)
        return InprocSession(self._handler(task), task, check_meta(meta))

    def health(self, timeout: float = 0.0) -> dict:
        return {"status": "SERVING", "version": "inproc", "tasks": sorted(self._handlers), "workers": 1,
                "running": 0, "queued": 0, "sessions": 0, "served": self.served, "rejected": self.rejected}

    def close(self) -> None:
        pass


class InprocSession(ClientSessionBase):
    def __init__(self, handler: TaskHandler, task: str, meta: dict):
        self.task = task
        meta.setdefault("request_id", uuid.uuid4().hex[:16])
        self.request_id = meta["request_id"]
        meta = call_task(lambda: wire_meta(meta), "request")
        self._session = call_task(lambda: handler.open_session(meta), f"task {task!r} open_session")
        if not callable(getattr(self._session, "on_message", None)):
            raise TransportError("INTERNAL", f"task {task!r}: open_session() did not return a TaskSession")
        self._pending = collections.deque()
        self._seq = 0
        self._closed = False
        self.last_timings: dict = {}

    def send(self, kind: str, payload: bytes, meta=None) -> int:
        if self._closed:
            raise TransportError("CANCELLED", "session is closed")
        kind = check_kind(kind)
        payload = check_payload(payload)
        meta = call_task(lambda: wire_meta(check_meta(meta)), "request")
        if kind.startswith(OPEN_KIND):  # pragma: no cover - check_kind already refuses collab.*
            raise InvalidRequest("INVALID_ARGUMENT", "reserved kind")
        self._seq += 1
        t0 = time.perf_counter()
        try:
            replies = call_task(lambda: check_replies(self._session.on_message(kind, payload, meta), self.task),
                            f"task {self.task!r}")
        except TransportError:
            self._close_session()  # like the server: an error ends the session
            raise
        run_s = time.perf_counter() - t0
        for k, p, m in replies:
            dec, enc = pop_task_timings(m)
            self._pending.append((k, p, call_task(lambda: wire_meta(m), "reply"), task_timings(run_s, dec, enc, run_s)))
        return self._seq

    def recv(self, timeout: Optional[float] = None):
        if not self._pending:
            if self._closed:
                raise EOFError("the session is closed")
            raise TimeoutError("no pending message (in-process sessions answer synchronously in send())")
        k, p, m, t = self._pending.popleft()
        self.last_timings = t
        return k, p, m

    def _close_session(self):
        if not self._closed:
            self._closed = True
            self._session.close()

    def close(self, timeout: float = 0.0) -> None:
        self._close_session()

    def cancel(self) -> None:
        self._close_session()


__all__ = ["InprocClient", "InprocSession", "as_transport_error", "call_task", "task_timings"]
