"""A TCP proxy on loopback that delays traffic by a fixed one-way latency (RTT/2 each way).

Used to put the same RTT on peers whose socket traffic collab does not control (llama.cpp's
RPC backend in the benchmark). Each chunk read from one side is forwarded to the other
``rtt/2`` seconds after it was read, in order; bandwidth is not limited.

    with DelayProxy(("127.0.0.1", 50052), rtt_s=0.05) as p:
        connect to ("127.0.0.1", p.port)
"""
from __future__ import annotations

import collections
import socket
import threading
import time

__all__ = ["DelayProxy"]


class _Pipe(threading.Thread):
    def __init__(self, src: socket.socket, dst: socket.socket, delay: float, counter: list):
        super().__init__(daemon=True)
        self.src, self.dst, self.delay, self.counter = src, dst, delay, counter
        self.q = collections.deque()
        self.cv = threading.Condition()
        self.eof = False
        self.sender = threading.Thread(target=self._send, daemon=True)

    def run(self):
        self.sender.start()
        try:
            while True:
                data = self.src.recv(1 << 16)
                if not data:
                    break
                with self.cv:
                    self.q.append((time.perf_counter() + self.delay, data))
                    self.counter[0] += len(data)
                    self.counter[1] += 1
                    self.cv.notify()
        except OSError:
            pass
        with self.cv:
            self.eof = True
            self.cv.notify()

    def _send(self):
        try:
            while True:
                with self.cv:
                    while not self.q and not self.eof:
                        self.cv.wait()
                    if not self.q and self.eof:
                        break
                    due, data = self.q.popleft()
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                self.dst.sendall(data)
        except OSError:
            pass
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class DelayProxy:
    def __init__(self, target: tuple, rtt_s: float, host: str = "127.0.0.1"):
        self.target = target
        self.delay = max(0.0, float(rtt_s)) / 2.0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.bytes_up = [0, 0]    # [bytes, chunks read] client -> server
        self.bytes_down = [0, 0]  # server -> client
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
            _Pipe(c, s, self.delay, self.bytes_up).start()
            _Pipe(s, c, self.delay, self.bytes_down).start()

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
