"""Prometheus metrics of one collab server (prometheus_client).

Each Server owns its own CollectorRegistry, so several servers in one process (tests, the
in-process fleet) do not mix their numbers. `collab serve --metrics-port P` exposes it at
http://HOST:P/metrics.

    collab_requests_total{task,rpc,code}      finished RPCs (rpc: Infer, Session, SessionMessage)
    collab_request_seconds{task,rpc}          latency histogram (server side, message -> reply)
    collab_queue_depth                        task calls admitted and waiting for a worker
    collab_running                            task calls computing now
    collab_open_sessions{task}                sessions open now
    collab_bytes_in_total{task} / _out_total  payload bytes received / sent
    collab_draining                           1 while the replica drains
"""
from __future__ import annotations

from typing import Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

# Latency buckets from sub-millisecond codec calls to multi-second LLM prefills.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    def __init__(self, stats: Callable[[], dict]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("collab_requests", "finished RPCs by task, rpc and gRPC status code",
                                ("task", "rpc", "code"), registry=r)
        self.latency = Histogram("collab_request_seconds", "server-side latency of one request or session message",
                                 ("task", "rpc"), buckets=BUCKETS, registry=r)
        self.sessions = Gauge("collab_open_sessions", "sessions open now", ("task",), registry=r)
        self.bytes_in = Counter("collab_bytes_in", "payload bytes received", ("task",), registry=r)
        self.bytes_out = Counter("collab_bytes_out", "payload bytes sent", ("task",), registry=r)
        self.draining = Gauge("collab_draining", "1 while this replica drains", registry=r)
        Gauge("collab_queue_depth", "task calls waiting for a worker", registry=r).set_function(
            lambda: stats()["queued"])
        Gauge("collab_running", "task calls computing now", registry=r).set_function(lambda: stats()["running"])
        self._http = None

    def observe(self, task: str, rpc: str, code: str, seconds: Optional[float], n_in: int = 0, n_out: int = 0):
        task = task or "-"
        self.requests.labels(task, rpc, code).inc()
        if seconds is not None:
            self.latency.labels(task, rpc).observe(seconds)
        if n_in:
            self.bytes_in.labels(task).inc(n_in)
        if n_out:
            self.bytes_out.labels(task).inc(n_out)

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose /metrics over HTTP; returns the bound port (port 0 = any free port)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return server.server_address[1]

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
