"""The delaying TCP proxy: adds a fixed one-way latency (rtt/2) to each direction of every
connection it forwards; bandwidth is not limited (tc does that, see collab.net.netns).

Used wherever collab does not control the sockets it wants to delay: llama.cpp's RPC backend
in the LLM benchmark (in-process, on loopback) and the gRPC path of the shaping harness (as a
helper process inside the client network namespace: `python -m collab.net.proxy`).

    with DelayProxy(("127.0.0.1", 50052), rtt_s=0.05) as p:
        connect to ("127.0.0.1", p.port)

Each chunk read from one side is forwarded to the other `rtt/2` seconds after it was read, in
order. A half-close is passed on after the same delay (the other direction keeps flowing); a
reset on either side tears down both directions. `delay` may be changed while connections
are open (it applies to chunks read from then on).
"""
from __future__ import annotations

import argparse
import collections
import os
import socket
import sys
import threading
import time
from typing import Optional, Tuple, Union

from ..errors import InvalidArgument

__all__ = ["DelayProxy", "run_delay_proxy", "parse_hostport"]

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def parse_hostport(addr: Union[str, Tuple[str, int]]) -> Tuple[str, int]:
    """("host", port) from "host:port" or a tuple; InvalidArgument when the port is not 0..65535."""
    if isinstance(addr, str):
        host, sep, port = addr.rpartition(":")
        if not sep or not host:
            raise InvalidArgument(f"address must be 'host:port', got {addr!r}")
        addr = (host.strip("[]"), port)
    host, port = addr
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise InvalidArgument(f"port must be an integer, got {port!r}") from None
    if not 0 <= port <= 65535:
        raise InvalidArgument(f"port must be in 0..65535, got {port}")
    return str(host), port


def _shutdown(s: socket.socket, how=socket.SHUT_RDWR):
    try:
        s.shutdown(how)
    except OSError:
        pass


class _Pipe(threading.Thread):
    """One direction of one connection: a reader thread queues (due time, chunk), a sender
    thread forwards each chunk when it is due."""

    def __init__(self, src: socket.socket, dst: socket.socket, proxy: "DelayProxy", counter: list):
        super().__init__(daemon=True)
        self.src, self.dst, self.proxy, self.counter = src, dst, proxy, counter
        self.q = collections.deque()
        self.cv = threading.Condition()
        self.eof = False
        self.reset = False
        self.sender = threading.Thread(target=self._send, daemon=True)

    def run(self):
        self.sender.start()
        try:
            while True:
                data = self.src.recv(1 << 16)
                if not data:
                    break
                if _QUICKACK is not None:
                    # ACK at once: with delayed ACKs, a peer that writes small messages
                    # back to back (Nagle) would stall ~40 ms per message on the proxy.
                    try:
                        self.src.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                    except OSError:
                        pass
                with self.cv:
                    self.q.append((time.perf_counter() + self.proxy.delay, data))  # read live: may change
                    self.counter[0] += len(data)
                    self.counter[1] += 1
                    self.cv.notify()
        except OSError:
            self.reset = True
        with self.cv:
            self.q.append((time.perf_counter() + (0.0 if self.reset else self.proxy.delay), None))
            self.eof = True
            self.cv.notify()

    def _send(self):
        try:
            while True:
                with self.cv:
                    while not self.q:
                        self.cv.wait()
                    due, data = self.q.popleft()
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                if data is None:
                    break
                self.dst.sendall(data)
        except OSError:
            self.reset = True
        if self.reset:  # a reset: tear down both directions
            _shutdown(self.src)
            _shutdown(self.dst)
        else:  # half-close: pass it on
            _shutdown(self.dst, socket.SHUT_WR)


class DelayProxy:
    """Forwards TCP connections from (host, port) to `target`, delaying each direction by
    rtt_s / 2. port=0 picks a free port (read it from .port). Counters: bytes_up / bytes_down
    = [bytes, chunks] client -> server / server -> client."""

    def __init__(self, target, rtt_s: float, host: str = "127.0.0.1", port: int = 0, backlog: int = 64):
        self.target = parse_hostport(target)
        rtt_s = float(rtt_s)
        if not rtt_s >= 0 or rtt_s > 3600:
            raise InvalidArgument(f"rtt_s must be in [0, 3600], got {rtt_s}")
        self.delay = rtt_s / 2.0  # may be changed while connections are open
        self.sock = socket.create_server(parse_hostport((host, port)), backlog=backlog)
        self.port = self.sock.getsockname()[1]
        self.bytes_up = [0, 0]
        self.bytes_down = [0, 0]
        self._conns = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            for x in (c, s):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns += [c, s]
            _Pipe(c, s, self, self.bytes_up).start()
            _Pipe(s, c, self, self.bytes_down).start()

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until close() (the helper-process mode)."""
        self._thread.join(timeout)

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_delay_proxy(listen: str, target: str, delay_s: float, ready_file: Optional[str] = None):
    """Serve forever: forward from `listen` ("host:port") to `target`, delaying each direction by
    delay_s; once listening, write the bound port to ready_file (atomically)."""
    host, port = parse_hostport(listen)
    proxy = DelayProxy(target, 2.0 * float(delay_s), host=host, port=port)
    if ready_file:
        with open(ready_file + ".tmp", "w") as f:
            f.write(str(proxy.port))
        os.replace(ready_file + ".tmp", ready_file)
    proxy.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m collab.net.proxy", description="delaying TCP proxy")
    ap.add_argument("--listen", required=True, help="host:port to listen on (port 0 = any free port)")
    ap.add_argument("--target", required=True, help="host:port to forward to")
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay added to each direction")
    ap.add_argument("--ready-file", help="write the bound port here once listening")
    args = ap.parse_args(argv)
    try:
        run_delay_proxy(args.listen, args.target, args.delay_ms / 1e3, args.ready_file)
    except (InvalidArgument, OSError) as e:
        print(f"collab.net.proxy: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
