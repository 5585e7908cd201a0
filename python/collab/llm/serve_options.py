"""Options of `collab llm serve`: where to listen, session limits, and the same security
options as `collab serve` (TLS, bearer token), checked before the model is loaded.

Until the transport offers one shared helper for every server command, this is the LLM
server's: refuses an empty token, a missing token file, swapped certificate and key files and
an out-of-range port with a clear message, and warns loudly when a non-loopback address is
bound without both TLS and a token.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from ..errors import InvalidArgument

__all__ = ["add_serve_arguments", "server_security", "warn_if_exposed"]


def _port(v: str) -> int:
    try:
        p = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {v!r}") from None
    if not 0 <= p <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535 (0 = any free port), got {p}")
    return p


def add_serve_arguments(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes "
                   "the server: use TLS and a token then)")
    p.add_argument("--port", type=_port, default=50061, help="port (0 = any free port; default 50061)")
    p.add_argument("--n-ctx", type=int, default=2048, help="context (KV cache) of each session, in tokens")
    p.add_argument("--max-sessions", type=int, default=8, help="LLM sessions open at once (default 8)")
    p.add_argument("--max-sessions-per-client", type=int, default=2,
                   help="sessions one client (peer host) may hold (default 2)")
    p.add_argument("--busy-idle-s", type=float, default=10.0, help="when all sessions are taken, a newcomer "
                   "evicts one idle for longer than this (default 10 s)")
    p.add_argument("--session-idle-s", type=float, default=120.0,
                   help="a session with no message for this long is closed (default 120 s)")
    p.add_argument("--tls-cert", help="PEM certificate chain (enables TLS; needs --tls-key)")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--auth-token", help="bearer token clients must send (prefer --auth-token-file or "
                   "$COLLAB_AUTH_TOKEN: a command line is visible to other users)")
    p.add_argument("--auth-token-file", help="file holding the bearer token")


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidArgument(f"cannot read {what} {path!r}: {e.strerror}") from None


def server_security(args) -> dict:
    """Server(...) keyword arguments auth_token / tls_cert / tls_key from the parsed options."""
    out = {}
    sources = [(args.auth_token, "--auth-token")]
    if args.auth_token_file:
        sources.append((_read(args.auth_token_file, "token file").decode("utf-8", "replace").strip(),
                        f"--auth-token-file {args.auth_token_file}"))
    if os.environ.get("COLLAB_AUTH_TOKEN") is not None:
        sources.append((os.environ["COLLAB_AUTH_TOKEN"].strip(), "$COLLAB_AUTH_TOKEN"))
    given = [(t, where) for t, where in sources if t is not None]
    if len(given) > 1:
        raise InvalidArgument(f"give the token once: {', '.join(w for _, w in given)} all set one")
    if given:
        token, where = given[0]
        if not token:
            raise InvalidArgument(f"empty bearer token from {where}: refusing to start an unauthenticated server "
                                  "that looks authenticated (omit the option for no token)")
        out["auth_token"] = token
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
    if args.tls_cert:
        cert, key = _read(args.tls_cert, "TLS certificate"), _read(args.tls_key, "TLS key")
        if b"PRIVATE KEY" in cert and b"CERTIFICATE" in key:
            raise InvalidArgument("--tls-cert holds a private key and --tls-key a certificate: swap them")
        if b"-----BEGIN CERTIFICATE" not in cert:
            raise InvalidArgument(f"--tls-cert {args.tls_cert} is not a PEM certificate")
        if b"PRIVATE KEY-----" not in key:
            raise InvalidArgument(f"--tls-key {args.tls_key} is not a PEM private key")
        out["tls_cert"], out["tls_key"] = cert, key
    return out


def _loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str, security: dict, file=None) -> bool:
    """Print a loud warning when a non-loopback address is bound without TLS and a token; True
    when it warned."""
    if _loopback(host) or (security.get("tls_cert") and security.get("auth_token")):
        return False
    missing = " and ".join(x for x, k in (("TLS", "tls_cert"), ("a token", "auth_token")) if not security.get(k))
    bar = "!" * 78
    print(f"{bar}\nWARNING: serving on {host}, reachable from other machines, without {missing}:\n"
          f"anyone who can reach this port can use the server{' and read its traffic' if 'TLS' in missing else ''}."
          f"\nUse --tls-cert/--tls-key and --auth-token-file, or bind 127.0.0.1.\n{bar}",
          file=file or sys.stderr, flush=True)
    return True
