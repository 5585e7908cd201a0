"""What both ends of the transport share: wire constants, reserved names and the checks of
meta / kind / payload. Client code imports this (never the server or the task modules)."""
from __future__ import annotations

from typing import Dict, Tuple

from ..errors import InvalidArgument

DEFAULT_MAX_MESSAGE_BYTES = 64 << 20   # largest gRPC message either side accepts by default
AUTH_HEADER = "authorization"          # metadata key of the bearer token
SESSION_HEADER = "x-collab-session"    # routing key: a fleet proxy hashes it to pick one replica
REPLICA_HEADER = "x-collab-replica"    # answered by the server: the replica that served the call
CLIENT_HEADER = "x-collab-client"      # set by a trusted proxy: the address of the client behind it
MAX_CLIENT_ID = 128                    # longest client identity a trusted proxy may name
MAX_SESSION_KEY = 256                  # longest session_key a client sends

Meta = Dict[str, str]
Reply = Tuple[str, bytes, Meta]

RESERVED_META = ("model", "split", "request_id")
TIMING_DECODE = "collab.decode_s"
TIMING_ENCODE = "collab.encode_s"
IDENTITY_META = "collab.identity"   # open_session meta: the client (peer host), set by the server
OPEN_KIND = "collab.open"
OPENED_KIND = "collab.opened"


def check_meta(meta) -> Meta:
    """Validate a meta mapping (str -> str) and return a plain dict copy."""
    if meta is None:
        return {}
    if not hasattr(meta, "items"):
        raise InvalidArgument(f"meta must be a mapping of str to str, got {type(meta).__name__}")
    out = {}
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgument(f"meta must map str to str, got {k!r}: {v!r}")
        out[k] = v
    return out


def check_session_key(session_key):
    """A routing key for SESSION_HEADER (None = none). Every client checks it the same way,
    also those with nothing to route (in-process, emulated link), so code moves between them."""
    if session_key is None:
        return None
    if not isinstance(session_key, str) or not session_key or len(session_key) > MAX_SESSION_KEY:
        raise InvalidArgument(f"session_key must be a non-empty string of <= {MAX_SESSION_KEY} chars, "
                              f"got {session_key!r}")
    return session_key


def parse_split(split) -> int:
    """meta['split'] as an int (-1 when absent/empty); InvalidArgument when not an int32 >= -1."""
    if split is None or split == "":
        return -1
    try:
        s = int(split)
    except (TypeError, ValueError):
        raise InvalidArgument(f"meta['split'] must be an integer, got {split!r}") from None
    if not -1 <= s < 2**31:
        raise InvalidArgument(f"meta['split'] out of range: {s}")
    return s


def wire_meta(meta: Meta) -> Meta:
    """What the other side sees after `meta` crossed the wire: reserved keys normalised the way
    the Frame's typed fields carry them (empty model/request_id and split -1 vanish)."""
    out = dict(meta)
    for key in ("model", "request_id"):
        if out.get(key, None) == "":
            del out[key]
    if "split" in out:
        s = parse_split(out.pop("split"))
        if s >= 0:
            out["split"] = str(s)
    return out


def check_kind(kind) -> str:
    if not isinstance(kind, str):
        raise InvalidArgument(f"message kind must be a str, got {type(kind).__name__}")
    if kind.startswith("collab."):
        raise InvalidArgument(f"message kinds starting with 'collab.' are reserved: {kind!r}")
    return kind


def check_payload(payload) -> bytes:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise InvalidArgument(f"payload must be bytes, got {type(payload).__name__}")
