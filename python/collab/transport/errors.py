"""Exceptions raised on the client side of the transport (gRPC or in-process).

Every failed call raises a `TransportError` carrying the gRPC status name in `.code` and the
server's message in `.details`. Subclasses make the common cases easy to catch:

    InvalidRequest   INVALID_ARGUMENT (bad payload / meta); also a ValueError (InvalidArgument)
    ServerBusy       RESOURCE_EXHAUSTED (queue full, too many sessions, size/memory limit)
    Unauthenticated  UNAUTHENTICATED (missing / wrong token)
"""
from __future__ import annotations

from ..errors import CollabError, InvalidArgument


class TransportError(CollabError):
    def __init__(self, code: str, details: str):
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class InvalidRequest(TransportError, InvalidArgument):
    pass


class ServerBusy(TransportError):
    pass


class Unauthenticated(TransportError):
    pass


_BY_CODE = {"INVALID_ARGUMENT": InvalidRequest, "RESOURCE_EXHAUSTED": ServerBusy,
            "UNAUTHENTICATED": Unauthenticated}


def make_error(code: str, details: str) -> TransportError:
    return _BY_CODE.get(code, TransportError)(code, details)


def from_rpc_error(e) -> TransportError:
    """Convert a grpc.RpcError into a TransportError."""
    try:
        code = e.code().name
        details = e.details() or ""
    except Exception:  # not a call error (e.g. a channel-level failure)
        code, details = "UNKNOWN", str(e)
    return make_error(code, details)
