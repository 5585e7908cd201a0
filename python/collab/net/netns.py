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

The delaying proxy is collab.net.proxy (started inside the client namespace by
NetnsLink.start_proxy). The experiment that compares shaped transfers with the simulator, and
its client-side probe, are benchmarks (benchmarks/net/).
"""
from __future__ import annotations

import atexit
import json
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from typing import List, Optional, Sequence

import numpy as np

from ..errors import InvalidArgument



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
        proc = self.popen("client", [sys.executable, "-m", "collab.net.proxy", "--listen", "127.0.0.1:0",
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
    from . import Trace, as_link as _as_link
    if isinstance(trace, (np.ndarray, list, tuple)):
        return Trace(np.asarray(trace, dtype=np.int64))
    return _as_link(trace)


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


# ---- gRPC framing on the wire ---------------------------------------------------------------

def wire_packets(payload_bytes: int, mtu: int = 1500, overhead_bytes: int = 200) -> int:
    """TCP segments one gRPC message of payload_bytes needs: protobuf + gRPC + HTTP/2 framing
    (9 bytes per 16 KiB DATA frame + headers, ~overhead_bytes) over MSS = mtu - 52 (IP + TCP
    with timestamps)."""
    total = payload_bytes + overhead_bytes + 9 * (payload_bytes // 16384 + 1)
    return int(math.ceil(total / (mtu - 52)))


def wait_file(path, proc, what, timeout=60.0):
    """Wait until a helper process writes its ready/port file (or fail if it exits first)."""
    t = time.monotonic()
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
        if time.monotonic() - t > timeout:
            raise RuntimeError(f"{what} not ready after {timeout}s")
        time.sleep(0.02)
