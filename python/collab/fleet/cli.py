"""`collab fleet up|down|status`: a local fleet of replicas behind nginx (see collab.fleet.fleet)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InvalidArgument
from ..transport.security import port_argument


def add_arguments(p: argparse.ArgumentParser, name: str = "fleet") -> None:
    sub = p.add_subparsers(dest="fleet_verb", metavar="VERB")
    up = sub.add_parser("up", help="start N replicas + nginx on 127.0.0.1:PORT; return when healthy")
    up.add_argument("--replicas", type=int, default=2)
    up.add_argument("--port", type=port_argument, default=8080, help="the proxy's port on 127.0.0.1")
    up.add_argument("--task", action="append", default=[], metavar="NAME[=module:factory]",
                    help="task every replica hosts (repeatable; as in collab serve; default echo)")
    up.add_argument("--task-arg", action="append", default=[], metavar="NAME.KEY=VALUE")
    up.add_argument("--workers", type=int, default=2, help="workers per replica")
    up.add_argument("--drain-timeout", type=float, default=10.0, help="per-replica drain deadline on down/SIGTERM")
    up.add_argument("--metrics-base", type=int, default=None, help="replica i serves /metrics on this port + i")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the fleet to be healthy")
    up.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                    help="extra `collab serve` argument for every replica (repeatable), "
                         "e.g. --serve-arg=--max-queue=64")
    for v, h in (("down", "drain and stop the fleet, remove its state directory"),
                 ("status", "print the fleet's processes and whether each is alive")):
        sp = sub.add_parser(v, help=h)
        sp.add_argument("--port", type=port_argument, default=8080)
        if v == "down":
            sp.add_argument("--timeout", type=float, default=30.0, help="then SIGKILL what still runs")
            sp.add_argument("--keep", action="store_true", help="keep the state directory (logs)")
    for sp in (up,) + tuple(sub.choices[v] for v in ("down", "status")):
        sp.add_argument("--state-dir", help="default $COLLAB_CACHE/fleet-PORT (~/.cache/collab/fleet-PORT)")


def run(args) -> int:
    from .fleet import Fleet, default_state_dir

    verb = getattr(args, "fleet_verb", None)
    if verb is None:
        print("collab fleet: give a verb: up, down or status", file=sys.stderr)
        return 2
    state = Path(args.state_dir) if args.state_dir else default_state_dir(args.port)
    fleet = Fleet(state)
    try:
        if verb == "up":
            fleet.up(args.replicas, args.port, args.task, args.task_arg, workers=args.workers,
                     drain_timeout=args.drain_timeout, metrics_base=args.metrics_base, serve_args=args.serve_arg,
                     timeout=args.timeout)
            print(f"collab fleet: {args.replicas} replicas healthy behind {fleet.target} (state {state})")
            for r in fleet.replicas:
                m = f" metrics :{r['metrics_port']}" if r["metrics_port"] else ""
                print(f"  {r['id']} pid {r['pid']} 127.0.0.1:{r['port']}{m}")
            return 0
        if not fleet.info:
            print(f"collab fleet: no fleet in {state}", file=sys.stderr)
            return 1
        if verb == "status":
            alive = dict((w, p) for w, p in fleet.running())
            print(f"fleet {fleet.target} (state {state})")
            print(f"  proxy pid {fleet.info['proxy']['pid'] if fleet.info.get('proxy') else '-'} "
                  f"{'up' if 'proxy' in alive else 'down'}")
            for r in fleet.replicas:
                print(f"  {r['id']} pid {r['pid']} 127.0.0.1:{r['port']} {'up' if r['id'] in alive else 'down'}")
            return 0 if len(alive) == len(fleet.replicas) + 1 else 1
        killed = fleet.down(timeout=args.timeout, keep=args.keep)
        print(f"collab fleet: stopped{' (SIGKILLed ' + str(killed) + ')' if killed else ''}"
              f"{'' if args.keep else '; removed ' + str(state)}")
        return 0
    except (InvalidArgument, RuntimeError, TimeoutError, OSError) as e:
        print(f"collab fleet {verb}: {e}", file=sys.stderr)
        return 1
