"""The one client interface of collab: what device code programs against, whether the task
runs behind gRPC (collab.transport.Client), in this process (InprocClient) or in this process
behind an emulated link (collab.net.LinkClient).

    client.infer(task, payload, meta) -> (payload, meta, timings)     single shot
    client.session(task, meta) -> ClientSessionBase                   bidirectional stream
    (both take session_key=: a routing key that sends every call with one key to one replica
    behind a fleet proxy; clients without replicas check it and otherwise ignore it)
        .send(kind, payload, meta) -> seq;  .recv(timeout) -> (kind, payload, meta);  .close()
    client.health() -> dict                                           status, tasks, counters
    client.close()

Timings are seconds (see collab.transport.client for the keys). Errors are
collab.transport.errors.TransportError and its subclasses on every implementation.
"""
from __future__ import annotations

import abc
from typing import Optional, Tuple

from .common import Meta


class ClientSessionBase(abc.ABC):
    """One open session. A context manager: leaving the block closes it."""

    @abc.abstractmethod
    def send(self, kind: str, payload: bytes, meta: Optional[Meta] = None) -> int:
        """Queue one message; returns its sequence number."""

    @abc.abstractmethod
    def recv(self, timeout: Optional[float] = None) -> Tuple[str, bytes, Meta]:
        """The next server message (kind, payload, meta)."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the session (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class ClientBase(abc.ABC):
    """A connection to the tasks of one server (real, in-process or emulated)."""

    @abc.abstractmethod
    def infer(self, task: str, payload: bytes, meta: Optional[Meta] = None, *,
              timeout: Optional[float] = None, session_key: Optional[str] = None) -> Tuple[bytes, Meta, dict]:
        """Single-shot inference: (payload, meta, timings)."""

    @abc.abstractmethod
    def session(self, task: str, meta: Optional[Meta] = None, *,
                timeout: Optional[float] = None, session_key: Optional[str] = None) -> ClientSessionBase:
        """Open a session on `task`."""

    @abc.abstractmethod
    def health(self, timeout: float = 5.0) -> dict:
        """Server status: {"status", "tasks", "served", "rejected", ...}."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (idempotent)."""

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server can be reached (nothing to wait for in-process)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


__all__ = ["ClientBase", "ClientSessionBase"]
