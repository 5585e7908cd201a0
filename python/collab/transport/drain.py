"""Graceful drain of a collab server (what SIGTERM does in `collab serve`).

    srv.drain(timeout=30)          # blocks until drained or the deadline passed; then stopped

Order of events:
  1. readiness turns false: grpc.health.v1 answers NOT_SERVING for every service name and
     the metric collab_draining is 1;
  2. new requests and new sessions that still reach the replica are refused with
     UNAVAILABLE and the detail "replica draining: ..." (clients with the fleet retry policy,
     collab.transport.retry, retry them; the proxy sends the retry to another replica);
  3. after `notice_s` (time for a proxy / Kubernetes to see readiness false; 0 behind nginx,
     which notices the closed listener at once) the listener closes and the gRPC server
     stops with grace = the rest of the deadline: in-flight requests finish and open
     sessions continue until they end or the deadline passes (then they are cancelled and
     their clients see the stream fail; collab.llm.failover recovers LLM sessions). A request
     that arrives in the instant the server stops is cancelled by gRPC: the fleet retry
     policy retries CANCELLED for the stateless Infer / Health, so it reaches another replica.
A second SIGTERM/SIGINT during a drain stops the server at once.
"""
from __future__ import annotations

import logging
import signal
import threading
import time

log = logging.getLogger("collab.transport.drain")

MAX_DRAIN_S = 86400.0  # a drain deadline is finite: an infinite one would never stop a stuck session
DRAINING_DETAIL = "replica draining: it takes no new requests or sessions; retry (another replica serves it)"


def check_drain_settings(timeout, notice_s, names=("drain timeout (seconds)", "drain notice (seconds)")):
    """(timeout, notice_s) as finite seconds in [0, MAX_DRAIN_S], else InvalidArgument naming
    them (``names``: how the caller calls them, e.g. the CLI's options)."""
    from .._validate import check_float

    return (check_float(names[0], timeout, 0.0, MAX_DRAIN_S), check_float(names[1], notice_s, 0.0, MAX_DRAIN_S))


def drain(server, timeout: float = 30.0, notice_s: float = 0.0) -> float:
    """Drain `server` (a collab.transport.Server) and stop it. Returns the seconds it took."""
    timeout, notice_s = check_drain_settings(timeout, notice_s)
    t0 = time.perf_counter()
    hooks = server.replica
    hooks.begin_drain()
    log.info("draining %s: readiness false, new work refused; deadline %.1fs", server.address, timeout)
    if notice_s > 0:
        time.sleep(min(notice_s, timeout))
    left = max(0.0, timeout - (time.perf_counter() - t0))
    stats = server.stats()
    server.stop(grace=left)
    dt = time.perf_counter() - t0
    log.info("drained in %.2fs (%d requests running, %d sessions open when the listener closed)", dt,
             stats["running"], stats["sessions"])
    return dt


def install_sigterm(server, timeout: float, notice_s: float = 0.0) -> None:
    """SIGTERM (and SIGINT) drain the server in a background thread; a second one stops it now."""
    state = {"thread": None}

    def handler(signum, frame):
        if state["thread"] is None:
            state["thread"] = threading.Thread(target=drain, args=(server, timeout, notice_s),
                                               name="collab-drain", daemon=True)
            state["thread"].start()
        else:
            log.warning("second signal during drain: stopping now")
            threading.Thread(target=server.stop, kwargs={"grace": 0}, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
