"""The gate between a researcher's sandbox and the Hub API: only the calls a single-user server
makes pass, for its own user.

A server needs the Hub API to log its visitors in (the OAuth code exchange, "whose token is
this") and to report activity. Its kernels can reach the same socket (they share the
sandbox's network), and a hub token in a kernel's hands could otherwise do far more: create
tokens whose note carries data to the browser, start or stop servers, read other users. So the
hub listens on the sandbox's hub-API socket itself (root, in the hub) and forwards only the
requests in :data:`ALLOWED`, to the hub's own address, with bodies capped.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from tornado.web import Application, RequestHandler

MAX_BODY_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 1024 * 1024
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
               "content-length", "content-encoding"}


def allowed_calls(username: str) -> list[tuple[str, re.Pattern[str]]]:
    """``(method, path pattern)`` pairs the server of ``username`` may call on the Hub API."""
    user = re.escape(username)
    return [
        ("GET", re.compile(r"/hub/api/?")),  # the hub's version, checked at start-up
        ("GET", re.compile(r"/hub/api/user")),  # "whose token is this" (login of a visitor)
        ("POST", re.compile(r"/hub/api/oauth2/token")),  # the OAuth code exchange
        ("POST", re.compile(rf"/hub/api/users/{user}/activity")),  # last activity (idle culling)
    ]


class HubApiGate:
    """Serves one sandbox's hub-API socket, forwarding the allowed calls to the hub.

    Parameters
    ----------
    username, server_name : str
        Whose server this is.
    hub_host, hub_port
        The hub's own API address (in the hub's network namespace).
    """

    def __init__(self, *, username: str, server_name: str, hub_host: str, hub_port: int) -> None:
        self.username = username
        self.server_name = server_name
        self.hub_url = f"http://{hub_host}:{hub_port}"
        self.allowed = allowed_calls(username)
        self.refused = 0
        self._server: HTTPServer | None = None
        self._client = SimpleAsyncHTTPClient(
            force_instance=True, max_body_size=MAX_RESPONSE_BYTES, max_buffer_size=MAX_RESPONSE_BYTES
        )

    def allows(self, method: str, path: str) -> bool:
        return any(method == m and pattern.fullmatch(path) for m, pattern in self.allowed)

    async def start(self, socket_path: Path) -> None:
        """Listen on ``socket_path`` (0666: the sandbox's user connects; root owns the folder)."""
        app = Application([(r".*", _Forward, {"gate": self})], log_function=lambda handler: None)
        self._server = HTTPServer(app, max_body_size=MAX_BODY_BYTES, xheaders=False)
        self._server.add_socket(bind_unix_socket(str(socket_path), mode=0o666))

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        with contextlib.suppress(Exception):
            self._client.close()


class _Forward(RequestHandler):
    def initialize(self, gate: HubApiGate) -> None:  # type: ignore[override]
        self.gate = gate

    def check_xsrf_cookie(self) -> None:
        return None  # a proxy: the hub checks its own

    async def _forward(self) -> None:
        method, path = self.request.method or "GET", self.request.path
        if not self.gate.allows(method, path):
            self.gate.refused += 1
            self.set_status(403)
            self.set_header("Content-Type", "application/json")
            self.finish({"status": 403, "message": f"{method} {path} is not open to workspace servers"})
            return
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in _HOP_BY_HOP | {"host"}}
        body = self.request.body if method in ("POST", "PUT", "PATCH") else None
        response = await self.gate._client.fetch(
            HTTPRequest(self.gate.hub_url + self.request.uri, method=method, headers=headers, body=body,
                        follow_redirects=False, request_timeout=30),
            raise_error=False,
        )
        if response.code == 599:
            self.set_status(502)
            self.finish({"status": 502, "message": "the hub did not answer"})
            return
        self.set_status(response.code, response.reason)
        for name, value in response.headers.get_all():
            if name.lower() not in _HOP_BY_HOP:
                self.add_header(name, value)
        self.finish(response.body or b"")

    get = post = put = patch = delete = _forward  # type: ignore[assignment]
