"""Real network shaping for tests and benchmarks: Linux network namespaces, a veth pair,
`tc` rate limiting that follows a mahimahi trace, and a user-space delaying TCP proxy for RTT
(these kernels have no netem). Needs root, `ip` and `tc` (iproute2); `unavailable_reason()`
says why not when they are missing.

    with NetnsLink(mtu=1500) as link:          # namespaces collab-<id>-s / -c, veth, 10.x.y.1/.2
        link.set_rate("up", 8e6)               # client -> server egress, bit/s
        srv = link.popen("server", [sys.executable, "-m", "collab.cli", "serve", ...])
        shaper = TraceShaper(link, up=trace_ms, down=trace_ms, bin_ms=50).start(t0)

Topology:  [client ns] client -> 127.0.0.1:P delay proxy -> veth (tc: up trace) ->
           [server ns] server;  replies: server -> veth (tc: down trace) -> proxy -> client.
The proxy delays each direction by rtt/2. It terminates TCP, so the shaped segment itself has
~0 RTT (TCP's window ramps as on a LAN); see notes/issue-3-transport.md.

`python -m collab.netns proxy|probe ...` are the helper processes the harness starts inside
the namespaces (run `python -m collab.netns -h`).
"""
from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import queue
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional, Sequence

import numpy as np

from .errors import InvalidArgument

PACKET_BYTES = 1500  # collab.net.PACKET_BYTES: one mahimahi delivery opportunity


class NetnsUnavailable(RuntimeError):
    pass


def _run(argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise NetnsUnavailable(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


_REASON = None


def unavailable_reason() -> Optional[str]:
    """None if namespaces + veth + tc tbf work here, else why not (cached)."""
    global _REASON
    if _REASON is not None:
        return _REASON or None
    reason = ""
    if not sys.platform.startswith("linux"):
        reason = "network namespaces need Linux"
    elif os.geteuid() != 0:
        reason = "network namespaces and tc need root"
    elif not shutil.which("ip") or not shutil.which("tc"):
        reason = "the ip and tc commands (iproute2) are not installed"
    else:
        try:
            with NetnsLink(qdisc="tbf"):
                pass
        except (NetnsUnavailable, OSError) as e:
            reason = f"cannot set up a shaped veth pair in network namespaces: {e}"
    _REASON = reason
    return reason or None


_LIVE: List["NetnsLink"] = []


@atexit.register
def _cleanup_all():
    for link in list(_LIVE):
        link.close()


class NetnsLink:
    """Two network namespaces joined by a veth pair, each end shaped by tc (tbf or htb)."""

    def __init__(self, mtu: int = 1500, qdisc: str = "tbf", initial_bps: float = 1e9, queue_bytes: int = 8 << 20):
        if qdisc not in ("tbf", "htb"):
            raise InvalidArgument(f"qdisc must be 'tbf' or 'htb', got {qdisc!r}")
        if not 576 <= int(mtu) <= 65535:
            raise InvalidArgument(f"mtu out of range: {mtu}")
        tag = f"{os.getpid() % 100000}{random.randrange(1000):03d}"
        self.ns = {"server": f"collab-{tag}-s", "client": f"collab-{tag}-c"}
        self.dev = {"server": f"cs{tag}", "client": f"cc{tag}"}
        a, b = random.randrange(200, 250), random.randrange(0, 256)
        self.ip = {"server": f"10.{a}.{b}.1", "client": f"10.{a}.{b}.2"}
        self.mtu, self.qdisc, self.initial_bps = int(mtu), qdisc, float(initial_bps)
        self.queue_bytes = int(queue_bytes)
        self.rates = {}
        self._open = False

    def __enter__(self):
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _setup(self):
        _LIVE.append(self)
        self._open = True
        for side in ("server", "client"):
            _run(["ip", "netns", "add", self.ns[side]])
        _run(["ip", "link", "add", self.dev["server"], "netns", self.ns["server"], "type", "veth", "peer", "name",
              self.dev["client"], "netns", self.ns["client"]])
        for side in ("server", "client"):
            ns, dev = self.ns[side], self.dev[side]
            _run(["ip", "-n", ns, "addr", "add", f"{self.ip[side]}/30", "dev", dev])
            _run(["ip", "-n", ns, "link", "set", dev, "mtu", str(self.mtu), "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            if shutil.which("ethtool"):
                # no segmentation offloads: tc sees MTU-sized packets, like on a real link
                _run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"],
                     check=False)
            self._add_qdisc(side, self.initial_bps)

    def _burst(self, bps):
        # a couple of packets, or 2 ms worth at this rate: close to per-packet pacing
        return int(max(2 * (self.mtu + 14), bps / 8 * 0.002))

    def _tc_args(self, side, bps, verb):
        dev = self.dev[side]
        rate = f"{max(int(bps), 8000)}bit"
        if self.qdisc == "tbf":
            # a deep byte limit (like mahimahi's default unbounded drop-tail queue): outages queue, not drop
            return [["qdisc", verb, "dev", dev, "root", "tbf", "rate", rate, "burst", str(self._burst(bps)),
                     "limit", str(self.queue_bytes)]]
        if verb == "add":
            return [["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10"],
                    ["class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", rate, "ceil", rate,
                     "burst", str(self._burst(bps)), "cburst", str(self._burst(bps))]]
        return [["class", "change", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", rate, "ceil", rate,
                 "burst", str(self._burst(bps)), "cburst", str(self._burst(bps))]]

    def _add_qdisc(self, side, bps):
        for args in self._tc_args(side, bps, "add"):
            _run(["tc", "-n", self.ns[side]] + args)
        self.rates[side] = bps

    def tc_commands(self, direction: str, bps: float) -> List[str]:
        """The tc batch lines that set `direction` ('up' = client egress, 'down' = server egress)."""
        side = {"up": "client", "down": "server"}[direction]
        return [" ".join(a) for a in self._tc_args(side, bps, "change")]

    def set_rate(self, direction: str, bps: float) -> None:
        side = {"up": "client", "down": "server"}[direction]
        for args in self._tc_args(side, bps, "change"):
            _run(["tc", "-n", self.ns[side]] + args)
        self.rates[side] = bps

    def popen(self, side: str, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Start a process inside the `side` ('server' / 'client') namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.ns[side]] + list(argv), **kw)

    def start_proxy(self, target: str, rtt_ms: float, ready_file: str):
        """The delaying TCP proxy (rtt_ms / 2 each way) in the client namespace, in front of
        `target`: returns (process, local port to connect to)."""
        proc = self.popen("client", [sys.executable, "-m", "collab.netns", "proxy", "--listen", "127.0.0.1:0",
                                     "--target", target, "--delay-ms", str(rtt_ms / 2), "--ready-file", ready_file])
        wait_file(ready_file, proc, "proxy")
        return proc, open(ready_file).read().strip()

    def run(self, side: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns[side]] + list(argv), **kw)

    def tc_rate_bps(self, direction: str) -> float:
        """The rate tc is enforcing now on `direction` (read back from the kernel)."""
        side = {"up": "client", "down": "server"}[direction]
        ns, dev = self.ns[side], self.dev[side]
        if self.qdisc == "tbf":
            q = json.loads(_run(["tc", "-j", "-n", ns, "qdisc", "show", "dev", dev]).stdout)
            return float(q[0]["options"]["rate"]) * 8
        text = _run(["tc", "-n", ns, "class", "show", "dev", dev]).stdout
        import re
        m = re.search(r"rate (\d+(?:\.\d+)?)([KMG]?)bit", text)
        if not m:
            raise NetnsUnavailable(f"cannot read the htb rate from: {text!r}")
        return float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]

    def tc_stats(self, side: str) -> str:
        return _run(["tc", "-n", self.ns[side], "-s", "qdisc", "show", "dev", self.dev[side]], check=False).stdout

    def close(self):
        if not self._open:
            return
        self._open = False
        for side in ("server", "client"):
            subprocess.run(["ip", "netns", "pids", self.ns[side]], capture_output=True)
            subprocess.run(["ip", "netns", "del", self.ns[side]], capture_output=True)
        if self in _LIVE:
            _LIVE.remove(self)


# ---- trace-driven rate changes ----------------------------------------------------------------

def trace_rates(trace, bin_ms: float, horizon_ms: float = 600_000.0) -> np.ndarray:
    """Capacity (bit/s) of a link in consecutive bins of bin_ms from 0 to at least horizon_ms
    (and at least one trace period), looping the trace: collab.net's windowed_bps. `trace` is a
    collab.net Trace / FixedRateLink, a link spec or trace path, or an array of timestamps (ms)."""
    link = as_link(trace)
    period = float(getattr(link, "period_ms", bin_ms))
    _, bps = link.windowed_bps(bin_ms, max(float(horizon_ms), period))
    return np.asarray(bps, dtype=np.float64)


def as_link(trace):
    from . import net
    if isinstance(trace, (np.ndarray, list, tuple)):
        return net.Trace(np.asarray(trace, dtype=np.int64))
    return net.as_link(trace)


class TraceShaper:
    """Changes the link's tc rates every bin_ms following up/down traces (looping), from t0
    (time.monotonic()). Uses one `tc -batch` process per namespace, so a change costs ~0.1 ms."""

    def __init__(self, link: NetnsLink, up=None, down=None, bin_ms: float = 50.0, min_bps: float = 8e3):
        if bin_ms < 5:
            raise InvalidArgument("bin_ms must be >= 5 (tc cannot follow faster changes reliably)")
        self.link, self.bin_ms, self.min_bps = link, float(bin_ms), float(min_bps)
        self.rates = {}
        if up is not None:
            self.rates["up"] = trace_rates(up, bin_ms)
        if down is not None:
            self.rates["down"] = trace_rates(down, bin_ms)
        self._stop = threading.Event()
        self._thread = None
        self.t0 = None
        self.changes = 0
        self.late_ms_max = 0.0

    def rate_at(self, direction: str, t_s: float) -> float:
        r = self.rates[direction]
        return max(self.min_bps, float(r[int(t_s * 1e3 // self.bin_ms) % len(r)]))

    def start(self, t0: Optional[float] = None) -> "TraceShaper":
        self.t0 = time.monotonic() if t0 is None else t0
        self._procs = {}
        for d in self.rates:
            side = {"up": "client", "down": "server"}[d]
            self._procs[d] = subprocess.Popen(["tc", "-n", self.link.ns[side], "-force", "-batch", "-"],
                                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._apply(0)
        self._thread = threading.Thread(target=self._loop, name="collab-trace-shaper", daemon=True)
        self._thread.start()
        return self

    def _apply(self, k):
        self.last_bin = k
        for d, p in self._procs.items():
            bps = self.rate_at(d, k * self.bin_ms / 1e3)
            for line in self.link.tc_commands(d, bps):
                p.stdin.write(line + "\n")
            p.stdin.flush()
        self.changes += 1

    def _loop(self):
        k = 1
        while not self._stop.is_set():
            due = self.t0 + k * self.bin_ms / 1e3
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            self.late_ms_max = max(self.late_ms_max, (time.monotonic() - due) * 1e3)
            try:
                self._apply(k)
            except (BrokenPipeError, OSError):
                break
            k += 1

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for p in getattr(self, "_procs", {}).values():
            try:
                p.stdin.close()
            except OSError:
                pass
            p.wait(5)


# ---- user-space delaying TCP proxy ------------------------------------------------------------

def _pump(src: socket.socket, dst: socket.socket, delay_s: float):
    q: "queue.Queue" = queue.Queue()

    def reader():
        try:
            while True:
                data = src.recv(1 << 16)
                q.put((time.monotonic() + delay_s, data))
                if not data:
                    return
        except OSError:
            q.put((time.monotonic(), b""))

    threading.Thread(target=reader, daemon=True).start()
    try:
        while True:
            due, data = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data:  # half-close: pass it on, the other direction keeps flowing
                dst.shutdown(socket.SHUT_WR)
                return
            dst.sendall(data)
    except OSError:  # a reset: tear down both directions
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def run_delay_proxy(listen: str, target: str, delay_s: float, ready_file: Optional[str] = None):
    """Forward TCP connections from listen to target, delaying each direction by delay_s."""
    lh, lp = listen.rsplit(":", 1)
    th, tp = target.rsplit(":", 1)
    srv = socket.create_server((lh, int(lp)))
    if ready_file:
        with open(ready_file + ".tmp", "w") as f:
            f.write(str(srv.getsockname()[1]))
        os.replace(ready_file + ".tmp", ready_file)
    while True:
        conn, _ = srv.accept()
        up = socket.create_connection((th, int(tp)))
        for s in (conn, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_pump, args=(conn, up, delay_s), daemon=True).start()
        threading.Thread(target=_pump, args=(up, conn, delay_s), daemon=True).start()


# ---- probe: the client side of the shaping experiment ------------------------------------------

def run_probe(target: str, sizes: Sequence[int], t0: float, out: str, gap_s: float, reply_bytes: int,
              timeout: float = 120.0):
    """Send one `echo` request per size (uplink payload; the reply is `reply_bytes` long) and
    record when each started (seconds after t0) and its timings. Writes JSON to `out`."""
    from .transport.client import Client

    recs = []
    with Client(target, timeout=timeout) as c:
        c.wait_ready(30)
        c.infer("echo", b"", {"echo.reply_bytes": "0"})  # connection warm-up
        while time.monotonic() < t0:
            time.sleep(0.001)
        for i, n in enumerate(sizes):
            payload = os.urandom(int(n))
            start = time.monotonic() - t0
            try:
                _, _, tim = c.infer("echo", payload, {"echo.reply_bytes": str(reply_bytes)})
            except Exception as e:  # e.g. DEADLINE_EXCEEDED in a long outage: recorded, not hidden
                recs.append({"i": i, "bytes": int(n), "start_s": start, "error": str(e)})
                print(f"probe {i + 1}/{len(sizes)}: {n} B failed: {e}", file=sys.stderr, flush=True)
                continue
            recs.append({"i": i, "bytes": int(n), "start_s": start, **tim})
            print(f"probe {i + 1}/{len(sizes)}: {n} B in {tim['transfer'] * 1e3:.1f} ms", file=sys.stderr,
                  flush=True)
            if gap_s > 0:
                time.sleep(gap_s)
    with open(out + ".tmp", "w") as f:
        json.dump(recs, f)
    os.replace(out + ".tmp", out)


# ---- the experiment: measured transfer times vs the simulator ---------------------------------

def wire_packets(payload_bytes: int, mtu: int = 1500, overhead_bytes: int = 200) -> int:
    """TCP segments one gRPC message of payload_bytes needs: protobuf + gRPC + HTTP/2 framing
    (9 bytes per 16 KiB DATA frame + headers, ~overhead_bytes) over MSS = mtu - 52 (IP + TCP
    with timestamps)."""
    total = payload_bytes + overhead_bytes + 9 * (payload_bytes // 16384 + 1)
    return int(math.ceil(total / (mtu - 52)))


def shaping_experiment(up_trace: str, down_trace: str, sizes: Sequence[int], *, rtt_ms: float = 40.0,
                       bin_ms: float = 50.0, qdisc: str = "tbf", gap_s: float = 0.05, reply_bytes: int = 0,
                       start_delay_s: float = 1.5, log=None) -> dict:
    """Run the real gRPC path (server and client in their own namespaces) across a veth pair
    shaped by `up_trace` / `down_trace` (mahimahi files) with a user-space delay proxy adding
    rtt_ms, send one request per size, and compare each measured transfer time with the
    simulator's prediction. Returns {"records": [...], "summary": {...}, "config": {...}}."""
    reason = unavailable_reason()
    if reason:
        raise NetnsUnavailable(reason)
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    from . import net
    up, down = net.load_trace(up_trace), net.load_trace(down_trace)
    import tempfile
    procs = []
    with tempfile.TemporaryDirectory() as tmp, NetnsLink(qdisc=qdisc) as link:
        try:
            py = sys.executable
            port_file = os.path.join(tmp, "port")
            procs.append(link.popen("server", [py, "-m", "collab.cli", "serve", "--host", link.ip["server"],
                                               "--port", "0", "--port-file", port_file, "--task", "echo",
                                               "--workers", "1", "--log-level", "WARNING"]))
            wait_file(port_file, procs[-1], "server")
            port = open(port_file).read().strip()
            proxy, pport = link.start_proxy(f"{link.ip['server']}:{port}", rtt_ms, os.path.join(tmp, "proxy"))
            procs.append(proxy)
            t0 = time.monotonic() + start_delay_s
            shaper = TraceShaper(link, up=up, down=down, bin_ms=bin_ms).start(t0)
            out = os.path.join(tmp, "probe.json")
            say(f"netns: {link.ns['client']} -> {link.ns['server']} ({qdisc}, rtt {rtt_ms} ms, "
                f"{len(sizes)} transfers)")
            try:
                r = link.run("client", [py, "-m", "collab.netns", "probe", "--target", f"127.0.0.1:{pport}",
                                        "--sizes", ",".join(str(int(n)) for n in sizes), "--t0", repr(t0),
                                        "--gap-s", str(gap_s), "--reply-bytes", str(reply_bytes), "--out", out],
                             stderr=None, timeout=600)
            finally:
                shaper.stop()
            if r.returncode != 0:
                raise RuntimeError(f"probe failed with status {r.returncode}")
            recs = json.load(open(out))
            tc_up = link.tc_stats("client")
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
        n_up = wire_packets(rec["bytes"], link.mtu) * PACKET_BYTES
        n_down = wire_packets(reply_bytes, link.mtu) * PACKET_BYTES
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
              "simulator": "collab.net.transfer_time", "tc_up_stats": tc_up}
    return {"records": recs, "failed": failed, "summary": summary, "config": config}


def wait_file(path, proc, what, timeout=60.0):
    """Wait until a helper process writes its ready/port file (or fail if it exits first)."""
    t = time.monotonic()
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
        if time.monotonic() - t > timeout:
            raise RuntimeError(f"{what} not ready after {timeout}s")
        time.sleep(0.02)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m collab.netns", description="helpers of the shaping harness")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("proxy", help="delaying TCP proxy")
    p.add_argument("--listen", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--delay-ms", type=float, required=True, help="one-way delay added to each direction")
    p.add_argument("--ready-file")
    p = sub.add_parser("probe", help="timed echo requests (client side)")
    p.add_argument("--target", required=True)
    p.add_argument("--sizes", required=True, help="comma-separated payload sizes in bytes")
    p.add_argument("--t0", type=float, required=True, help="time.monotonic() of trace time 0")
    p.add_argument("--gap-s", type=float, default=0.0)
    p.add_argument("--reply-bytes", type=int, default=0)
    p.add_argument("--out", required=True)
    p = sub.add_parser("check", help="say whether the harness can run here")
    args = ap.parse_args(argv)
    if args.cmd == "proxy":
        run_delay_proxy(args.listen, args.target, args.delay_ms / 1e3, args.ready_file)
    elif args.cmd == "probe":
        run_probe(args.target, [int(s) for s in args.sizes.split(",") if s], args.t0, args.out, args.gap_s,
                  args.reply_bytes)
    else:
        r = unavailable_reason()
        print(r or "ok")
        return 1 if r else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
