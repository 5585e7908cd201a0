"""Device/server transport: a gRPC service (proto/collab.proto) hosting named tasks.

    collab.transport.Server      gRPC server hosting TaskHandlers        (needs grpcio)
    collab.transport.Client      device-side client (also collab.Client) (needs grpcio)
    collab.transport.InprocClient  same interface, in-process, no network (no grpcio needed)
    collab.transport.base        ClientBase: the one client interface (infer, session, health, close)
    collab.transport.handlers    TaskHandler / TaskSession contract       (no grpcio needed)
    collab.transport.security    token / TLS options of every server command, exposure warning
    collab.transport.builtin     'echo' and 'codec-stats' tasks for tests and smoke checks

Submodules that need grpcio are imported on first use, so task code can import
collab.transport.handlers on a machine without it.
"""
from __future__ import annotations

import importlib

from .errors import InvalidRequest, ServerBusy, TransportError, Unauthenticated
from .base import ClientBase, ClientSessionBase

# the task contract (handlers) is server side: client code never needs to load it
_LAZY = {"Server": ".server", "Client": ".client", "ClientSession": ".client", "InprocClient": ".inproc",
         "TaskHandler": ".handlers", "TaskSession": ".handlers", "ResourceBusy": ".handlers"}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'collab.transport' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


__all__ = ["Server", "Client", "ClientSession", "InprocClient", "ClientBase", "ClientSessionBase", "TaskHandler",
           "TaskSession", "ResourceBusy", "TransportError",
           "InvalidRequest", "ServerBusy", "Unauthenticated"]
