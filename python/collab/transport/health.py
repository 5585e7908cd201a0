"""The standard gRPC health service (grpc.health.v1.Health, grpcio-health-checking) of a server.

Service names answered by Check/Watch:
    ""                    the replica as a whole (what load balancers and Kubernetes probe)
    "collab.v1.Collab"    the same, under the collab service name
    "<task>"              one hosted task, e.g. "llm" or "codec-stats"
All are SERVING while the server runs and turn NOT_SERVING as soon as it starts draining
(readiness false), so a proxy or orchestrator stops sending it new work.

    grpc_health_probe -addr=127.0.0.1:50051 -service=llm       # or:
    python -m collab.transport.health 127.0.0.1:50051 llm
"""
from __future__ import annotations

import sys
from typing import Iterable

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from . import _wire as w

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ReplicaHealth:
    """Owns the health servicer of one server; call the async methods on the server's loop."""

    def __init__(self, tasks: Iterable[str]):
        self.services = ["", w.SERVICE] + sorted(tasks)
        self.servicer = HealthServicer()

    async def register(self, aio_server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, aio_server)
        await self.set(True)

    async def set(self, serving: bool) -> None:
        for s in self.services:
            await self.servicer.set(s, SERVING if serving else NOT_SERVING)


def check(target: str, service: str = "", timeout: float = 2.0, metadata=()) -> str:
    """One grpc.health.v1 Check: 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN' or 'UNAVAILABLE'."""
    import grpc

    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        try:
            r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout, metadata=metadata)
        except grpc.RpcError as e:
            return "SERVICE_UNKNOWN" if e.code() == grpc.StatusCode.NOT_FOUND else "UNAVAILABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)


if __name__ == "__main__":  # a tiny probe for scripts and container health checks
    st = check(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
    print(st)
    sys.exit(0 if st == "SERVING" else 1)
