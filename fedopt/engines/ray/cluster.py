"""Joining a running Ray cluster, with the token that a token-authenticated cluster asks for.

From Ray 2.60 on, a head started with ``ray start --head`` uses token authentication
as soon as a token exists on that machine (``RAY_AUTH_TOKEN``, the file named by
``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``, which every ``ray.init()`` of a
local instance creates), and it rejects every driver that does not present it. A
driver presents its token only in token mode (``RAY_AUTH_MODE=token``), and Ray turns
that mode on by itself only for a cluster it finds on its own (``address="auto"``
without ``RAY_ADDRESS``): a named address (``HOST:PORT``, ``ray://HOST:PORT``, or
``auto`` resolved through ``RAY_ADDRESS``) gets no token, and the driver fails with
"Authentication token is missing or incorrect".

:func:`join_cluster` decides before connecting (:func:`cluster_auth`):

* ``RAY_AUTH_MODE`` set: it is respected (``token`` without any token is an error
  that names what to set).
* else a token named explicitly (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``) is
  presented to any cluster;
* else the default token file ``~/.ray/auth_token`` is presented to a cluster on
  this machine only (``auto``, a loopback address, or an address of this machine),
  as Ray does for the clusters it finds; it is never sent to another machine.

A cluster that still rejects the driver ends in a one-line error that says exactly
what to set. The cluster's own authentication is not touched.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TOKEN_FIX = ("set RAY_AUTH_TOKEN_PATH to a file that holds the cluster's token (`ray get-auth-token` on its head "
             "node prints it) or RAY_AUTH_TOKEN to the token itself")
"""What a user sets to join a token-authenticated cluster (the end of every authentication error)."""

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5})$")
_REJECTED = ("InvalidAuthToken", "Authentication token is missing or incorrect", "AuthenticationError",
             "Unauthenticated")


@dataclass(frozen=True)
class ClusterAuth:
    """How a driver authenticates to a cluster.

    Attributes
    ----------
    token : bool
        Whether the driver presents a token (runs in Ray's token mode).
    source : str or None
        Where the presented token comes from (``RAY_AUTH_TOKEN``,
        ``RAY_AUTH_TOKEN_PATH (<file>)`` or the default token file); None without a token.
    mode : str or None
        ``RAY_AUTH_MODE`` as set in the environment (None: unset, fedopt decides).
    """

    token: bool
    source: str | None
    mode: str | None


def check_address(address: str, key: str = "--address") -> str:
    """``address`` if it is ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` (Ray Client); else a
    :class:`ValueError` naming ``key`` and the allowed forms."""
    ok = isinstance(address, str) and (address == "auto" or _HOST_PORT.match(address.removeprefix("ray://")))
    if not ok:
        raise ValueError(f"{key}: {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    return address


def find_token(environ: Mapping[str, str], home: Path) -> str | None:
    """Where Ray would read a token from, in Ray's order: ``RAY_AUTH_TOKEN``, the file named by
    ``RAY_AUTH_TOKEN_PATH`` (which must exist), ``home/.ray/auth_token``; None when there is none."""
    if environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        if not Path(path).expanduser().is_file():
            raise ValueError(f"RAY_AUTH_TOKEN_PATH={path}: no such file; {TOKEN_FIX}")
        return f"RAY_AUTH_TOKEN_PATH ({path})"
    default = home / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def resolved_address(address: str, environ: Mapping[str, str]) -> str:
    """The address Ray connects to: ``auto`` means ``RAY_ADDRESS`` when that is set (as in ``ray.init``)."""
    env = environ.get("RAY_ADDRESS")
    return env if address == "auto" and env else address


def on_this_machine(address: str) -> bool:
    """Whether the cluster at ``address`` runs on this machine: ``auto`` (a cluster Ray finds here),
    a loopback or unspecified address, or an address the kernel routes back to this machine."""
    if address == "auto":
        return True
    m = _HOST_PORT.match(address.removeprefix("ray://"))
    if m is None:
        return False
    host = m.group(1).strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(m.group(2)), type=socket.SOCK_DGRAM)
    except (OSError, ValueError):
        return False
    for family, _, _, _, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip.is_loopback or ip.is_unspecified:
            return True
        # a datagram socket "connected" to a local address gets that address as its source
        # (nothing is sent); to another machine, the source is one of ours
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(sockaddr)
                if ipaddress.ip_address(str(s.getsockname()[0]).split("%", 1)[0]) == ip:
                    return True
        except OSError:
            continue
    return False


def cluster_auth(address: str, environ: Mapping[str, str], home: Path) -> ClusterAuth:
    """Whether a driver joining ``address`` presents a token, and which (see the module docstring).

    Raises :class:`ValueError` (one line, naming what to set) for ``RAY_AUTH_MODE=token``
    without a token, or a ``RAY_AUTH_TOKEN_PATH`` that names no file.
    """
    mode = environ.get("RAY_AUTH_MODE")
    if mode is not None:
        if mode.strip().lower() != "token":
            return ClusterAuth(False, None, mode)
        source = find_token(environ, home)
        if source is None:
            raise ValueError(f"RAY_AUTH_MODE=token but no token was found; {TOKEN_FIX}")
        return ClusterAuth(True, source, mode)
    source = find_token(environ, home)
    named = bool(environ.get("RAY_AUTH_TOKEN") or environ.get("RAY_AUTH_TOKEN_PATH"))
    if source is not None and (named or on_this_machine(resolved_address(address, environ))):
        return ClusterAuth(True, source, None)
    return ClusterAuth(False, None, None)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not e for e in seen):
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def join_error(address: str, exc: BaseException, auth: ClusterAuth, key: str = "--address") -> str:
    """The one-line message for a failed join: what went wrong and, for authentication, what to set."""
    chain = _chain(exc)
    rejected = any(type(e).__name__ == "AuthenticationError" or any(s in str(e) for s in _REJECTED) for e in chain)
    where = f"{key}: cannot join the Ray cluster at {address!r}"
    if rejected:
        if auth.token:
            return f"{where}: it rejected the token from {auth.source}; {TOKEN_FIX}"
        if auth.mode is not None:
            return (f"{where}: it requires an authentication token, and RAY_AUTH_MODE={auth.mode} sends none; "
                    f"unset RAY_AUTH_MODE (or set it to token) and {TOKEN_FIX}")
        return f"{where}: it requires an authentication token and none was found; {TOKEN_FIX}"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = lines[0] if lines else type(exc).__name__
    fix = TOKEN_FIX if auth.mode is None else f"unset RAY_AUTH_MODE (or set it to token) and {TOKEN_FIX}"
    hint = (f" (the token from {auth.source} was presented)" if auth.token
            else f" (if the cluster uses token authentication, {fix})")
    return f"{where}: {detail}{hint}"


def _enable_token_mode() -> None:
    """Token mode for this process, as Ray sets it for a cluster it finds by itself."""
    os.environ["RAY_AUTH_MODE"] = "token"
    # Ray reads RAY_AUTH_MODE into its config when it is imported: read it again
    from ray._raylet import Config

    Config.initialize("")


def join_cluster(address: str, *, key: str = "--address", log_to_driver: bool = False) -> None:
    """``ray.init(address=address)``, presenting a token where :func:`cluster_auth` says so.

    ``address`` is ``auto`` (the cluster of this machine, or ``RAY_ADDRESS``), ``HOST:PORT``
    or ``ray://HOST:PORT`` (Ray Client). When a token is presented and ``RAY_AUTH_MODE`` is
    unset, this process is put in Ray's token mode (``RAY_AUTH_MODE=token``). Any failure
    is a :class:`ValueError` with one line that names ``key`` and, when the cluster asks for
    a token, exactly what to set.
    """
    import ray

    check_address(address, key)
    auth = cluster_auth(address, os.environ, Path.home())
    if auth.token and auth.mode is None:
        _enable_token_mode()
    try:
        ray.init(address=address, log_to_driver=log_to_driver)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError, ray.exceptions.RayError) as exc:
        raise ValueError(join_error(address, exc, auth, key)) from None


__all__ = ["TOKEN_FIX", "ClusterAuth", "check_address", "cluster_auth", "find_token", "join_cluster", "join_error",
           "on_this_machine", "resolved_address"]
