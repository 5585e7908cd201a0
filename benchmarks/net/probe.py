"""The client side of the shaping experiment (run by shaping.py inside the client network
namespace): one `echo` request per size, recording when each started (seconds after t0) and
its timings. Writes a JSON list to --out.

    python benchmarks/net/probe.py --target 127.0.0.1:PORT --sizes 5000,120000 --t0 T --out probe.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

from collab.transport.client import Client


def run_probe(target: str, sizes: Sequence[int], t0: float, out: str, gap_s: float, reply_bytes: int,
              timeout: float = 120.0):
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--sizes", required=True, help="comma-separated payload sizes in bytes")
    ap.add_argument("--t0", type=float, required=True, help="time.monotonic() of trace time 0")
    ap.add_argument("--gap-s", type=float, default=0.0)
    ap.add_argument("--reply-bytes", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    run_probe(args.target, [int(s) for s in args.sizes.split(",") if s], args.t0, args.out, args.gap_s,
              args.reply_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
