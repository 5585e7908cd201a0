"""The contract between the transport and the tasks it hosts.

A server hosts named tasks. Each task is a `TaskHandler`; a bidirectional stream opens a
`TaskSession` on it. Both are plain Python objects: nothing here needs gRPC, so task code can
be written and tested in-process (see collab.transport.inproc) before any network exists.

    class TaskHandler:
        name: str
        def infer(self, payload: bytes, meta: dict[str, str]) -> tuple[bytes, dict[str, str]]
        def open_session(self, meta: dict[str, str]) -> TaskSession

    class TaskSession:
        def on_message(self, kind, payload, meta) -> list[tuple[str, bytes, dict[str, str]]]
        def close(self) -> None

Errors: raise a ValueError subclass (collab.errors.InvalidArgument / FrameError) for bad
input: the client gets INVALID_ARGUMENT and the server keeps serving. Raise `ResourceBusy`
when the request is fine but the task has no room for it now (all slots taken, a memory
budget full): the client gets RESOURCE_EXHAUSTED (retry later). Any other exception becomes
INTERNAL (also without stopping the server).

Reserved meta keys. The transport lifts these out of / into the wire Frame's typed fields, so
tasks see them as ordinary meta entries:
    "model"       Frame.model
    "split"       Frame.split (decimal integer)
    "request_id"  Frame.request_id
The gRPC server also sets "collab.identity" in open_session's meta: the client's host (what a
client sends under that key is replaced), for per-client limits such as session quotas.
A task may report where its time went by putting these keys in its *response* meta (seconds,
as decimal strings); the transport removes them from the meta and reports them as timings:
    "collab.decode_s"   time spent decoding the request payload
    "collab.encode_s"   time spent encoding the response payload
The rest of the handler's wall time is reported as compute.

Optional: a TaskSession may define `nbytes() -> int` (memory it holds); the server then
enforces its per-session memory limit after every message.
"""
from __future__ import annotations

import time
from typing import List, Tuple

from ..errors import InvalidArgument
from .common import (IDENTITY_META, OPEN_KIND, OPENED_KIND, RESERVED_META, TIMING_DECODE,  # noqa: F401
                     TIMING_ENCODE, Meta, Reply, check_kind, check_meta, check_payload, parse_split,
                     wire_meta)


class ResourceBusy(Exception):
    """Raised by a task that cannot take this request now (slots or a budget full): the client
    gets RESOURCE_EXHAUSTED, the server counts it as rejected."""


class TaskSession:
    """State of one bidirectional stream. `close()` is called exactly once when the stream ends
    for any reason (client finished, client disconnected, limit hit, server stopping)."""

    # on_message may also return an iterator of replies: the gRPC server then writes each one as
    # soon as it is yielded (streaming) and closes the iterator when the client goes away.
    def on_message(self, kind: str, payload: bytes, meta: Meta) -> List[Reply]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TaskHandler:
    """One hosted task. Subclasses set `name` and override `infer` and/or `open_session`.
    Handlers are called from several worker threads at once: keep shared state thread-safe."""

    name: str = ""

    def infer(self, payload: bytes, meta: Meta) -> Tuple[bytes, Meta]:
        raise InvalidArgument(f"task {self.name!r} has no single-shot inference (use a session)")

    def open_session(self, meta: Meta) -> TaskSession:
        raise InvalidArgument(f"task {self.name!r} has no sessions (use infer)")


# ---- checks of what tasks return (server side and the in-process loopback) ---------------

def check_reply(reply, task: str) -> Tuple[bytes, Meta]:
    """Validate what a handler's infer() returned."""
    if not isinstance(reply, tuple) or len(reply) != 2:
        raise TypeError(f"task {task!r}: infer() must return (payload: bytes, meta: dict), got {type(reply).__name__}")
    return check_payload(reply[0]), check_meta(reply[1])


def check_replies(replies, task: str) -> List[Reply]:
    """Validate what a session's on_message() returned."""
    if replies is None:
        return []
    out = []
    for r in replies:
        if not isinstance(r, tuple) or len(r) != 3:
            raise TypeError(f"task {task!r}: on_message() must return a list of (kind, payload, meta)")
        out.append((str(r[0]), check_payload(r[1]), check_meta(r[2])))
    return out


def pop_task_timings(meta: Meta) -> Tuple[float, float]:
    """Remove the task-reported decode/encode seconds from a reply's meta."""
    def take(key):
        v = meta.pop(key, None)
        if v is None:
            return 0.0
        try:
            f = float(v)
        except ValueError:
            return 0.0
        return f if f >= 0.0 and f == f else 0.0
    return take(TIMING_DECODE), take(TIMING_ENCODE)


class Stopwatch:
    """Tiny helper: `with Stopwatch() as sw: ...; sw.s`"""

    def __enter__(self):
        self._t0 = time.perf_counter()
        self.s = 0.0
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self._t0
        return False


__all__ = ["TaskHandler", "TaskSession", "ResourceBusy", "Meta", "Reply", "RESERVED_META", "TIMING_DECODE",
           "TIMING_ENCODE", "check_meta", "check_kind", "check_payload", "Stopwatch"]
