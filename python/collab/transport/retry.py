"""gRPC's own retry policy for a fleet client (a service config in the channel options).

    client = collab.Client("127.0.0.1:8080", options=retry_options())

Retries a call that failed with UNAVAILABLE before the server committed to an answer: a
replica that died (the proxy answers 502 -> UNAVAILABLE), refused the connection, or is
draining ("replica draining: ..."). Behind the consistent-hash proxy the retry reaches another
replica because the proxy marks the dead one failed / the drained one closed its listener.
Infer and Health are stateless and safe to repeat, so they are also retried on CANCELLED: a
request that reaches a replica in the instant its gRPC server stops (the end of a drain) is
cancelled by that server, not refused. gRPC retries only statuses that come from the other
side, never the caller's own cancellation. Session is retried on UNAVAILABLE only, until the
server accepted the open (the first reply commits the call); a session that breaks later is
recovered by the caller (collab.llm.failover for LLM sessions).
"""
from __future__ import annotations

import json

from . import _wire as w

RETRYABLE = ("UNAVAILABLE",)
RETRYABLE_STATELESS = ("UNAVAILABLE", "CANCELLED")


def service_config(max_attempts: int = 5, initial_backoff_s: float = 0.1, max_backoff_s: float = 1.0,
                   codes=RETRYABLE, stateless_codes=RETRYABLE_STATELESS) -> dict:
    """codes: what Session retries; stateless_codes: what Infer and Health retry."""
    if not 2 <= int(max_attempts) <= 5:  # gRPC caps attempts at 5
        raise ValueError(f"max_attempts must be in [2, 5], got {max_attempts!r}")
    if not 0 < initial_backoff_s <= max_backoff_s:
        raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")

    def policy(methods, retryable):
        return {"name": [{"service": w.SERVICE, "method": m} for m in methods],
                "retryPolicy": {"maxAttempts": int(max_attempts), "initialBackoff": f"{initial_backoff_s:g}s",
                                "maxBackoff": f"{max_backoff_s:g}s", "backoffMultiplier": 2,
                                "retryableStatusCodes": list(retryable)}}

    return {"methodConfig": [policy(("Infer", "Health"), stateless_codes), policy(("Session",), codes)]}


def retry_options(**kwargs) -> list:
    """Channel options enabling the retry policy (pass as Client(..., options=...))."""
    return [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(service_config(**kwargs)))]
