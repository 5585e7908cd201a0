"""A local fleet: N `collab serve` replicas behind nginx (consistent hash on x-collab-session).

State directory (default `$COLLAB_CACHE/fleet-<port>`, COLLAB_CACHE defaulting to
~/.cache/collab; `--state-dir` to choose) - everything a fleet writes is in it, and
`collab fleet down` removes it (unless told to keep it):
    fleet.json            pids, ports and command lines of the replicas and the proxy
    nginx.conf            the rendered proxy config (deploy/nginx.conf.template)
    nginx.pid, nginx.log, nginx-error.log, tmp/     nginx's own files
    replica-<i>.log       a replica's output; replica-<i>.port its bound port
Replica i runs with COLLAB_REPLICA_ID=r<i> (the x-collab-replica header of its answers).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from ..errors import InvalidArgument
from ..transport.common import REPLICA_HEADER, SESSION_HEADER
from . import nginx

STATE_FILE = "fleet.json"


def default_state_dir(port: int) -> Path:
    root = Path(os.environ.get("COLLAB_CACHE") or Path.home() / ".cache" / "collab")
    return root / f"fleet-{int(port)}"


def _alive(pid: int, marker: str) -> bool:
    """pid runs and is still the process we started (its command line holds `marker`)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except OSError:
        return False
    return marker in cmd


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _replica_id_of(call) -> str:
    for k, v in call.initial_metadata() or ():
        if k == REPLICA_HEADER:
            return v
    return ""


def probe_proxy(target: str, want: set, timeout: float = 30.0) -> set:
    """Call Health through the proxy with fresh session keys until every replica id in `want`
    answered SERVING. Returns the ids seen; raises TimeoutError if some never answered."""
    import grpc

    from ..transport import _wire as w

    seen = set()
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        health = ch.unary_unary(w.HEALTH)
        while seen < want and time.monotonic() < deadline:
            try:
                raw, call = health.with_call(w.HealthRequest().SerializeToString(), timeout=2.0,
                                             metadata=((SESSION_HEADER, uuid.uuid4().hex),))
            except grpc.RpcError:
                time.sleep(0.1)
                continue
            rep = w.HealthReply()
            rep.ParseFromString(raw)
            if rep.status == "SERVING":
                seen.add(_replica_id_of(call))
    if not seen >= want:
        raise TimeoutError(f"through the proxy only {sorted(seen)} of {sorted(want)} answered within {timeout}s")
    return seen


def start_proxy(state_dir: Path, port: int, replicas) -> subprocess.Popen:
    """nginx on 127.0.0.1:port in front of `replicas` ('host:port' list; e.g. in-process servers)."""
    state_dir = Path(state_dir)
    conf = nginx.write(state_dir, f"127.0.0.1:{port}", replicas)
    nginx.check(conf)
    p = nginx.start(conf, state_dir / "nginx.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # listening?
        if p.poll() is not None:
            raise RuntimeError(f"nginx exited ({p.returncode}): {_tail(state_dir / 'nginx-error.log')}"
                               f"{_tail(state_dir / 'nginx.log')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise TimeoutError(f"nginx did not listen on 127.0.0.1:{port}")


class Fleet:
    """Start/stop a fleet; also used by the tests and the load test (kill / drain a replica)."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.info: dict = {}
        p = self.state_dir / STATE_FILE
        if p.exists():
            self.info = json.loads(p.read_text())

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.info['port']}"

    @property
    def replicas(self) -> list:
        return self.info.get("replicas", [])

    def _save(self):
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.info, indent=1))
        os.replace(tmp, self.state_dir / STATE_FILE)

    def running(self) -> list:
        """(what, pid) of the fleet's processes still alive."""
        out = []
        if self.info.get("proxy") and _alive(self.info["proxy"]["pid"], "nginx"):
            out.append(("proxy", self.info["proxy"]["pid"]))
        out += [(r["id"], r["pid"]) for r in self.replicas if _alive(r["pid"], "collab.cli")]
        return out

    # -- up ------------------------------------------------------------------------------------
    def up(self, replicas: int, port: int, tasks=(), task_args=(), *, workers: int = 2, drain_timeout: float = 10.0,
           metrics_base: int | None = None, serve_args=(), timeout: float = 120.0) -> "Fleet":
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 64:
            raise InvalidArgument(f"replicas must be an integer in [1, 64], got {replicas!r}")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidArgument(f"port must be in [1, 65535], got {port!r}")
        if self.running():
            raise InvalidArgument(f"a fleet is already running from {self.state_dir} (collab fleet down first)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.info = {"port": port, "created": time.time(), "replicas": [], "proxy": None,
                     "tasks": list(tasks) or ["echo"]}
        try:
            self._start_replicas(replicas, tasks, task_args, workers, drain_timeout, metrics_base, serve_args, timeout)
            self._start_proxy(port)
            self.wait_healthy(timeout)
        except BaseException:
            self.down(timeout=5.0, keep=True)
            raise
        return self

    def _start_replicas(self, n, tasks, task_args, workers, drain_timeout, metrics_base, serve_args, timeout):
        procs = []
        for i in range(n):
            pf = self.state_dir / f"replica-{i}.port"
            pf.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "collab.cli", "serve", "--port", "0", "--port-file", str(pf),
                   "--workers", str(workers), "--drain-timeout", str(drain_timeout), "--log-level", "WARNING",
                   # nginx (on this machine) names each client in x-collab-client: per-client limits
                   # count the clients behind the proxy, not the proxy
                   "--trusted-proxy", "127.0.0.1"]
            for t in tasks:
                cmd += ["--task", t]
            for a in task_args:
                cmd += ["--task-arg", a]
            if metrics_base is not None:
                cmd += ["--metrics-port", str(metrics_base + i)]
            cmd += list(serve_args)
            log = self.state_dir / f"replica-{i}.log"
            env = dict(os.environ, COLLAB_REPLICA_ID=f"r{i}")
            with open(log, "ab") as lf:
                p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
            rec = {"id": f"r{i}", "pid": p.pid, "port": None, "log": log.name, "cmd": cmd,
                   "metrics_port": None if metrics_base is None else metrics_base + i}
            self.info["replicas"].append(rec)
            procs.append((p, pf, rec))
        self._save()
        deadline = time.monotonic() + timeout
        for p, pf, rec in procs:
            while not pf.exists():
                if p.poll() is not None:
                    raise RuntimeError(f"replica {rec['id']} exited ({p.returncode}): "
                                       f"{_tail(self.state_dir / rec['log'])}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replica {rec['id']} did not bind within {timeout}s")
                time.sleep(0.1)
            rec["port"] = int(pf.read_text())
        self._save()

    def _start_proxy(self, port):
        p = start_proxy(self.state_dir, port, [f"127.0.0.1:{r['port']}" for r in self.replicas])
        self.info["proxy"] = {"pid": p.pid, "conf": "nginx.conf"}
        self._save()

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Every replica SERVING on grpc.health.v1 directly, and reachable through the proxy."""
        from ..transport.health import check

        deadline = time.monotonic() + timeout
        for r in self.replicas:
            while check(f"127.0.0.1:{r['port']}") != "SERVING":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replica {r['id']} not SERVING within {timeout}s")
                time.sleep(0.1)
        probe_proxy(self.target, {r["id"] for r in self.replicas}, max(1.0, deadline - time.monotonic()))

    # -- control -------------------------------------------------------------------------------
    def signal(self, replica_id: str, sig: int) -> None:
        """Send `sig` to one replica (SIGTERM drains it, SIGKILL kills it)."""
        for r in self.replicas:
            if r["id"] == replica_id:
                if _alive(r["pid"], "collab.cli"):
                    os.kill(r["pid"], sig)
                return
        raise InvalidArgument(f"no replica {replica_id!r} in this fleet")

    def down(self, timeout: float = 30.0, keep: bool = False) -> list:
        """Drain every replica (SIGTERM), then stop nginx gracefully (SIGQUIT); SIGKILL what is
        still running after `timeout`. Removes the state directory unless keep. Returns what had
        to be killed."""
        procs = [(r["pid"], "collab.cli", signal.SIGTERM) for r in self.replicas]
        if self.info.get("proxy"):
            procs.append((self.info["proxy"]["pid"], "nginx", signal.SIGQUIT))
        for pid, marker, sig in procs:
            if _alive(pid, marker):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        killed = []
        for pid, marker, _ in procs:
            while _alive(pid, marker) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid, marker):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            try:  # reap it when it is our child (tests, load test)
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if not keep and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        return killed
