"""What makes a Server one replica of a fleet: standard health, Prometheus metrics, drain,
and the routing headers. The Server calls these hooks from one marked block per method.

Headers (gRPC metadata):
    x-collab-session   sent by clients (Client.infer/session(session_key=...)); the proxy's
                       consistent hash on it pins every request of a session to one replica
    x-collab-replica   sent back by the server in the initial metadata of every reply: the
                       replica that served it (env COLLAB_REPLICA_ID, default host:port)

Statuses a fleet client must know:
    UNAVAILABLE          "replica draining: ..."  (drain.DRAINING_DETAIL) - retry elsewhere
    FAILED_PRECONDITION  "session unknown: ..."   a session message reached a replica that
                         holds no such session (its replica died or drained, or the stream
                         was re-routed): reopen the session; collab.llm.failover replays it
"""
from __future__ import annotations

import os
import socket
import time

import grpc

from .common import REPLICA_HEADER, SESSION_HEADER
from .drain import DRAINING_DETAIL
from .health import ReplicaHealth
from .metrics import ServerMetrics

SESSION_UNKNOWN = "session unknown"


def session_key(context) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == SESSION_HEADER:
            return v if isinstance(v, str) else bytes(v).decode("utf-8", "replace")
    return ""


class ReplicaHooks:
    def __init__(self, server):
        self.server = server
        self.metrics = ServerMetrics(server.stats)
        self.health = ReplicaHealth(server.tasks)
        self.draining = False
        self.replica_id = os.environ.get("COLLAB_REPLICA_ID", "")
        self._session_task = {}

    # -- lifecycle (called on the server's loop / by drain) ----------------------------------
    async def on_start(self, aio_server) -> None:
        await self.health.register(aio_server)

    def on_bound(self, port: int) -> None:
        if not self.replica_id:
            self.replica_id = f"{socket.gethostname()}:{port}"

    def begin_drain(self) -> None:
        import asyncio

        self.draining = True
        self.metrics.draining.set(1)
        loop = self.server._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self.health.set(False), loop).result(timeout=10)

    # -- per RPC -------------------------------------------------------------------------------
    async def admit(self, context) -> None:
        """Refuse new work while draining (a trailers-only answer: the gRPC retry policy may
        still retry it)."""
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, DRAINING_DETAIL,
                                trailing_metadata=((REPLICA_HEADER, self.replica_id),))

    async def tag(self, context) -> None:
        """Send x-collab-replica with the response headers. Called only when the answer is
        ready (Infer) or the session is accepted (Session): headers commit a call, so a replica
        killed before this point leaves the call retryable (the proxy answers 502 ->
        UNAVAILABLE) instead of cutting a committed stream (INTERNAL)."""
        await context.send_initial_metadata(((REPLICA_HEADER, self.replica_id),))

    async def health_status(self, context) -> str:
        await self.tag(context)
        return "NOT_SERVING" if self.draining else "SERVING"

    def session_unknown(self, context, got_kind: str) -> str:
        key = session_key(context) or "(no x-collab-session header)"
        return (f"{SESSION_UNKNOWN}: replica {self.replica_id} holds no open session {key!r} (a session starts "
                f"with a 'collab.open' frame, got kind {got_kind!r}); reopen it")

    def session_opened(self, context, task: str) -> None:
        self._session_task[id(context)] = task
        self.metrics.sessions.labels(task).inc()

    def session_closed(self, context) -> None:
        task = self._session_task.pop(id(context), None)
        if task is not None:
            self.metrics.sessions.labels(task).dec()

    def message(self, task: str, seconds: float, n_in: int, n_out: int) -> None:
        self.metrics.observe(task, "SessionMessage", "OK", seconds, n_in, n_out)

    def wrap(self, rpc: str, fn):
        """Count an RPC's final status (and, for Infer, latency and bytes) around its handler."""
        metrics = self.metrics

        async def unary(req, context):
            t0 = time.perf_counter()
            resp = None
            try:
                resp = await fn(req, context)
                await self.tag(context)
                return resp
            finally:
                code = context.code() if resp is None else None
                name = getattr(code, "name", "OK" if resp is not None else "UNKNOWN")
                task = getattr(req, "task", "") if rpc == "Infer" else ""
                n_in = len(req.payload) if rpc == "Infer" and req is not None else 0
                n_out = len(resp.payload) if rpc == "Infer" and resp is not None else 0
                metrics.observe(task, rpc, name, time.perf_counter() - t0 if rpc == "Infer" else None, n_in, n_out)

        async def stream(req_iter, context):
            task = "-"
            ok = False
            try:
                await fn(req_iter, context)
                ok = True
            finally:
                task = self._session_task.get(id(context), task)
                code = None if ok else context.code()
                metrics.observe(task, rpc, getattr(code, "name", "OK" if ok else "CANCELLED"), None)
                self.session_closed(context)

        return stream if rpc == "Session" else unary
