"""`collab serve`: host tasks over gRPC.

    collab serve --port 50051 --task echo --task codec-stats
    collab serve --task vit=collab.transport.onnx_task:OnnxHandler --task-arg vit.model=tail.onnx \\
                 --workers 2 --auth-token-file token.txt --tls-cert cert.pem --tls-key key.pem

--task NAME=module:factory imports module, calls factory(**kwargs) with the --task-arg values
given for NAME (strings; JSON numbers/booleans are converted), and hosts the returned
TaskHandler under NAME. A bare --task NAME picks a built-in task (echo, codec-stats).
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys

from ..errors import InvalidArgument
from .security import add_security_arguments, port_argument, server_credentials_from_args


def add_arguments(p: argparse.ArgumentParser, name: str = "serve") -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 / [::] for all; default 127.0.0.1; "
                   "anything but loopback without TLS and a token is warned about)")
    p.add_argument("--port", type=port_argument, default=50051, help="port 0..65535 (0 = any free port; printed at start)")
    p.add_argument("--task", action="append", default=[], metavar="NAME[=module:factory]",
                   help="task to host (repeatable); bare NAME = built-in (echo, codec-stats)")
    p.add_argument("--task-arg", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="keyword argument for a task's factory (repeatable)")
    p.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1), help="requests computed in parallel")
    p.add_argument("--max-queue", type=int, default=None, help="requests waiting for a worker before "
                   "RESOURCE_EXHAUSTED (default 4 x workers)")
    p.add_argument("--max-message-mb", type=float, default=64.0, help="largest message in MiB (default 64)")
    p.add_argument("--max-sessions", type=int, default=64, help="open sessions in all (default 64)")
    p.add_argument("--max-sessions-per-client", type=int, default=None,
                   help="open sessions per client address (default max-sessions / 4)")
    p.add_argument("--session-idle-s", type=float, default=300.0, help="idle session time-out (default 300)")
    p.add_argument("--session-idle-busy-s", type=float, default=15.0,
                   help="idle session time-out while sessions are being refused (default 15)")
    p.add_argument("--session-max-s", type=float, default=3600.0, help="session age limit (default 3600)")
    p.add_argument("--session-max-mb", type=float, default=None, help="per-session memory limit (tasks reporting nbytes())")
    p.add_argument("--max-decoded-mb", type=float, default=None,
                   help="codec-stats: largest decoded tensor per request in MiB (default 64)")
    p.add_argument("--decode-budget-mb", type=float, default=None,
                   help="codec-stats: decoded tensors held at once by the whole server, MiB (default 256)")
    add_security_arguments(p)
    p.add_argument("--log-level", default="INFO", help="per-request timing lines are logged at INFO")
    p.add_argument("--port-file", help="write the bound port to this file once serving")
    # fleet: metrics + graceful drain (collab.transport.metrics / drain)
    p.add_argument("--metrics-port", type=port_argument, default=None,
                   help="serve Prometheus metrics at http://METRICS_HOST:PORT/metrics (0 = any free port; default off)")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="address the metrics endpoint binds (default 127.0.0.1: plain HTTP without authentication, "
                        "so it stays on loopback unless asked; a scraper on another machine needs e.g. 0.0.0.0, "
                        "which is warned about)")
    p.add_argument("--drain-timeout", type=float, default=30.0,
                   help="on SIGTERM: finish in-flight requests and open sessions for up to this many seconds")
    p.add_argument("--drain-notice-s", type=float, default=0.0,
                   help="on SIGTERM: seconds with readiness false before the listener closes (Kubernetes)")
    p.set_defaults(command=name)


def _mib(v, what):
    if v is None:
        return None
    if not 0 < v <= 1 << 20:
        raise InvalidArgument(f"{what} must be in (0, 1048576] MiB, got {v}")
    return int(v * (1 << 20))


def _value(v: str):
    try:
        j = json.loads(v)
    except ValueError:
        return v
    return j if isinstance(j, (int, float, bool)) else v


def build_handlers(specs, task_args, builtin_kwargs=None):
    """builtin_kwargs: {builtin name: kwargs} from the command's own flags (--task-arg wins)."""
    from .builtin import BUILTIN
    kwargs = {}
    for a in task_args:
        name, sep, rest = a.partition(".")
        key, sep2, val = rest.partition("=")
        if not sep or not sep2 or not name or not key:
            raise InvalidArgument(f"--task-arg must be NAME.KEY=VALUE, got {a!r}")
        kwargs.setdefault(name, {})[key] = _value(val)
    handlers = []
    names = set()
    builtin_kwargs = builtin_kwargs or {}
    for spec in specs:
        name, sep, target = spec.partition("=")
        if not name:
            raise InvalidArgument(f"--task needs a name, got {spec!r}")
        if not sep:
            if name not in BUILTIN:
                raise InvalidArgument(f"unknown built-in task {name!r} (built-ins: {', '.join(BUILTIN)}); "
                                      "use NAME=module:factory")
            factory = BUILTIN[name]
            kwargs[name] = {**builtin_kwargs.get(name, {}), **kwargs.get(name, {})}
        else:
            mod, sep, fn = target.partition(":")
            if not sep or not mod or not fn:
                raise InvalidArgument(f"--task {spec!r}: expected NAME=module:factory")
            try:
                factory = getattr(importlib.import_module(mod), fn)
            except (ImportError, AttributeError) as e:
                raise InvalidArgument(f"--task {spec!r}: cannot load {target}: {e}") from None
        h = factory(**kwargs.get(name, {}))
        h.name = name
        if name in names:
            raise InvalidArgument(f"task {name!r} given twice")
        names.add(name)
        handlers.append(h)
    unused = set(kwargs) - names
    if unused:
        raise InvalidArgument(f"--task-arg for tasks not hosted: {', '.join(sorted(unused))}")
    return handlers


def run(args) -> int:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from .server import Server
    except ImportError as e:
        print(f"collab serve needs grpcio and protobuf>=7.35 (pip install 'collab[grpc]'): {e}", file=sys.stderr)
        return 2
    try:
        sec = server_credentials_from_args(args)
        from .drain import check_drain_settings

        check_drain_settings(args.drain_timeout, args.drain_notice_s, ("--drain-timeout", "--drain-notice-s"))
        stats_kwargs = {k: v for k, v in (("max_decoded_bytes", _mib(args.max_decoded_mb, "--max-decoded-mb")),
                                          ("budget_bytes", _mib(args.decode_budget_mb, "--decode-budget-mb")))
                        if v is not None}
        handlers = build_handlers(args.task or ["echo"], args.task_arg, {"codec-stats": stats_kwargs})
        srv = Server(handlers, args.host, args.port, workers=args.workers, max_queue=args.max_queue,
                     max_message_bytes=_mib(args.max_message_mb, "--max-message-mb"), auth_token=sec.auth_token,
                     tls_cert=sec.tls_cert, tls_key=sec.tls_key, max_sessions=args.max_sessions,
                     max_sessions_per_client=args.max_sessions_per_client,
                     session_idle_s=args.session_idle_s, session_idle_busy_s=args.session_idle_busy_s,
                     session_max_s=args.session_max_s,
                     session_max_bytes=_mib(args.session_max_mb, "--session-max-mb"),
                     trusted_proxies=sec.trusted_proxies)
        srv.start()
    except (InvalidArgument, OSError) as e:
        print(f"collab serve: {e}", file=sys.stderr)
        return 2
    print(f"collab serve: listening on {srv.address} tasks={','.join(srv.tasks)}", flush=True)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(srv.port))
        os.replace(tmp, args.port_file)

    if args.metrics_port is not None:  # fleet hook
        from .security import is_loopback
        try:
            mport = srv.replica.metrics.serve_http(args.metrics_port, args.metrics_host)
        except OSError as e:
            print(f"collab serve: metrics endpoint on {args.metrics_host}:{args.metrics_port}: {e}", file=sys.stderr)
            srv.stop(0)
            return 2
        print(f"collab serve: metrics on http://{args.metrics_host}:{mport}/metrics", flush=True)
        if not is_loopback(args.metrics_host):
            print(f"WARNING: metrics endpoint bound to {args.metrics_host}, reachable from other machines over plain "
                  "HTTP without authentication (request counters, latencies and byte totals per task; no request "
                  "data). Restrict it with a network policy or bind 127.0.0.1.", file=sys.stderr, flush=True)
    from .drain import install_sigterm  # fleet hook: SIGTERM drains (a second one stops at once)
    install_sigterm(srv, args.drain_timeout, args.drain_notice_s)
    srv.wait()
    srv.replica.metrics.close()
    return 0
