"""Security options shared by every collab server command (`collab serve`, `collab llm serve`):
bearer token, TLS, the bind address, and a loud warning when a server is reachable from other
machines without both TLS and a token. Nothing here fails open: an empty token, a missing or
empty token file, a certificate and key that do not belong together (or are swapped), or a
port outside 0..65535 are clear errors (InvalidArgument) before anything binds.

    p = argparse.ArgumentParser()
    add_security_arguments(p)       # --tls-cert --tls-key --auth-token --auth-token-file --trusted-proxy
    args = p.parse_args()
    sec = server_credentials_from_args(args)        # SecurityConfig(auth_token, tls_cert, tls_key, trusted_proxies)
    Server(handlers, host, port, auth_token=sec.auth_token, tls_cert=sec.tls_cert, tls_key=sec.tls_key,
           trusted_proxies=sec.trusted_proxies)
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import ssl
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

from ..errors import InvalidArgument

log = logging.getLogger("collab.transport.security")

TOKEN_ENV = "COLLAB_AUTH_TOKEN"

__all__ = ["SecurityConfig", "add_security_arguments", "server_credentials_from_args", "check_token",
           "check_port", "port_argument", "check_tls_pems", "load_tls_pair", "is_loopback", "exposure_warning", "warn_if_exposed", "TOKEN_ENV"]


@dataclass(frozen=True)
class SecurityConfig:
    auth_token: Optional[str] = None
    tls_cert: Optional[bytes] = None   # PEM certificate chain
    tls_key: Optional[bytes] = None    # PEM private key
    trusted_proxies: tuple = ()        # hosts whose x-collab-client header names the client

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --tls-cert, --tls-key, --auth-token, --auth-token-file and --trusted-proxy to a server command."""
    g = parser.add_argument_group("security")
    g.add_argument("--tls-cert", help="PEM certificate chain (enables TLS; needs --tls-key)")
    g.add_argument("--tls-key", help="PEM private key of --tls-cert")
    g.add_argument("--auth-token", help=f"bearer token clients must send (prefer --auth-token-file or ${TOKEN_ENV}; "
                                        "an empty token is refused)")
    g.add_argument("--auth-token-file", help="file holding the bearer token (first line; must not be empty)")
    g.add_argument("--trusted-proxy", action="append", default=[], metavar="HOST",
                   help="a proxy in front of this server (repeatable; an address as the server sees it, e.g. "
                        "127.0.0.1): the client its calls name in x-collab-client counts for the per-client "
                        "limits; from any other peer that header is ignored")


def check_token(token: str, source: str) -> str:
    """The token if usable as an HTTP/2 header value, else InvalidArgument naming `source`."""
    if not isinstance(token, str) or not token:
        raise InvalidArgument(f"{source}: the auth token is empty; an empty token would leave the server open "
                              "(omit the option to run without a token)")
    if token != token.strip() or not token.isascii() or not token.isprintable():
        raise InvalidArgument(f"{source}: the auth token must be printable ASCII without leading/trailing spaces")
    if len(token) > 4096:
        raise InvalidArgument(f"{source}: the auth token is longer than 4096 characters")
    return token


def check_port(port) -> int:
    """A TCP port 0..65535 (0 = any free port); InvalidArgument otherwise (gRPC would silently
    bind port % 65536)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgument(f"port must be an integer in 0..65535 (0 = any free port), got {port!r}")
    return port


def port_argument(text: str) -> int:
    """argparse type of a --port option: check_port on the integer, a usage error otherwise."""
    try:
        return check_port(int(text))
    except (ValueError, InvalidArgument):
        raise argparse.ArgumentTypeError(f"must be an integer in 0..65535 (0 = any free port), got {text!r}") from None


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidArgument(f"cannot read {what} {path!r}: {e.strerror or e}") from None


def _token_from_args(args) -> Optional[str]:
    given = [o for o, v in (("--auth-token", getattr(args, "auth_token", None)),
                            ("--auth-token-file", getattr(args, "auth_token_file", None))) if v is not None]
    if len(given) > 1:
        raise InvalidArgument("give either --auth-token or --auth-token-file, not both")
    if getattr(args, "auth_token", None) is not None:
        return check_token(args.auth_token, "--auth-token")
    if getattr(args, "auth_token_file", None) is not None:
        raw = _read(args.auth_token_file, "token file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(f"token file {args.auth_token_file!r} is not UTF-8 text") from None
        lines = text.splitlines()
        return check_token(lines[0].strip() if lines else "", f"token file {args.auth_token_file!r}")
    env = os.environ.get(TOKEN_ENV)
    if env is not None:
        return check_token(env.strip(), f"${TOKEN_ENV}")
    return None


def _pem_kind(data: bytes) -> str:
    if b"-----BEGIN CERTIFICATE-----" in data:
        return "certificate"
    if b"PRIVATE KEY-----" in data:
        return "private key"
    return "unknown"


def check_tls_pems(cert: bytes, key: bytes, cert_name: str = "--tls-cert", key_name: str = "--tls-key"):
    """(cert, key) when they are a PEM certificate and its private key; InvalidArgument naming the
    problem otherwise (swapped, not PEM, key of another certificate)."""
    kc, kk = _pem_kind(cert), _pem_kind(key)
    if kc == "private key" and kk == "certificate":
        raise InvalidArgument(f"{cert_name} holds a private key and {key_name} a certificate: the two are swapped")
    if kc != "certificate":
        raise InvalidArgument(f"{cert_name} is not a PEM certificate (found: {kc})")
    if kk != "private key":
        raise InvalidArgument(f"{key_name} is not a PEM private key (found: {kk})")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain reads files: the PEMs go through a private temporary directory
    with tempfile.TemporaryDirectory() as tmp:
        c, k = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        with open(c, "wb") as f:
            f.write(cert)
        with open(os.open(k, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(key)
        try:
            ctx.load_cert_chain(c, k)
        except ssl.SSLError as e:
            why = "the private key does not match the certificate" if "MISMATCH" in str(e).upper() else str(e)
            raise InvalidArgument(f"{cert_name} / {key_name}: {why}") from None
    return cert, key


def load_tls_pair(cert_path: Optional[str], key_path: Optional[str]):
    """(cert PEM, key PEM) or (None, None); InvalidArgument for one without the other, unreadable
    files, swapped files, or a key that does not belong to the certificate."""
    if cert_path is None and key_path is None:
        return None, None
    if cert_path is None or key_path is None:
        raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
    return check_tls_pems(_read(cert_path, "TLS certificate"), _read(key_path, "TLS private key"),
                          f"--tls-cert {cert_path!r}", f"--tls-key {key_path!r}")


def server_credentials_from_args(args) -> SecurityConfig:
    """Validate the options added by add_security_arguments (token from --auth-token,
    --auth-token-file or $COLLAB_AUTH_TOKEN, in that order) and load the TLS files."""
    token = _token_from_args(args)
    cert, key = load_tls_pair(getattr(args, "tls_cert", None), getattr(args, "tls_key", None))
    proxies = tuple(getattr(args, "trusted_proxy", None) or ())
    bad = [h for h in proxies if not h or len(h) > 255 or not h.isprintable() or " " in h]
    if bad:
        raise InvalidArgument(f"--trusted-proxy takes a host name or address, got {bad[0]!r}")
    return SecurityConfig(auth_token=token, tls_cert=cert, tls_key=key, trusted_proxies=proxies)


def is_loopback(host: str) -> bool:
    h = str(host).strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a host name: may resolve to anything


def exposure_warning(host: str, tls: bool, token: bool) -> Optional[str]:
    """The warning text when a server on `host` is reachable from other machines without both
    TLS and a token, else None."""
    if is_loopback(host) or (tls and token):
        return None
    missing = " and ".join(w for w, ok in (("TLS", tls), ("an auth token", token)) if not ok)
    return (f"WARNING: collab server bound to {host}, reachable from other machines, without {missing}: anyone "
            "who can reach this port can use it" + ("" if tls else " and read its traffic") +
            ". Use --tls-cert/--tls-key and --auth-token-file, or bind 127.0.0.1.")


def warn_if_exposed(host: str, tls: bool, token: bool) -> Optional[str]:
    """Log and print (stderr) the exposure warning when it applies; returns it."""
    msg = exposure_warning(host, tls, token)
    if msg:
        log.warning(msg)
        print(msg, file=sys.stderr, flush=True)
    return msg
