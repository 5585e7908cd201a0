"""gRPC server hosting TaskHandlers (collab.v1.Collab, proto/collab.proto).

    from collab.transport import Server
    from collab.transport.builtin import EchoHandler
    with Server([EchoHandler()], port=0, workers=4) as srv:
        print(srv.address)          # "127.0.0.1:PORT"
        srv.wait()                   # or do something else while it serves

Concurrency model: one asyncio event loop (a background thread) runs gRPC; every task call
(infer, open_session, on_message) runs on a pool of `workers` threads. At most `workers`
calls compute at once; up to `max_queue` more unary requests / session opens wait for a
worker; beyond that the server answers RESOURCE_EXHAUSTED at once (back-pressure: nothing is
dropped silently). Messages of already-open sessions are never refused for load (sessions are
bounded by `max_sessions` and process one message at a time).

Sessions: closed (TaskSession.close()) when the client ends the stream, disconnects or is
cancelled, after `session_idle_s` without a message, after `session_max_s`, when the session
reports more than `session_max_bytes` through an optional `nbytes()` method, or at shutdown.
A session's on_message may return an iterator: each reply is written as soon as the task
yields it (token streaming); a client that takes none for `session_idle_s`, goes away or
cancels closes the iterator, so the task stops at its next reply.
One client identity (its network address; with one shared token the address is what tells
clients apart) holds at most `max_sessions_per_client` sessions (default max_sessions / 4).
Behind a proxy every client has the proxy's address: a peer listed in `trusted_proxies` (hosts,
e.g. the fleet's nginx on 127.0.0.1) may name the client it forwards in the x-collab-client
header, which then is the identity; from any other peer that header is ignored.
While sessions are being refused (server full), idle sessions are closed after
`session_idle_busy_s` instead (and a client over its quota has its own idle sessions closed
that fast): idle sessions cannot lock others out. Unary calls do not
use session slots and stay available when every slot is taken.

Limits reported truthfully: a reply larger than `max_message_bytes` is refused with
RESOURCE_EXHAUSTED and counted under `reply_too_large`, not `served`.

Connections (gRPC core options, seconds): the server pings every `keepalive_s` and drops a
connection whose peer does not answer within `keepalive_timeout_s` (a vanished client, a
half-open TCP connection, a stopped process: their calls are reaped); a connection without
calls is closed after `max_connection_idle_s`; a connection that has not finished its HTTP/2
handshake after `handshake_timeout_s` is dropped; every connection is asked to go away after
`max_connection_age_s` and its calls get `max_connection_age_grace_s` more (default: the
session age limit) before it is closed, which bounds how long a stalled call (a truncated
message that never completes) can hold anything.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import os
import threading
import time
from typing import Dict, Iterable, Optional, Union

import grpc
from grpc import aio

from ..errors import InvalidArgument
from . import _wire as w
from .common import AUTH_HEADER, CLIENT_HEADER, DEFAULT_MAX_MESSAGE_BYTES, MAX_CLIENT_ID
from .handlers import (IDENTITY_META, OPEN_KIND, OPENED_KIND, ResourceBusy, TaskHandler, check_replies,
                       check_reply, pop_task_timings)
from .security import check_port, check_tls_pems, warn_if_exposed

log = logging.getLogger("collab.transport.server")


PemSource = Union[str, bytes, os.PathLike, None]


def _read_pem(src: PemSource, what: str) -> Optional[bytes]:
    if src is None:
        return None
    if isinstance(src, bytes):
        return src
    try:
        with open(src, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidArgument(f"cannot read {what} {src!r}: {e}") from None


class _Reject(Exception):
    """Internal: a task call that must end the RPC with a status."""

    def __init__(self, code, details):
        super().__init__(details)
        self.code = code
        self.details = details


class Server:
    """A collab gRPC server. See the module docstring for the concurrency and limit model."""

    def __init__(self, handlers: Union[Iterable[TaskHandler], Dict[str, TaskHandler]], host: str = "127.0.0.1",
                 port: int = 0, *, workers: int = 4, max_queue: Optional[int] = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, auth_token: Optional[str] = None,
                 tls_cert: PemSource = None, tls_key: PemSource = None, max_sessions: int = 64,
                 session_idle_s: float = 300.0, session_max_s: float = 3600.0,
                 session_max_bytes: Optional[int] = None, max_sessions_per_client: Optional[int] = None,
                 session_idle_busy_s: float = 15.0, keepalive_s: float = 30.0, keepalive_timeout_s: float = 10.0,
                 max_connection_idle_s: float = 300.0, max_connection_age_s: float = 3600.0,
                 max_connection_age_grace_s: Optional[float] = None, handshake_timeout_s: float = 10.0,
                 trusted_proxies: Iterable[str] = (), grpc_options=()):
        if isinstance(handlers, dict):
            items = list(handlers.items())
        else:
            items = [(getattr(h, "name", ""), h) for h in handlers]
        self._handlers: Dict[str, TaskHandler] = {}
        for name, h in items:
            if not isinstance(name, str) or not name:
                raise InvalidArgument(f"task handler {h!r} has no name")
            if name in self._handlers:
                raise InvalidArgument(f"two task handlers named {name!r}")
            if not callable(getattr(h, "infer", None)) and not callable(getattr(h, "open_session", None)):
                raise InvalidArgument(f"task handler {name!r} has neither infer() nor open_session()")
            self._handlers[name] = h
        for label, v, lo in (("workers", workers, 1), ("max_sessions", max_sessions, 0),
                             ("max_message_bytes", max_message_bytes, 1024)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InvalidArgument(f"{label} must be an integer >= {lo}, got {v!r}")
        if max_queue is None:
            max_queue = 4 * workers
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise InvalidArgument(f"max_queue must be an integer >= 0, got {max_queue!r}")
        if max_sessions_per_client is None:
            max_sessions_per_client = max(1, max_sessions // 4)
        if isinstance(max_sessions_per_client, bool) or not isinstance(max_sessions_per_client, int) \
                or max_sessions_per_client < 1:
            raise InvalidArgument(f"max_sessions_per_client must be an integer >= 1, got {max_sessions_per_client!r}")
        if max_connection_age_grace_s is None:
            max_connection_age_grace_s = session_max_s
        # plain local checks; collab's shared numeric validator replaces them when it lands
        for label, v in (("session_idle_s", session_idle_s), ("session_max_s", session_max_s),
                         ("session_idle_busy_s", session_idle_busy_s), ("keepalive_s", keepalive_s),
                         ("keepalive_timeout_s", keepalive_timeout_s), ("max_connection_idle_s", max_connection_idle_s),
                         ("max_connection_age_s", max_connection_age_s),
                         ("max_connection_age_grace_s", max_connection_age_grace_s),
                         ("handshake_timeout_s", handshake_timeout_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1e7:
                raise InvalidArgument(f"{label} must be a number of seconds in (0, 1e7], got {v!r}")
        if session_max_bytes is not None and (not isinstance(session_max_bytes, int) or session_max_bytes < 0):
            raise InvalidArgument(f"session_max_bytes must be an integer >= 0 or None, got {session_max_bytes!r}")
        if (tls_cert is None) != (tls_key is None):
            raise InvalidArgument("TLS needs both tls_cert and tls_key")
        if auth_token is not None and (not isinstance(auth_token, str) or not auth_token):
            raise InvalidArgument("auth_token must be a non-empty string or None")
        if isinstance(trusted_proxies, str):
            trusted_proxies = (trusted_proxies,)
        trusted_proxies = tuple(trusted_proxies)
        if not all(isinstance(h, str) and h and len(h) <= 255 for h in trusted_proxies):
            raise InvalidArgument(f"trusted_proxies must be host names or addresses, got {trusted_proxies!r}")
        self.trusted_proxies = frozenset(h.strip("[]") for h in trusted_proxies)
        self.host, self._port_req = host, check_port(port)
        self.workers, self.max_queue = workers, max_queue
        self.max_message_bytes = max_message_bytes
        self.max_sessions = max_sessions
        self.session_idle_s, self.session_max_s = float(session_idle_s), float(session_max_s)
        self.session_max_bytes = session_max_bytes
        self.max_sessions_per_client = max_sessions_per_client
        self.session_idle_busy_s = float(session_idle_busy_s)
        ms = lambda v: int(v * 1000)  # noqa: E731
        self._conn_options = [
            ("grpc.keepalive_time_ms", ms(keepalive_s)), ("grpc.keepalive_timeout_ms", ms(keepalive_timeout_s)),
            ("grpc.http2.ping_timeout_ms", ms(keepalive_timeout_s)),  # what gRPC core enforces on a ping
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),  # keep pinging a peer that sends nothing
            ("grpc.max_connection_idle_ms", ms(max_connection_idle_s)),
            ("grpc.max_connection_age_ms", ms(max_connection_age_s)),
            ("grpc.max_connection_age_grace_ms", ms(max_connection_age_grace_s)),
            ("grpc.server_handshake_timeout_ms", ms(handshake_timeout_s))]
        self._grpc_options = list(grpc_options)  # e.g. ("grpc.keepalive_timeout_ms", 60000) for links with outages
        self._auth = None if auth_token is None else f"Bearer {auth_token}".encode()
        self._tls = None
        if tls_cert is not None:
            cert, key = check_tls_pems(_read_pem(tls_cert, "TLS certificate"), _read_pem(tls_key, "TLS key"),
                                       "tls_cert", "tls_key")
            self._tls = (key, cert)
        self.port: Optional[int] = None
        # runtime state
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[aio.Server] = None
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._close_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._lock = threading.Lock()
        self._inflight = 0       # admitted task calls not finished (loop thread only)
        self._running = 0        # task calls computing now (under _lock)
        self._sessions = 0       # open sessions (loop thread only)
        self._by_client: Dict[str, int] = {}     # open sessions per client identity (loop thread only)
        self._pressure: Dict[Optional[str], float] = {}  # identity (None = everyone) -> refused until
        self._stats = {"served": 0, "rejected": 0, "invalid": 0, "internal": 0, "unauthenticated": 0,
                       "reply_too_large": 0, "sessions_opened": 0, "sessions_closed": 0,
                       "sessions_refused_quota": 0, "sessions_reaped_busy": 0}
        self._stopped = threading.Event()
        # -- fleet hooks: grpc.health.v1, Prometheus metrics, drain, routing headers (replica.py)
        from .replica import ReplicaHooks
        self.replica = ReplicaHooks(self)

    # ---- lifecycle ---------------------------------------------------------------------
    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{host}:{self.port}"

    @property
    def tasks(self):
        return sorted(self._handlers)

    def start(self) -> "Server":
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="collab-worker")
        self._close_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="collab-close")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="collab-grpc", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._astart(), self._loop).result(timeout=30)
        except BaseException:
            self._shutdown_loop()
            raise
        log.info("collab server on %s (%s) tasks=%s workers=%d max_queue=%d max_message=%dB auth=%s",
                 self.address, "tls" if self._tls else "insecure", ",".join(self.tasks), self.workers,
                 self.max_queue, self.max_message_bytes, "token" if self._auth else "none")
        warn_if_exposed(self.host, self._tls is not None, self._auth is not None)
        return self

    async def _astart(self):
        opts = [("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes),
                ("grpc.so_reuseport", 0)]
        given = {k for k, _ in self._grpc_options}  # an explicit grpc_options entry wins
        opts += [kv for kv in self._conn_options if kv[0] not in given] + self._grpc_options
        self._server = aio.server(options=opts)
        self._server.add_generic_rpc_handlers((self._generic_handler(),))
        await self.replica.on_start(self._server)  # fleet hook: standard health service
        bind = f"{self.host if ':' not in self.host else '[' + self.host + ']'}:{self._port_req}"
        if self._tls:
            port = self._server.add_secure_port(bind, grpc.ssl_server_credentials([self._tls]))
        else:
            port = self._server.add_insecure_port(bind)
        if port == 0:
            raise OSError(f"cannot bind {bind}")
        self.port = port
        self.replica.on_bound(port)  # fleet hook: replica id
        await self._server.start()

    def stop(self, grace: Optional[float] = 1.0) -> None:
        """Stop serving: in-flight calls get `grace` seconds, open sessions are closed."""
        if self._thread is None or self._loop is None:
            return
        if self._server is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop).result(
                    timeout=(grace or 0) + 30)
            except Exception:  # pragma: no cover - best effort during shutdown
                log.exception("error while stopping the gRPC server")
        self._shutdown_loop()

    def _shutdown_loop(self):
        loop, thread = self._loop, self._thread
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=30)
        if loop is not None and not loop.is_running():
            loop.close()
        for pool in (self._pool, self._close_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._thread = self._loop = None
        self._stopped.set()

    def drain(self, timeout: float = 30.0, notice_s: float = 0.0) -> float:
        """Fleet hook: readiness false, refuse new work, finish in-flight up to timeout, stop."""
        from .drain import drain
        return drain(self, timeout, notice_s)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until stop() (from another thread or a signal handler). True if stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def stats(self) -> dict:
        with self._lock:
            running = self._running
            s = dict(self._stats)
        s.update(running=running, queued=max(0, self._inflight - running), sessions=self._sessions,
                 workers=self.workers)
        return s

    # ---- gRPC plumbing -------------------------------------------------------------------
    def _generic_handler(self):
        infer, session = self.replica.wrap("Infer", self._infer), self.replica.wrap("Session", self._session)  # fleet
        return grpc.method_handlers_generic_handler(w.SERVICE, {
            "Infer": grpc.unary_unary_rpc_method_handler(
                infer, request_deserializer=w.parse_frame, response_serializer=w.serialize),
            "Session": grpc.stream_stream_rpc_method_handler(
                session, request_deserializer=w.parse_frame, response_serializer=w.serialize),
            "Health": grpc.unary_unary_rpc_method_handler(
                self._health, request_deserializer=w.parse_health, response_serializer=w.serialize),
        })

    def _count(self, key):
        with self._lock:
            self._stats[key] += 1

    async def _check_auth(self, context):
        if self._auth is None:
            return
        values = [v for k, v in (context.invocation_metadata() or ()) if k == AUTH_HEADER]
        if len(values) == 1:
            vb = values[0].encode() if isinstance(values[0], str) else bytes(values[0])
            if hmac.compare_digest(vb, self._auth):
                return
        self._count("unauthenticated")
        # several authorization headers are refused outright: proxies and frameworks disagree on
        # which one counts, so accepting any of them would let a wrong one ride along a right one
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            "several authorization headers" if len(values) > 1 else "missing or wrong bearer token")

    def _identity(self, context) -> str:
        """Who a session belongs to for quotas: its address (the host, without the port), which
        with one shared token is the only thing that tells clients apart; for a trusted proxy's
        call, the client the proxy names (one x-collab-client value; else the proxy itself)."""
        peer = context.peer() or ""
        kind, _, rest = peer.partition(":")
        host = rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else peer
        if host in self.trusted_proxies:
            named = [v for k, v in (context.invocation_metadata() or ()) if k == CLIENT_HEADER]
            if len(named) == 1 and isinstance(named[0], str) and 0 < len(named[0]) <= MAX_CLIENT_ID \
                    and named[0].isprintable():
                return "client:" + named[0]   # its own namespace: a named client is never the proxy
        return host

    async def _call(self, fn, *, admit: bool):
        """Run fn() on a worker thread. Returns (queue_s, run_s, result). Raises _Reject."""
        if admit and self._inflight >= self.workers + self.max_queue:
            self._count("rejected")
            raise _Reject(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"server busy: {self.workers} workers busy and {self.max_queue} requests queued; retry later")
        loop = asyncio.get_running_loop()
        self._inflight += 1
        t_submit = time.perf_counter()
        cancelled = threading.Event()

        def job():
            t_start = time.perf_counter()
            if cancelled.is_set():
                return t_start - t_submit, 0.0, None, None
            with self._lock:
                self._running += 1
            try:
                try:
                    res = fn()
                    err = None
                except BaseException as e:  # reported on the loop thread
                    if not isinstance(e, (ValueError, ResourceBusy, _Reject)):
                        log.error("task raised %s: %s", type(e).__name__, e, exc_info=e)
                    # No traceback kept: its frames would hold the task's locals (a decoded tensor,
                    # say) in a reference cycle until the garbage collector runs.
                    res, err = None, e.with_traceback(None)
                return t_start - t_submit, time.perf_counter() - t_start, res, err
            finally:
                with self._lock:
                    self._running -= 1

        cf = self._pool.submit(job)

        def done(_):
            try:
                loop.call_soon_threadsafe(self._release)
            except RuntimeError:  # loop already closed
                pass
        cf.add_done_callback(done)
        try:
            queue_s, run_s, res, err = await asyncio.wrap_future(cf)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        if err is not None:
            if isinstance(err, _Reject):  # raised on the worker by _stream_replies
                raise err
            if isinstance(err, ResourceBusy):
                self._count("rejected")
                raise _Reject(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
            if isinstance(err, ValueError):
                self._count("invalid")
                raise _Reject(grpc.StatusCode.INVALID_ARGUMENT, f"{type(err).__name__}: {err}")
            self._count("internal")
            raise _Reject(grpc.StatusCode.INTERNAL, f"task failed: {type(err).__name__}: {err}")
        return queue_s, run_s, res

    def _release(self):
        self._inflight -= 1

    def _handler(self, task: str):
        h = self._handlers.get(task)
        if h is None:
            raise _Reject(grpc.StatusCode.NOT_FOUND,
                          f"unknown task {task!r}; this server hosts: {', '.join(self.tasks) or '(none)'}")
        return h

    # ---- RPCs ------------------------------------------------------------------------------
    async def _health(self, req, context):
        s = self.stats()
        from .. import __version__
        status = await self.replica.health_status(context)  # fleet hook: tag the replica; NOT_SERVING if draining
        return w.HealthReply(status=status, version=__version__, tasks=self.tasks, workers=self.workers,
                             running=s["running"], queued=s["queued"], sessions=s["sessions"],
                             served=s["served"], rejected=s["rejected"])

    async def _infer(self, req, context):
        t0 = time.perf_counter()
        await self._check_auth(context)
        await self.replica.admit(context)  # fleet hook: refuse while draining
        if req is None:
            self._count("invalid")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request is not a valid collab.v1.Frame")
        try:
            handler = self._handler(req.task)
            meta = w.frame_meta(req)
            payload = req.payload

            def run():
                return check_reply(handler.infer(payload, meta), req.task)
            queue_s, run_s, (out_payload, out_meta) = await self._call(run, admit=True)
            dec_s, enc_s = pop_task_timings(out_meta)
            resp = w.make_frame(payload=out_payload, meta=out_meta)
        except _Reject as r:
            await context.abort(r.code, r.details)
        except InvalidArgument as e:  # e.g. the handler returned a bad reserved meta value
            self._count("internal")
            await context.abort(grpc.StatusCode.INTERNAL, f"task returned bad meta: {e}")
        resp.request_id = req.request_id
        t = resp.timings
        t.queue_s, t.decode_s, t.encode_s = queue_s, dec_s, enc_s
        t.compute_s = max(0.0, run_s - dec_s - enc_s)
        t.server_s = time.perf_counter() - t0
        await self._check_reply_size(resp, context)
        self._count("served")
        log.info("infer task=%s rid=%s in=%dB out=%dB queue=%.2fms decode=%.2fms compute=%.2fms encode=%.2fms "
                 "server=%.2fms", req.task, req.request_id or "-", len(payload), len(out_payload),
                 1e3 * queue_s, 1e3 * dec_s, 1e3 * t.compute_s, 1e3 * enc_s, 1e3 * t.server_s)
        return resp

    def _reply_too_large(self, msg) -> Optional[str]:
        """Why a reply cannot be sent (counted), or None: gRPC would fail it with
        RESOURCE_EXHAUSTED after we had counted it as served."""
        size = msg.ByteSize()
        if size <= self.max_message_bytes:
            return None
        self._count("reply_too_large")
        return f"reply of {size} bytes exceeds the server's {self.max_message_bytes}-byte message limit"

    async def _check_reply_size(self, msg, context):
        why = self._reply_too_large(msg)
        if why is not None:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, why)

    def _under_pressure(self, identity: str) -> bool:
        now = time.monotonic()
        return any(self._pressure.get(k, 0.0) > now for k in (None, identity))

    def _refuse_session(self, identity: Optional[str]):
        """Remember that a session was refused (for everyone when identity is None): idle
        sessions of those affected get the short idle limit for a while."""
        # long enough for every session that is idle now to reach the short limit and be seen
        self._pressure[identity] = time.monotonic() + 2 * self.session_idle_busy_s + 1.0
        if len(self._pressure) > 4096:  # bounded: forget expired entries
            now = time.monotonic()
            self._pressure = {k: v for k, v in self._pressure.items() if v > now}

    async def _read(self, context, t_open: float, identity: str = ""):
        """The next message of a session, waiting at most the idle limit (the short one while
        sessions are being refused) and never past the session's age limit."""
        read = asyncio.ensure_future(context.read())
        t_last = time.perf_counter()
        try:
            while True:
                now = time.perf_counter()
                remaining = self.session_max_s - (now - t_open)
                if remaining <= 0:
                    raise _Reject(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"session older than its {self.session_max_s:g}s limit")
                busy = self._under_pressure(identity)
                idle = min(self.session_idle_s, self.session_idle_busy_s) if busy else self.session_idle_s
                if now - t_last >= idle:
                    if busy and idle < self.session_idle_s:
                        self._count("sessions_reaped_busy")
                        raise _Reject(grpc.StatusCode.DEADLINE_EXCEEDED,
                                      f"session idle for more than {idle:g}s while other sessions wait for a slot")
                    raise _Reject(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"session idle for more than {self.session_idle_s:g}s")
                # wake up at least every 0.5 s: the idle limit shortens when others start waiting
                done, _ = await asyncio.wait({read}, timeout=min(0.5, remaining, idle - (now - t_last)))
                if done:
                    return read.result()
        finally:
            if not read.done():
                read.cancel()

    @staticmethod
    def _session_frame(kind, payload, meta, req, task):
        """A session reply as a Frame answering `req`, with the task-reported decode/encode
        seconds lifted out of its meta. Returns (frame, decode_s, encode_s)."""
        dec_s, enc_s = pop_task_timings(meta)
        try:
            out = w.make_frame(kind=kind, payload=payload, meta=meta, seq=req.seq)
        except InvalidArgument as e:
            raise _Reject(grpc.StatusCode.INTERNAL, f"task {task!r} returned bad meta: {e}") from None
        out.request_id = req.request_id
        return out, dec_s, enc_s

    def _stream_replies(self, replies, task, req, t0, loop, context):
        """Worker thread: write each reply of a streaming session message as it comes. A write
        that fails (client gone, RPC cancelled) closes the iterator, so the task stops there.
        Returns (replies written, payload bytes written)."""
        t_prev = time.perf_counter()
        n = n_bytes = 0
        try:
            for item in replies:
                (kind, payload, meta), = check_replies([item], task)
                out, dec_s, enc_s = self._session_frame(kind, payload, meta, req, task)
                now = time.perf_counter()
                out.timings.compute_s, out.timings.server_s = max(0.0, now - t_prev - dec_s - enc_s), now - t0
                out.timings.decode_s, out.timings.encode_s = dec_s, enc_s
                why = self._reply_too_large(out)
                if why is not None:
                    raise _Reject(grpc.StatusCode.RESOURCE_EXHAUSTED, why)
                # a client that takes no message for session_idle_s is treated as gone
                asyncio.run_coroutine_threadsafe(context.write(out), loop).result(timeout=self.session_idle_s)
                t_prev = time.perf_counter()
                n, n_bytes = n + 1, n_bytes + len(payload)
        finally:
            close = getattr(replies, "close", None)
            if callable(close):
                close()
        return n, n_bytes

    def _close_session(self, session, task):
        try:
            session.close()
        except Exception:
            log.exception("closing a session of task %r failed", task)
        self._count("sessions_closed")

    async def _session(self, _request_iterator, context):
        await self._check_auth(context)
        await self.replica.admit(context)  # fleet hook: refuse while draining
        identity = self._identity(context)
        if self._sessions >= self.max_sessions:
            self._count("rejected")
            self._refuse_session(None)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many open sessions ({self.max_sessions}); idle ones are being closed, retry "
                                f"in {self.session_idle_busy_s:g}s")
        if self._by_client.get(identity, 0) >= self.max_sessions_per_client:
            self._count("rejected")
            self._count("sessions_refused_quota")
            self._refuse_session(identity)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"this client already has {self.max_sessions_per_client} open sessions (the "
                                "per-client limit); close one or retry later")
        self._sessions += 1
        self._by_client[identity] = self._by_client.get(identity, 0) + 1
        loop = asyncio.get_running_loop()
        session = None
        task = ""
        t_open = time.perf_counter()
        try:
            first = await self._read(context, t_open, identity)
            if first is aio.EOF:
                return
            if first is None:
                raise _Reject(grpc.StatusCode.INVALID_ARGUMENT, "message is not a valid collab.v1.Frame")
            if first.kind != OPEN_KIND:
                raise _Reject(grpc.StatusCode.FAILED_PRECONDITION,
                              self.replica.session_unknown(context, first.kind))  # fleet hook
            task = first.task
            handler = self._handler(task)
            meta = w.frame_meta(first)
            meta[IDENTITY_META] = identity  # set here only: a client cannot choose it
            queue_s, run_s, session = await self._call(lambda: handler.open_session(meta), admit=True)
            if not callable(getattr(session, "on_message", None)):
                bad, session = session, None
                raise _Reject(grpc.StatusCode.INTERNAL,
                              f"task {task!r}: open_session() returned {type(bad).__name__}, not a TaskSession")
            self._count("sessions_opened")
            self.replica.session_opened(context, task)  # fleet hook
            ack = w.Frame(kind=OPENED_KIND, request_id=first.request_id, seq=first.seq)
            ack.timings.queue_s, ack.timings.compute_s = queue_s, run_s
            ack.timings.server_s = time.perf_counter() - t_open
            await self.replica.tag(context)  # fleet hook: x-collab-replica with the headers
            await context.write(ack)
            log.info("session open task=%s rid=%s", task, first.request_id or "-")
            n = 0
            limit = self.session_max_bytes
            nbytes = getattr(session, "nbytes", None)
            while True:
                req = await self._read(context, t_open, identity)
                if req is aio.EOF:
                    break
                t0 = time.perf_counter()
                if req is None:
                    raise _Reject(grpc.StatusCode.INVALID_ARGUMENT, "message is not a valid collab.v1.Frame")
                if req.kind.startswith("collab."):
                    raise _Reject(grpc.StatusCode.INVALID_ARGUMENT, f"reserved message kind {req.kind!r}")
                rmeta = w.frame_meta(req)
                sess = session

                def run(req=req, rmeta=rmeta, t0=t0):
                    replies = sess.on_message(req.kind, req.payload, rmeta)
                    if replies is None or isinstance(replies, (list, tuple)):
                        replies = check_replies(replies, task)
                        return replies, (len(replies), sum(len(r[1]) for r in replies))
                    # an iterator: each reply is written as soon as the task yields it (the
                    # session's headers, x-collab-replica included, went out with the open ack)
                    return [], self._stream_replies(replies, task, req, t0, loop, context)
                queue_s, run_s, (replies, (n_out, bytes_out)) = await self._call(run, admit=False)
                n += 1
                if limit is not None and callable(nbytes):
                    used = int(nbytes())
                    if used > limit:
                        raise _Reject(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                      f"session holds {used} bytes, over its {limit}-byte limit")
                for kind, payload, meta in replies:
                    out, dec_s, enc_s = self._session_frame(kind, payload, meta, req, task)
                    t = out.timings
                    t.queue_s, t.decode_s, t.encode_s = queue_s, dec_s, enc_s
                    t.compute_s = max(0.0, run_s - dec_s - enc_s)
                    t.server_s = time.perf_counter() - t0
                    await self._check_reply_size(out, context)
                    await context.write(out)
                self._count("served")
                self.replica.message(task, time.perf_counter() - t0, len(req.payload), bytes_out)  # fleet hook
                log.info("session msg task=%s seq=%d kind=%s in=%dB replies=%d out=%dB queue=%.2fms run=%.2fms",
                         task, req.seq, req.kind, len(req.payload), n_out, bytes_out, 1e3 * queue_s, 1e3 * run_s)
        except _Reject as r:
            await context.abort(r.code, r.details)
        finally:
            self._sessions -= 1
            left = self._by_client.get(identity, 1) - 1
            if left > 0:
                self._by_client[identity] = left
            else:
                self._by_client.pop(identity, None)
            if session is not None:
                # Not awaited: this also runs when the RPC is being cancelled (client gone).
                try:
                    self._close_pool.submit(self._close_session, session, task)
                except RuntimeError:  # pool already shut down (server stopping)
                    self._close_session(session, task)
                log.info("session closed task=%s", task)
