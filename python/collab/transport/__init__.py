"""Device/server transport: a gRPC service (proto/collab.proto) hosting named tasks.

    collab.transport.Server      gRPC server hosting TaskHandlers        (needs grpcio)
    collab.transport.Client      device-side client (also collab.Client) (needs grpcio)
    collab.transport.InprocClient  same interface, in-process, no network (no grpcio needed)
    collab.transport.handlers    TaskHandler / TaskSession contract       (no grpcio needed)
    collab.transport.builtin     'echo' and 'codec-stats' tasks for tests and smoke checks

Submodules that need grpcio are imported on first use, so task code can import
collab.transport.handlers on a machine without it.
"""
from __future__ import annotations

import importlib

from .errors import InvalidRequest, ServerBusy, TransportError, Unauthenticated
from .handlers import TaskHandler, TaskSession

_LAZY = {"Server": ".server", "Client": ".client", "ClientSession": ".client", "InprocClient": ".inproc"}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'collab.transport' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


__all__ = ["Server", "Client", "ClientSession", "InprocClient", "TaskHandler", "TaskSession", "TransportError",
           "InvalidRequest", "ServerBusy", "Unauthenticated"]
