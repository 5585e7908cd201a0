"""Render, check and run the fleet's nginx (the template lives next to this file and in deploy/)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..errors import InvalidArgument

TEMPLATE = Path(__file__).with_name("nginx.conf.template")


def nginx_binary() -> str:
    for cand in (os.environ.get("COLLAB_NGINX"), shutil.which("nginx"), "/usr/sbin/nginx"):
        if cand and os.path.exists(cand):
            return cand
    raise FileNotFoundError("nginx not found (apt-get install nginx-light, or set COLLAB_NGINX)")


def render(state_dir: Path, listen: str, replicas, *, max_body_mb: int = 64, fail_timeout_s: int = 10) -> str:
    """The nginx.conf text for `replicas` (a list of 'host:port') behind `listen` ('host:port')."""
    if not replicas:
        raise InvalidArgument("a fleet needs at least one replica")
    servers = "\n".join(f"        server {r} max_fails=1 fail_timeout={int(fail_timeout_s)}s;" for r in replicas)
    user = "user root;" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    text = TEMPLATE.read_text()
    for k, v in (("USER_LINE", user), ("STATE_DIR", str(Path(state_dir).resolve())), ("SERVERS", servers),
                 ("LISTEN", listen), ("MAX_BODY", f"{int(max_body_mb)}m")):
        text = text.replace("{{" + k + "}}", v)
    return text


def write(state_dir: Path, listen: str, replicas, **kw) -> Path:
    state_dir = Path(state_dir)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (state_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    conf = state_dir / "nginx.conf"
    conf.write_text(render(state_dir, listen, replicas, **kw))
    return conf


def check(conf: Path) -> None:
    """`nginx -t -c conf`; raises RuntimeError with nginx's message when the config is bad."""
    state = Path(conf).resolve().parent
    r = subprocess.run([nginx_binary(), "-t", "-p", str(state), "-c", str(Path(conf).resolve())],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"nginx -t failed: {r.stderr.strip()}")


def start(conf: Path, log_path: Path) -> subprocess.Popen:
    state = Path(conf).resolve().parent
    with open(log_path, "ab") as log:
        return subprocess.Popen([nginx_binary(), "-p", str(state), "-c", str(Path(conf).resolve())],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
