"""The relay inside a server's sandbox: the sandbox's loopback port of the Hub API → the
hub-API socket.

A researcher's server has no network route at all. It reaches the Hub API at the address the
hub gave it (``127.0.0.1:<hub port>``), where this relay (``python -m enclave.hub.bridge
tcp-to-unix``, started in the sandbox) listens and copies bytes to the hub-API socket, on whose
other side the hub's allow-listing gate (:mod:`enclave.hub.gateway.hub_api`) decides. The relay
runs as the researcher and is no guard: a kernel may replace it and reach only the same gate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
