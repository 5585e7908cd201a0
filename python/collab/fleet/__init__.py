"""Serving past one process: N `collab serve` replicas behind a consistent-hash gRPC proxy.

    collab fleet up --replicas 4 --port 8080 --task echo --task codec-stats
    collab fleet down --port 8080

See collab.fleet.fleet for the state directory, deploy/ for nginx, Envoy and Kubernetes.
"""
from .fleet import Fleet, default_state_dir, probe_proxy, start_proxy

__all__ = ["Fleet", "default_state_dir", "probe_proxy", "start_proxy"]
