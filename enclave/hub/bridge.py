"""TCP↔Unix-socket bridges between the hub's network namespace and a server's.

A researcher's server has no network route at all: it listens on a Unix socket, and the
proxy reaches it through :func:`serve_tcp_to_unix` (in the hub, 127.0.0.1:<port> → socket).
The server and its kernels reach the Hub API only through :func:`serve_unix_to_tcp` (in the
hub, socket → 127.0.0.1:<hub port>) plus a relay inside the namespace (``python -m
enclave.hub.bridge tcp-to-unix``) listening on the namespace's own loopback. Bytes are copied
as they come, so HTTP, websockets and keep-alive all pass unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path

_CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _splice(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, open_upstream) -> None:
    try:
        up_r, up_w = await open_upstream()
    except OSError:
        # Upstream not listening (yet): close, the caller retries (the hub polls until up).
        client_w.close()
        return
    await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))


async def serve_tcp_to_unix(host: str, port: int, socket_path: Path) -> asyncio.Server:
    """Listen on ``host:port`` and forward each connection to the Unix socket ``socket_path``."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _splice(r, w, lambda: asyncio.open_unix_connection(str(socket_path)))

    return await asyncio.start_server(handle, host, port)


async def serve_unix_to_tcp(socket_path: Path, host: str, port: int, *, mode: int = 0o666) -> asyncio.Server:
    """Listen on the Unix socket ``socket_path`` and forward each connection to ``host:port``."""
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _splice(r, w, lambda: asyncio.open_connection(host, port))

    server = await asyncio.start_unix_server(handle, path=str(socket_path))
    os.chmod(socket_path, mode)
    return server


async def _relay(listen: str, socket_path: Path) -> None:
    host, _, port = listen.rpartition(":")
    server = await serve_tcp_to_unix(host, int(port), socket_path)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """``python -m enclave.hub.bridge tcp-to-unix --listen 127.0.0.1:8081 --unix PATH``."""
    parser = argparse.ArgumentParser(prog="enclave.hub.bridge")
    parser.add_argument("mode", choices=["tcp-to-unix"])
    parser.add_argument("--listen", required=True, help="host:port to listen on")
    parser.add_argument("--unix", required=True, type=Path, help="Unix socket to forward to")
    args = parser.parse_args(argv)
    asyncio.run(_relay(args.listen, args.unix))


if __name__ == "__main__":
    main()
