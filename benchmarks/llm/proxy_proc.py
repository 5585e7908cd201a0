"""A delaying TCP proxy as its own process, driven over stdin (the LLM benchmark's network).

    python benchmarks/llm/proxy_proc.py 127.0.0.1:50061     # prints "port N", then reads:
      delay S        one-way delay in seconds from now on        -> ok
      stats          bytes and reads each way so far             -> {"up": [b, n], "down": [b, n]}
      log            start recording (wall time, direction, bytes) of every read chunk -> ok
      dump           stop recording, print the chunks            -> [["up", t, n], ...]
      quit

It runs apart from the device and the server so that relaying costs neither of them CPU time.
"""
from __future__ import annotations

import json
import sys
import threading
import time

from collab.net.proxy import DelayProxy


class _Counter(list):
    """The proxy's [bytes, reads] counter; also logs each read while recording."""

    def __init__(self, direction, log):
        super().__init__([0, 0])
        self.direction, self.log = direction, log

    def __setitem__(self, i, v):
        if i == 0 and self.log.on:
            self.log.events.append((self.direction, time.time(), v - self[0]))
        super().__setitem__(i, v)


class _Log:
    on = False
    events: list = []


def main() -> int:
    host, _, port = sys.argv[1].rpartition(":")
    log = _Log()
    log.events = []
    px = DelayProxy((host, int(port)), 0.0)
    px.bytes_up, px.bytes_down = _Counter("up", log), _Counter("down", log)
    lock = threading.Lock()
    print(f"port {px.port}", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        with lock:
            if cmd[0] == "delay":
                px.delay = max(0.0, float(cmd[1]))
                out = "ok"
            elif cmd[0] == "stats":
                out = json.dumps({"up": list(px.bytes_up), "down": list(px.bytes_down)})
            elif cmd[0] == "log":
                log.events, log.on = [], True
                out = "ok"
            elif cmd[0] == "dump":
                log.on = False
                out = json.dumps(log.events)
            elif cmd[0] == "quit":
                break
            else:
                out = json.dumps({"error": f"unknown command {cmd[0]!r}"})
        print(out, flush=True)
    px.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
