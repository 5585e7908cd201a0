"""The shaping experiment: the real gRPC path (server and client in their own network
namespaces) across a veth pair shaped by tc following mahimahi traces, RTT from the delaying
proxy; each measured transfer time is compared with collab.net's simulator for the same bytes
and start time. Used by netns_shaping.py (and the netns tests run that script)."""
from __future__ import annotations

import json
import os
import pathlib
import re
import sys
import tempfile
import time
from typing import Sequence

import numpy as np

from collab import net
from collab.net import netns

PROBE = str(pathlib.Path(__file__).resolve().parent / "probe.py")


def tc_overlimits(stats: str) -> int:
    """Packets tc held back ('overlimits N' in `tc -s qdisc show`): > 0 means it really shaped."""
    return sum(int(m) for m in re.findall(r"overlimits (\d+)", stats))


def shaping_experiment(up_trace: str, down_trace: str, sizes: Sequence[int], *, rtt_ms: float = 40.0,
                       bin_ms: float = 50.0, qdisc: str = "tbf", gap_s: float = 0.05, reply_bytes: int = 0,
                       start_delay_s: float = 1.5, log=None) -> dict:
    """Run the real gRPC path (server and client in their own namespaces) across a veth pair
    shaped by `up_trace` / `down_trace` (mahimahi files) with a user-space delay proxy adding
    rtt_ms, send one request per size, and compare each measured transfer time with the
    simulator's prediction. Returns {"records": [...], "summary": {...}, "config": {...}}."""
    reason = netns.unavailable_reason()
    if reason:
        raise netns.NetnsUnavailable(reason)
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    up, down = net.load_trace(up_trace), net.load_trace(down_trace)
    procs = []
    with tempfile.TemporaryDirectory() as tmp, netns.NetnsLink(qdisc=qdisc) as link:
        try:
            py = sys.executable
            port_file = os.path.join(tmp, "port")
            procs.append(link.popen("server", [py, "-m", "collab.cli", "serve", "--host", link.ip["server"],
                                               "--port", "0", "--port-file", port_file, "--task", "echo",
                                               "--workers", "1", "--log-level", "WARNING"]))
            netns.wait_file(port_file, procs[-1], "server")
            port = open(port_file).read().strip()
            proxy, pport = link.start_proxy(f"{link.ip['server']}:{port}", rtt_ms, os.path.join(tmp, "proxy"))
            procs.append(proxy)
            t0 = time.monotonic() + start_delay_s
            shaper = netns.TraceShaper(link, up=up, down=down, bin_ms=bin_ms).start(t0)
            out = os.path.join(tmp, "probe.json")
            say(f"netns: {link.ns['client']} -> {link.ns['server']} ({qdisc}, rtt {rtt_ms} ms, "
                f"{len(sizes)} transfers)")
            try:
                r = link.run("client", [py, PROBE, "--target", f"127.0.0.1:{pport}",
                                        "--sizes", ",".join(str(int(n)) for n in sizes), "--t0", repr(t0),
                                        "--gap-s", str(gap_s), "--reply-bytes", str(reply_bytes), "--out", out],
                             stderr=None, timeout=600)
            finally:
                shaper.stop()
            if r.returncode != 0:
                raise RuntimeError(f"probe failed with status {r.returncode}")
            recs = json.load(open(out))
            tc_up = link.tc_stats("client")
            tc_up_overlimits = tc_overlimits(tc_up)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    failed = [r for r in recs if "error" in r]
    recs = [r for r in recs if "error" not in r]
    if not recs:
        raise RuntimeError(f"every transfer failed: {failed[:3]}")
    for rec in recs:
        start_ms = rec["start_s"] * 1e3
        n_up = netns.wire_packets(rec["bytes"], link.mtu) * net.PACKET_BYTES
        n_down = netns.wire_packets(reply_bytes, link.mtu) * net.PACKET_BYTES
        t_up = float(net.transfer_time(n_up, start_ms, up, rtt_ms / 2))
        t_down = float(net.transfer_time(n_down, start_ms + t_up, down, rtt_ms / 2))
        rec["predicted_ms"] = t_up + t_down
        rec["measured_ms"] = rec["transfer"] * 1e3
        rec["error_ms"] = rec["measured_ms"] - rec["predicted_ms"]
        rec["rel_error"] = rec["error_ms"] / rec["predicted_ms"]
        # what tc was set to follow (binned trace), for reference
        rec["tc_up_mbps"] = shaper.rate_at("up", rec["start_s"]) / 1e6
    rel = np.array([abs(r["rel_error"]) for r in recs])
    err = np.array([r["error_ms"] for r in recs])
    summary = {"n": len(recs), "failed": len(failed), "mean_abs_rel_error": float(rel.mean()), "median_abs_rel_error": float(np.median(rel)),
               "p90_abs_rel_error": float(np.quantile(rel, 0.9)), "mean_error_ms": float(err.mean()),
               "median_abs_error_ms": float(np.median(np.abs(err))), "shaper_changes": shaper.changes,
               "shaper_late_ms_max": shaper.late_ms_max}
    config = {"up_trace": str(up_trace), "down_trace": str(down_trace), "rtt_ms": rtt_ms, "bin_ms": bin_ms,
              "qdisc": qdisc, "mtu": link.mtu, "gap_s": gap_s, "reply_bytes": reply_bytes,
              "simulator": "collab.net.transfer_time", "tc_up_stats": tc_up,
              "tc_up_overlimits": tc_up_overlimits}
    return {"records": recs, "failed": failed, "summary": summary, "config": config}
