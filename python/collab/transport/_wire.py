"""Frame <-> (payload, meta) conversion and the RPC names shared by server and client."""
from __future__ import annotations

from ._proto import collab_pb2 as pb
from .common import parse_split

SERVICE = "collab.v1.Collab"
INFER = f"/{SERVICE}/Infer"
SESSION = f"/{SERVICE}/Session"
HEALTH = f"/{SERVICE}/Health"

Frame = pb.Frame
Timings = pb.Timings
HealthRequest = pb.HealthRequest
HealthReply = pb.HealthReply


def make_frame(*, task: str = "", kind: str = "", payload: bytes = b"", meta=None, seq: int = 0) -> pb.Frame:
    """Build a Frame, lifting the reserved meta keys (model, split, request_id) to typed fields."""
    meta = dict(meta or {})
    f = pb.Frame(task=task, kind=kind, payload=payload, seq=seq)
    f.model = meta.pop("model", "")
    f.split = parse_split(meta.pop("split", None))
    f.request_id = meta.pop("request_id", "")
    f.meta.update(meta)
    return f


def frame_meta(f: pb.Frame) -> dict:
    """The meta dict a task sees: the map plus the typed fields that are set."""
    meta = dict(f.meta)
    if f.model:
        meta["model"] = f.model
    if f.split >= 0:
        meta["split"] = str(f.split)
    if f.request_id:
        meta["request_id"] = f.request_id
    return meta


def timings_dict(t: pb.Timings) -> dict:
    return {"queue": t.queue_s, "compute": t.compute_s, "decode": t.decode_s, "encode": t.encode_s,
            "server": t.server_s}


def parse_frame(data: bytes):
    """Deserialize a Frame; returns None (not an exception) for bytes that are not one, so the
    server can answer INVALID_ARGUMENT instead of gRPC's generic INTERNAL."""
    f = pb.Frame()
    try:
        f.ParseFromString(data)
    except Exception:  # google.protobuf.message.DecodeError and friends
        return None
    return f


def parse_health(data: bytes):
    h = pb.HealthRequest()
    try:
        h.ParseFromString(data)
    except Exception:
        return None
    return h


def serialize(msg) -> bytes:
    return msg.SerializeToString()
