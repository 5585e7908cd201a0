"""Device-side gRPC client (also exported as collab.Client).

    client = collab.Client("server:50051", auth_token="...", tls_ca="ca.pem")
    out, meta, timings = client.infer("vit-tail", frame, {"model": "dinov2-s", "split": "6"})
    with client.session("llm", {"model": "smollm2"}) as s:
        s.send("prefill", frame, {})
        kind, payload, meta = s.recv()

Timings (seconds) of one call:
    queue     server: waiting for a free worker
    compute   server: the task's compute (without the decode/encode it reports)
    decode    server: request payload decode (task-reported) + client: response message parse
    encode    client: request message serialization + server: response encode (task-reported)
    transfer  everything else of the round trip: network both ways, RTT, gRPC framing
    server    server: message received -> response handed to gRPC
    total     client: wall time of the call
Your own codec encode/decode on the device happens before/after the call; time it yourself
(or use infer_array, which does).
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import uuid
from typing import Optional

import grpc

from ..errors import InvalidArgument
from . import _wire as w
from .base import ClientBase, ClientSessionBase
from .errors import TransportError, from_rpc_error
from .common import (AUTH_HEADER, DEFAULT_MAX_MESSAGE_BYTES, OPEN_KIND, OPENED_KIND, REPLICA_HEADER,
                     SESSION_HEADER, check_kind, check_meta, check_payload, check_session_key)

log = logging.getLogger("collab.transport.client")

_END = object()


def _pem(src):
    if src is None or isinstance(src, bytes):
        return src
    with open(src, "rb") as f:
        return f.read()


def _timings(t, *, total, client_enc, client_dec):
    d = w.timings_dict(t)
    d["encode"] += client_enc
    d["decode"] += client_dec
    d["transfer"] = max(0.0, total - d["server"] - client_enc - client_dec)
    d["total"] = total
    return d


class Client(ClientBase):
    """A connection to a collab server. Thread-safe; one channel shared by all calls."""

    def __init__(self, target: str, auth_token: Optional[str] = None, tls_ca=None, *,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, timeout: Optional[float] = None,
                 tls_server_name: Optional[str] = None, options=()):
        if not isinstance(target, str) or not target:
            raise InvalidArgument(f"target must be 'host:port', got {target!r}")
        self.target = target
        self.timeout = timeout
        opts = [("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes)] + list(options)
        if tls_server_name:
            opts.append(("grpc.ssl_target_name_override", tls_server_name))
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=_pem(tls_ca))
            self._channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self._md = () if auth_token is None else ((AUTH_HEADER, f"Bearer {auth_token}"),)
        # Identity serializers: we (de)serialize ourselves to time it.
        self._infer = self._channel.unary_unary(w.INFER)
        self._session = self._channel.stream_stream(w.SESSION)
        self._health = self._channel.unary_unary(w.HEALTH)

    # ---- calls -----------------------------------------------------------------------------
    def _metadata(self, session_key):
        """Call metadata: auth plus x-collab-session (the proxy's consistent-hash key)."""
        if check_session_key(session_key) is None:
            return self._md
        return self._md + ((SESSION_HEADER, session_key),)

    def infer(self, task: str, payload: bytes, meta=None, *, timeout: Optional[float] = None,
              session_key: Optional[str] = None):
        """Single-shot inference. Returns (payload, meta, timings). session_key: routing key
        sent as x-collab-session (requests with one key reach one replica behind the fleet proxy)."""
        t0 = time.perf_counter()
        meta = check_meta(meta)
        meta.setdefault("request_id", uuid.uuid4().hex[:16])
        req = w.make_frame(task=task, payload=check_payload(payload), meta=meta)
        data = req.SerializeToString()
        t1 = time.perf_counter()
        try:
            raw = self._infer(data, timeout=timeout if timeout is not None else self.timeout,
                              metadata=self._metadata(session_key))
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        t2 = time.perf_counter()
        resp = w.parse_frame(raw)
        if resp is None:
            raise TransportError("DATA_LOSS", "server answered bytes that are not a collab.v1.Frame")
        out_meta = w.frame_meta(resp)
        t3 = time.perf_counter()
        tim = _timings(resp.timings, total=t3 - t0, client_enc=t1 - t0, client_dec=t3 - t2)
        log.info("infer task=%s rid=%s out=%dB in=%dB total=%.2fms transfer=%.2fms queue=%.2fms compute=%.2fms "
                 "encode=%.2fms decode=%.2fms", task, meta["request_id"], len(req.payload), len(resp.payload),
                 1e3 * tim["total"], 1e3 * tim["transfer"], 1e3 * tim["queue"], 1e3 * tim["compute"],
                 1e3 * tim["encode"], 1e3 * tim["decode"])
        return resp.payload, out_meta, tim

    def infer_array(self, task: str, x, meta=None, *, sparsity: float = 0.0, timeout=None, **codec_kwargs):
        """Encode x with collab.codec, send it, and return (payload, meta, timings) with the
        device-side encode time included in timings['encode'] (and as timings['device_encode'])."""
        from .. import codec
        t0 = time.perf_counter()
        frame = codec.encode(x, sparsity, **codec_kwargs)
        enc = time.perf_counter() - t0
        payload, out_meta, tim = self.infer(task, frame, meta, timeout=timeout)
        tim["device_encode"] = enc
        tim["encode"] += enc
        tim["total"] += enc
        tim["request_bytes"] = len(frame)
        return payload, out_meta, tim

    def session(self, task: str, meta=None, *, timeout: Optional[float] = None,
                session_key: Optional[str] = None) -> "ClientSession":
        """Open a bidirectional session (also a context manager). Raises if the server refuses.
        session_key: see infer()."""
        return ClientSession(self, task, check_meta(meta), timeout, self._metadata(session_key))

    def health(self, timeout: float = 5.0) -> dict:
        try:
            raw = self._health(w.HealthRequest().SerializeToString(), timeout=timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        h = w.HealthReply()
        h.ParseFromString(raw)
        return {"status": h.status, "version": h.version, "tasks": list(h.tasks), "workers": h.workers,
                "running": h.running, "queued": h.queued, "sessions": h.sessions, "served": h.served,
                "rejected": h.rejected}

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects (raises TransportError after timeout)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise TransportError("UNAVAILABLE", f"cannot connect to {self.target} within {timeout}s") from None

    def close(self) -> None:
        self._channel.close()


class ClientSession(ClientSessionBase):
    """One bidirectional stream. send() never blocks on the server; recv() returns the next
    server message in order (kind, payload, meta); `last_timings` describes it."""

    def __init__(self, client: Client, task: str, meta: dict, timeout: Optional[float], metadata=None):
        self.task = task
        self._out: "queue.Queue" = queue.Queue()
        self._in: "queue.Queue" = queue.Queue()
        self._seq = itertools.count(1)
        self._sent = {}
        self._closed = False
        self.last_timings: dict = {}
        meta = dict(meta)
        meta.setdefault("request_id", uuid.uuid4().hex[:16])
        self.request_id = meta["request_id"]
        self._out.put(w.make_frame(task=task, kind=OPEN_KIND, meta=meta, seq=0).SerializeToString())
        self._sent[0] = (time.perf_counter(), 0.0)
        self._call = client._session(iter(self._out.get, _END),
                                     timeout=timeout if timeout is not None else client.timeout,
                                     metadata=client._md if metadata is None else metadata)
        self._reader = threading.Thread(target=self._read_loop, name="collab-session-reader", daemon=True)
        self._reader.start()
        kind, _, _ = self._next(None)
        if kind != OPENED_KIND:
            self.cancel()
            raise TransportError("DATA_LOSS", f"expected {OPENED_KIND!r} from the server, got {kind!r}")

    @property
    def replica(self) -> str:
        """The replica serving this session (its x-collab-replica header; '' if it sent none)."""
        for k, v in self._call.initial_metadata() or ():
            if k == REPLICA_HEADER:
                return v
        return ""

    def _read_loop(self):
        try:
            for raw in self._call:
                self._in.put(("frame", raw, time.perf_counter()))
            self._in.put(("end", None, None))
        except grpc.RpcError as e:
            self._in.put(("error", e, None))
        except Exception as e:  # pragma: no cover - defensive
            self._in.put(("error", e, None))

    def _next(self, timeout):
        try:
            what, item, t_recv = self._in.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message from the server within {timeout}s") from None
        if what == "end":
            self._in.put((what, item, t_recv))  # stay ended
            raise EOFError("the server ended the session")
        if what == "error":
            self._in.put((what, item, t_recv))
            if isinstance(item, grpc.RpcError):
                raise from_rpc_error(item)
            raise TransportError("UNKNOWN", str(item))
        t0 = time.perf_counter()
        f = w.parse_frame(item)
        if f is None:
            raise TransportError("DATA_LOSS", "server sent bytes that are not a collab.v1.Frame")
        meta = w.frame_meta(f)
        sent = self._sent.get(f.seq)
        dec = time.perf_counter() - t0
        total = (t_recv - sent[0]) if sent else 0.0
        enc = sent[1] if sent and len(sent) > 1 else 0.0
        self.last_timings = _timings(f.timings, total=total + dec, client_enc=enc, client_dec=dec)
        return f.kind, f.payload, meta

    def send(self, kind: str, payload: bytes, meta=None) -> int:
        """Queue one message; returns its sequence number (echoed by the server's replies)."""
        if self._closed:
            raise TransportError("CANCELLED", "session is closed")
        t0 = time.perf_counter()
        seq = next(self._seq)
        data = w.make_frame(kind=check_kind(kind), payload=check_payload(payload), meta=check_meta(meta),
                            seq=seq).SerializeToString()
        self._sent[seq] = (t0, time.perf_counter() - t0)
        if len(self._sent) > 4096:  # keep the send-time table bounded
            for k in sorted(self._sent)[:2048]:
                del self._sent[k]
        self._out.put(data)
        return seq

    def recv(self, timeout: Optional[float] = None):
        """Next server message as (kind, payload, meta). Raises EOFError when the server ended
        the session, TimeoutError after `timeout` seconds, TransportError on a server error."""
        return self._next(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """End the session cleanly (half-close, wait for the server to finish, then cancel)."""
        if self._closed:
            return
        self._closed = True
        self._out.put(_END)
        self._reader.join(timeout)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join(timeout)

    def cancel(self) -> None:
        """Abort the session at once (the server sees a client disconnect)."""
        self._closed = True
        self._out.put(_END)
        self._call.cancel()

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.cancel()
        else:
            self.close()
        return False


__all__ = ["Client", "ClientSession"]
