"""The gateway's side of the connection to a researcher's server: HTTP and websockets over the
server's Unix socket, and the check that the socket belongs to the server the hub started.

The server binds its socket in a folder it can write (inside the sandbox). Before anything of
the researcher's runs, the spawner checks with ``SO_PEERCRED`` that the listener is the
sandbox's main process (:func:`check_listener`) and then moves the socket (:func:`adopt_socket`)
into a root-only folder outside the sandbox: a kernel that later unlinks or rebinds a socket of
that name in its own folder reaches nothing, because the gateway only ever connects to the
adopted one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from pathlib import Path

from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.netutil import Resolver
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from tornado.websocket import WebSocketClientConnection, websocket_connect


class UpstreamRefused(PermissionError):
    """The socket is not the server the hub started (another process listens on it)."""


class UnixResolver(Resolver):
    """Resolves every host name to one Unix socket (tornado's clients then connect to it)."""

    def initialize(self, path: str) -> None:  # type: ignore[override]
        self.path = path

    async def resolve(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC):  # type: ignore[override]
        return [(socket.AF_UNIX, self.path)]


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid


def namespace_pid(pid: int) -> int | None:
    """The innermost PID-namespace number of host process ``pid`` (``NSpid``), if readable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def check_listener(path: Path, *, uid: int, in_sandbox) -> int:
    """Connect to ``path`` and check who listens: the sandbox's main process, as ``uid``.

    Parameters
    ----------
    path : Path
        The server's socket.
    uid : int
        The researcher's Unix uid.
    in_sandbox : callable
        ``pid -> bool``: whether a host pid runs inside this server's sandbox (its cgroup).

    Returns
    -------
    int
        The server's host pid.

    Raises
    ------
    UpstreamRefused
        The listener is another process (a kernel), another uid, or outside the sandbox.
    OSError
        Nothing listens there (yet).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        pid, peer_uid, _gid = peer_credentials(sock)
    # In the sandbox's PID namespace, 1 is bubblewrap's reaper and 2 is the program it runs:
    # the server (the launch shell execs it). No other process can ever hold number 2 there.
    if peer_uid != uid or not in_sandbox(pid) or namespace_pid(pid) != 2:
        raise UpstreamRefused(
            f"{path}: the listener is process {pid} (uid {peer_uid}), not the workspace server the hub started"
        )
    return pid


def adopt_socket(path: Path, folder: Path) -> Path:
    """Move the server's socket into ``folder`` (root-only) and return its new path.

    The listening socket stays bound (a Unix socket is its inode, not its name); the server's
    own folder keeps nothing the gateway would ever connect to.
    """
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    target = folder / "server.sock"
    # Same filesystem (both under the hub's socket root): rename is atomic.
    os.rename(path, target)
    return target


def http_client(socket_path: Path, *, max_body_bytes: int) -> SimpleAsyncHTTPClient:
    """An HTTP client whose every request goes to the server's socket, with a body cap."""
    return SimpleAsyncHTTPClient(
        force_instance=True,
        resolver=UnixResolver(path=str(socket_path)),
        max_body_size=max_body_bytes,
        max_buffer_size=max_body_bytes,
        max_clients=32,
    )


async def fetch(client: SimpleAsyncHTTPClient, request: HTTPRequest) -> HTTPResponse:
    """Send ``request`` upstream; HTTP errors come back as responses, not exceptions."""
    return await client.fetch(request, raise_error=False)


async def connect_websocket(
    socket_path: Path, request: HTTPRequest, *, max_message_bytes: int
) -> WebSocketClientConnection:
    """Open a websocket to the server over its socket (no subprotocol: the legacy protocol)."""
    return await asyncio.wait_for(
        websocket_connect(
            request,
            resolver=UnixResolver(path=str(socket_path)),
            max_message_size=max_message_bytes,
        ),
        timeout=30,
    )
