"""In-process client with an emulated network link (fixed RTT, optional fixed bandwidth).

The same client interface as the gRPC client (collab.transport.base.ClientBase: infer,
session, health, close), and the server side is any TaskHandler (``open_session(meta)`` -> TaskSession with
``on_message`` / ``close``). Each session's server side runs on its own thread, so the
device keeps computing while a message is in flight, as over a real network.

Each direction is a FIFO link: a message of B bytes sent at t arrives at
``max(t, link_free) + B*8/bandwidth + rtt/2`` (serialisation, then propagation). Delays are
real sleeps, so wall-clock timings include them. Bytes counted are payload + meta
(keys and values, UTF-8), the same measure on both sides.

A session's on_message may return an iterator (token streaming): each reply crosses the
downlink as soon as the task yields it. ``cancel()`` closes the server session at once (the
task stops at its next step) and drops what is still in flight, as a cancelled RPC does.
Task errors reach the device as the gRPC client raises them (collab.transport.errors).
"""
from __future__ import annotations

import queue
import threading
import time

from ..errors import InvalidArgument
from ..transport.base import ClientBase, ClientSessionBase
from ..transport.common import check_session_key
from ..transport.errors import TransportError
from ..transport.handlers import check_kind, check_meta, check_payload, check_reply, pop_task_timings
from ..transport.inproc import as_transport_error, call_task, task_timings

__all__ = ["EmulatedLink", "LinkClient", "message_bytes"]


def message_bytes(kind: str, payload: bytes, meta: dict | None) -> int:
    n = len(kind.encode()) + len(payload)
    for k, v in (meta or {}).items():
        n += len(str(k).encode()) + len(str(v).encode())
    return n


class EmulatedLink:
    """One direction of a link: propagation rtt/2 plus serialisation at bandwidth_bps."""

    def __init__(self, rtt_s: float = 0.0, bandwidth_bps: float | None = None):
        if rtt_s < 0 or (bandwidth_bps is not None and bandwidth_bps <= 0):
            raise InvalidArgument("rtt_s must be >= 0 and bandwidth_bps > 0")
        self.one_way = rtt_s / 2.0
        self.bw = bandwidth_bps
        self._free = 0.0
        self._lock = threading.Lock()

    def arrival(self, nbytes: int, now: float) -> float:
        with self._lock:
            start = max(now, self._free)
            ser = nbytes * 8.0 / self.bw if self.bw else 0.0
            self._free = start + ser
            return start + ser + self.one_way


def _sleep_until(t: float, stop: threading.Event | None = None):
    """Sleep until perf_counter() reaches t, or until `stop` is set."""
    while True:
        d = t - time.perf_counter()
        if d <= 0:
            return
        if stop is None:
            time.sleep(min(d, 0.05))
        elif stop.wait(min(d, 0.05)):
            return


class _LinkSession(ClientSessionBase):
    def __init__(self, handler, meta, rtt_s, bandwidth_bps):
        self._task = handler.name
        self._server = call_task(lambda: handler.open_session(dict(meta)), f"task {self._task!r} open_session")
        self.up = EmulatedLink(rtt_s, bandwidth_bps)
        self.down = EmulatedLink(rtt_s, bandwidth_bps)
        self._inbox: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        self.bytes_up = 0
        self.bytes_down = 0
        self.messages_up = 0
        self.messages_down = 0
        self._closed = False
        self._cancelled = threading.Event()
        self._server_lock = threading.Lock()
        self._server_closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            item = self._inbox.get()
            if item is None:
                return
            arrive, kind, payload, meta = item
            _sleep_until(arrive, self._cancelled)
            if self._cancelled.is_set():
                continue
            replies = None
            try:
                replies = self._server.on_message(kind, payload, meta) or []
                for rk, rp, rm in replies:
                    if self._cancelled.is_set():  # nobody takes it any more: stop the task here
                        break
                    rp = bytes(rp)
                    nb = message_bytes(rk, rp, rm)
                    self.bytes_down += nb
                    self.messages_down += 1
                    self._outbox.put((self.down.arrival(nb, time.perf_counter()), rk, rp, dict(rm or {})))
            except Exception as e:  # delivered to the device as an error reply
                if not self._cancelled.is_set():
                    self._outbox.put((time.perf_counter(), "__error__", e, {}))
            finally:
                close = getattr(replies, "close", None)  # a generator: run its clean-up now
                if callable(close):
                    close()

    def send(self, kind: str, payload: bytes = b"", meta: dict | None = None):
        if self._closed:
            raise InvalidArgument("session is closed")
        kind, payload, meta = check_kind(kind), check_payload(payload), check_meta(meta)
        nb = message_bytes(kind, payload, meta)
        self.bytes_up += nb
        self.messages_up += 1
        self._inbox.put((self.up.arrival(nb, time.perf_counter()), kind, payload, meta))
        return self.messages_up

    def recv(self, timeout: float | None = 600.0):
        if self._cancelled.is_set():
            raise TransportError("CANCELLED", "session was cancelled")
        try:
            arrive, kind, payload, meta = self._outbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no reply from the server") from None
        if kind == "__error__":
            err = as_transport_error(payload, f"task {self._task!r}")
            if err is payload:
                raise err
            raise err from payload
        _sleep_until(arrive)
        return kind, payload, meta

    def _close_server(self):
        with self._server_lock:
            if self._server_closed:
                return
            self._server_closed = True
        self._server.close()

    def close(self):
        """End the session after the server has handled every message sent."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put(None)
        self._thread.join(timeout=600)
        self._close_server()

    def cancel(self):
        """Abort now: the server session is closed first (a streaming task stops within one
        step), messages not yet handled are dropped and replies in flight are discarded."""
        self._cancelled.set()
        self._close_server()
        if not self._closed:
            self._closed = True
            self._inbox.put(None)
        self._thread.join(timeout=600)
        while True:  # replies the device will never take
            try:
                self._outbox.get_nowait()
            except queue.Empty:
                break


class LinkClient(ClientBase):
    """Client for TaskHandlers in this process, over an emulated link. Single-shot calls share
    one FIFO link per direction (concurrent calls queue behind each other); each session has its
    own pair."""

    def __init__(self, handlers, *, rtt_s: float = 0.0, bandwidth_bps: float | None = None):
        self._handlers = {h.name: h for h in handlers}
        self.rtt_s = float(rtt_s)
        self.bandwidth_bps = bandwidth_bps
        self._up = EmulatedLink(self.rtt_s, bandwidth_bps)
        self._down = EmulatedLink(self.rtt_s, bandwidth_bps)
        self.served = 0
        self.failed = 0

    def _handler(self, task):
        if task not in self._handlers:
            raise TransportError("NOT_FOUND", f"no task {task!r} (have {sorted(self._handlers)})")
        return self._handlers[task]

    def infer(self, task: str, payload: bytes, meta: dict | None = None, *, timeout: float | None = None,
              session_key: str | None = None):
        """(payload, meta, timings): the request crosses the uplink, the handler runs, the reply
        crosses the downlink; timings as the gRPC client reports them (transfer = link time)."""
        h = self._handler(task)
        check_session_key(session_key)  # one replica here: nothing to route
        t0 = time.perf_counter()
        payload, meta = check_payload(payload), check_meta(meta)
        _sleep_until(self._up.arrival(message_bytes("", payload, meta), t0))
        t1 = time.perf_counter()
        try:
            out, out_meta = call_task(lambda: check_reply(h.infer(payload, dict(meta)), task), f"task {task!r}")
        except TransportError:
            self.failed += 1
            raise
        run_s = time.perf_counter() - t1
        dec, enc = pop_task_timings(out_meta)
        _sleep_until(self._down.arrival(message_bytes("", out, out_meta), time.perf_counter()))
        total = time.perf_counter() - t0
        tim = task_timings(run_s, dec, enc, total)
        tim["transfer"] = max(0.0, total - run_s)
        self.served += 1
        return out, out_meta, tim

    def session(self, task: str, meta: dict | None = None, *, timeout: float | None = None,
                session_key: str | None = None) -> _LinkSession:
        check_session_key(session_key)
        return _LinkSession(self._handler(task), check_meta(meta), self.rtt_s, self.bandwidth_bps)

    def health(self, timeout: float = 0.0) -> dict:
        return {"status": "SERVING", "version": "emulated-link", "tasks": sorted(self._handlers), "workers": 1,
                "running": 0, "queued": 0, "sessions": 0, "served": self.served, "rejected": self.failed}

    def close(self) -> None:
        pass
