"""The gateway of one researcher's server: an HTTP and websocket reverse proxy, run by the hub
(root), that the proxy reaches instead of the server.

It is where the workspace's promise is kept, because it runs where no code of the researcher's
can reach it. For every request it

1. finds the route in the allow-list (:mod:`enclave.hub.gateway.routes`); others are refused;
2. asks the hub whether the request's credential is the server's owner's
   (:mod:`enclave.hub.gateway.auth`); a visitor who is not signed in reaches only the pages of
   the login dance, and only their redirects come back;
3. screens what comes in (uploads, notebook saves, settings: :mod:`enclave.workspace.screening`
   and the identifier scanner) and what goes out (the contents API by real type and size,
   notebooks with capped outputs, files the kernel can write), with the same rules as the
   in-server guard, which stays as a second layer;
4. speaks the kernel websocket protocol on both sides and inspects every message
   (:mod:`enclave.hub.gateway.kernel_channels`).

Refusals are answered with 403 and a reason, and reported to ``on_refusal`` (the spawner audits
them). The server is reached only over the socket the spawner adopted
(:mod:`enclave.hub.gateway.upstream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jupyterhub.services.auth import HubAuth
from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, WebSocketHandler

from enclave.hub.gateway import routes
from enclave.hub.gateway.auth import OwnerCheck
from enclave.hub.gateway.kernel_channels import (
    V1_PROTOCOL,
    KernelTrafficGuard,
    MalformedMessage,
    decode_frame,
    decode_v1,
    encode_frame,
    encode_v1,
)
from enclave.hub.gateway.routes import Kind
from enclave.hub.gateway.upstream import connect_websocket, fetch, http_client
from enclave.workspace import screening
from enclave.workspace.policy import WorkspacePolicy

log = logging.getLogger("enclave.gateway")

# Hop-by-hop headers (RFC 9110 §7.6.1) and those the gateway sets itself.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "content-length", "content-encoding", "accept-encoding",
})
_WS_HEADERS_DROPPED = _HOP_BY_HOP | {
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol", "host",
}
LOGIN_STATUSES = frozenset({301, 302, 303, 307, 308, 401, 403, 404})
MAX_STATIC_BYTES = 8 * 1024 * 1024  # JupyterLab's largest bundle is 2.5 MiB
MAX_PAGE_BYTES = 2 * 1024 * 1024
MAX_API_BYTES = 1024 * 1024  # listings, kernels, sessions, specs, translations of one language
MAX_SMALL_BODY = 64 * 1024  # request bodies other than uploads and saves
MAX_SETTINGS_USER_BYTES = 64 * 1024  # one plugin's user settings (files the kernel can write)
MAX_WORKSPACE_BYTES = 256 * 1024
MAX_EVENT_BYTES = 64 * 1024
MAX_PROBE_BYTES = 1024  # {"version": ...}
# What a page of the workspace may load or contact: its own origin only. Kernel output is
# trusted HTML in JupyterLab (its scripts run), so without this a cell could send data from the
# on-site browser to any host; JupyterLab itself needs inline and eval'd scripts, nothing else.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; media-src 'self' data: blob:; "
    "connect-src 'self' {ws}; frame-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'self'"
)

# Screening (presidio) blocks; it runs here, off the hub's event loop.
_SCREENING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="enclave-gateway")


class GatewayRefusal(Exception):
    """A request or response the gateway does not pass (status, reason, audit kind)."""

    def __init__(self, reason: str, *, status: int = 403, kind: str = "refused") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.kind = kind


def _identifier_kinds(text: str) -> list[str]:
    from disclosure_review.identifiers import scan_text  # presidio: loaded on first use

    return [hit.entity for hit in scan_text(text)]


class WorkspaceGateway:
    """The gateway of one server.

    Parameters
    ----------
    username : str
        The server's owner.
    base_url : str
        The server's prefix (``/user/<name>/``).
    upstream : Path
        The adopted socket of the server.
    owner : OwnerCheck
        Validates credentials with the hub.
    policy : WorkspacePolicy
        Sizes and types that may pass (``policies/workspace.yaml``, ``quotas.yaml``).
    on_refusal : callable
        ``(kind, details)``, called for every refusal (audit).
    """

    def __init__(
        self,
        *,
        username: str,
        base_url: str,
        upstream: Path,
        owner: OwnerCheck,
        policy: WorkspacePolicy,
        on_refusal: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.username = username
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.upstream = upstream
        self.owner = owner
        self.policy = policy
        self.on_refusal = on_refusal
        self.client = http_client(upstream, max_body_bytes=max(MAX_STATIC_BYTES, self.max_upstream_body))
        self.sockets: set[_WebSocketProxy] = set()
        self._server: HTTPServer | None = None

    @classmethod
    def for_spawner(cls, spawner: Any, *, upstream: Path, policy: WorkspacePolicy, cookie_secret: bytes,
                    on_refusal: Callable[[str, dict[str, Any]], None] | None = None) -> WorkspaceGateway:
        """The gateway of the server ``spawner`` starts (its user, URL, OAuth client)."""
        cookie = spawner.oauth_client_id
        if getattr(spawner, "cookie_host_prefix_enabled", False):
            cookie = "__Host-" + cookie
        hub_auth = HubAuth(api_url=spawner.hub.api_url, api_token=spawner.api_token, cache_max_age=60)
        owner = OwnerCheck(spawner.user.name, spawner.name, hub_auth, cookie, cookie_secret,
                           refused_tokens=frozenset({spawner.api_token}))
        return cls(username=spawner.user.name, base_url=spawner.server.base_url, upstream=upstream,
                   owner=owner, policy=policy, on_refusal=on_refusal)

    @property
    def max_upstream_body(self) -> int:
        # A notebook or file of the largest size the guard lets out, as JSON with base64 (4/3).
        kb = max(self.policy.max_notebook_kb, self.policy.max_text_kb, self.policy.max_image_kb)
        return kb * 1024 * 2 + MAX_SMALL_BODY

    @property
    def max_request_body(self) -> int:
        kb = max(self.policy.max_notebook_kb, self.policy.max_upload_kb)
        return kb * 1024 * 2 + MAX_SMALL_BODY

    def app(self) -> Application:
        handlers: list[tuple[str, type, dict[str, Any]]] = []
        terminals = self.policy.terminal_enabled
        for route in (*routes.ROUTES, *(routes.TERMINAL_ROUTES if terminals else ())):
            if route.kind in (Kind.KERNEL_WS, Kind.EVENTS_WS, Kind.TERMINAL_WS):
                handlers.append((self.base_url + route.pattern.pattern, _WebSocketProxy,
                                 {"gateway": self, "kind": route.kind}))
        handlers.append((r".*", _HttpProxy, {"gateway": self}))
        return Application(handlers, log_function=_log_request, websocket_max_message_size=self.max_request_body)

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (the address the proxy is told)."""
        self._server = HTTPServer(self.app(), max_body_size=self.max_request_body, xheaders=False,
                                  idle_connection_timeout=300)
        self._server.listen(port, address=host)

    def stop(self) -> None:
        """Stop listening and close every websocket."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        for sock in list(self.sockets):
            sock.shutdown()
        self.client.close()

    def refused(self, kind: str, reason: str, **details: Any) -> None:
        log.warning("gateway %s refused (%s): %s %s", self.username, kind, reason, details or "")
        if self.on_refusal is not None:
            try:
                self.on_refusal(kind, {"reason": reason, **details})
            except Exception:  # auditing must not turn a refusal into a crash
                log.exception("could not audit a gateway refusal")

    def relative(self, path: str) -> str | None:
        if not path.startswith(self.base_url):
            return None
        return path[len(self.base_url):]

    # ---------------------------------------------------------------- screening

    def screen_request_body(self, kind: Kind, relative: str, body: bytes) -> bytes:
        """What the server may receive of a request body (blocking: scans)."""
        if kind is Kind.CONTENTS:
            if len(body) > self.max_request_body:
                raise GatewayRefusal(f"{relative}: the request is larger than the enclave takes in", kind="upload")
            model = _json_object(body, relative)
            try:
                screened = screening.screen_ingress(model, path=_contents_path(relative), policy=self.policy)
            except screening.ScreeningRefused as exc:
                raise GatewayRefusal(str(exc), kind="upload") from None
            return json.dumps(screened).encode("utf-8")
        limit = MAX_SETTINGS_USER_BYTES if kind is Kind.SETTINGS else (
            MAX_WORKSPACE_BYTES if kind is Kind.WORKSPACES else MAX_SMALL_BODY)
        if len(body) > limit:
            raise GatewayRefusal(f"{relative}: a body of {len(body) // 1024} KiB is more than this route takes "
                                 f"({limit // 1024} KiB)", kind="upload")
        text = body.decode("utf-8", errors="replace")
        found = _identifier_kinds(text)
        if found:
            raise GatewayRefusal(f"{relative}: the request holds what looks like identifiers "
                                 f"({', '.join(sorted(set(found)))}); re-identifiable data may not be "
                                 "brought into the enclave", kind="upload")
        return body

    def screen_response_body(self, kind: Kind, relative: str, method: str, body: bytes) -> bytes:
        """What the browser may receive of a response body (blocking: decodes images)."""
        if kind is Kind.CONTENTS and method == "GET" and not relative.endswith("/checkpoints"):
            model = _json_object(body, relative)
            try:
                out = screening.screen_egress(model, path=_contents_path(relative), policy=self.policy)
            except screening.ScreeningRefused as exc:
                raise GatewayRefusal(str(exc), kind="download") from None
            return json.dumps(out).encode("utf-8")
        if kind is Kind.SETTINGS:
            return _capped_settings(body, relative)
        limit = {Kind.STATIC: MAX_STATIC_BYTES, Kind.PAGE: MAX_PAGE_BYTES, Kind.LOGIN: MAX_SMALL_BODY,
                 Kind.PROBE: MAX_PROBE_BYTES, Kind.WORKSPACES: MAX_WORKSPACE_BYTES}.get(kind, MAX_API_BYTES)
        if len(body) > limit:
            raise GatewayRefusal(f"{relative}: the server's answer of {len(body) // 1024} KiB is more than "
                                 f"this route sends to the browser ({limit // 1024} KiB)", kind="download")
        return body


def _contents_path(relative: str) -> str:
    """The contents-API path of ``api/contents/<path>`` (URL-decoded, as the server reads it)."""
    return unquote(relative[len("api/contents"):].lstrip("/"))


def _json_object(body: bytes, label: str) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise GatewayRefusal(f"{label}: not a JSON document ({exc})", status=400, kind="malformed") from None
    if not isinstance(value, dict):
        raise GatewayRefusal(f"{label}: not a JSON object", status=400, kind="malformed")
    return value


def _capped_settings(body: bytes, label: str) -> bytes:
    """The settings answer, with each plugin's user part (a file the kernel can write) capped.

    Schemas come from the installation and may be large; the user's own values are small, so
    an oversized one is replaced by the defaults (an empty user part) rather than refused.
    """
    data = _json_object(body, label)
    plugins = data.get("settings") if isinstance(data.get("settings"), list) else [data]
    total_user = 0
    for plugin in plugins:
        if not isinstance(plugin, dict):
            continue
        user = len(json.dumps(plugin.get("raw", ""))) + len(json.dumps(plugin.get("settings", {})))
        if user > MAX_SETTINGS_USER_BYTES or total_user + user > MAX_WORKSPACE_BYTES:
            log.warning("settings of %s: %d bytes of user settings dropped", plugin.get("id"), user)
            plugin["raw"] = "{}"
            plugin["settings"] = {}
            user = 4
        total_user += user
    out = json.dumps(data).encode("utf-8")
    if len(out) > 4 * MAX_API_BYTES:
        raise GatewayRefusal(f"{label}: the settings answer is larger than JupyterLab's own", kind="download")
    return out


def _csp(host: str) -> str:
    # 'self' covers ws: of the same host in current browsers; naming it keeps older ones working.
    safe = host if host and all(c.isalnum() or c in ".-:[]" for c in host) else ""
    return CSP.format(ws=f"ws://{safe} wss://{safe}" if safe else "")


def _log_request(handler: RequestHandler) -> None:
    if handler.get_status() >= 400:
        log.info("%d %s %s", handler.get_status(), handler.request.method, handler.request.path)


def _forwarded_headers(handler: RequestHandler, dropped: frozenset[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in handler.request.headers.get_all():
        if name.lower() in dropped:
            continue
        headers[name] = f"{headers[name]}, {value}" if name in headers and name.lower() != "cookie" else value
    return headers


class _HttpProxy(RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

    def initialize(self, gateway: WorkspaceGateway) -> None:  # type: ignore[override]
        self.gateway = gateway

    def check_xsrf_cookie(self) -> None:
        return None  # the server checks its own XSRF token; the gateway adds none

    def _refuse(self, exc: GatewayRefusal, relative: str) -> None:
        self.gateway.refused(exc.kind, exc.reason, method=self.request.method, path=relative)
        self.set_status(exc.status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"message": exc.reason, "reason": "enclave"}))

    async def _handle(self) -> None:
        gateway = self.gateway
        method = self.request.method or "GET"
        relative = gateway.relative(self.request.path)
        if relative is None:
            self.set_status(404)
            self.finish({"message": "not found"})
            return
        try:
            await self._proxy(method, relative)
        except GatewayRefusal as exc:
            self._refuse(exc, relative)

    async def _proxy(self, method: str, relative: str) -> None:
        gateway = self.gateway
        decision = routes.classify(method, relative, terminals=gateway.policy.terminal_enabled)
        if decision.kind is None:
            if decision.quiet:
                self.set_status(404)
                self.finish({"message": decision.refusal})
                return
            raise GatewayRefusal(f"{relative}: {decision.refusal}", kind="route")
        kind = decision.kind
        owner = await gateway.owner.owner(self.request.headers, self.request.query)
        if owner is None and kind not in (Kind.PAGE, Kind.LOGIN, Kind.PROBE):
            raise GatewayRefusal(f"{relative}: sign in through the hub first", kind="unauthenticated")
        body = self.request.body if method in ("POST", "PUT", "PATCH") else None
        if body:
            body = await asyncio.get_running_loop().run_in_executor(
                _SCREENING, gateway.screen_request_body, kind, relative, body)
        request = HTTPRequest(
            "http://workspace" + self.request.uri,
            method=method,
            headers=_forwarded_headers(self, _HOP_BY_HOP),
            body=body if body is not None else (b"" if method in ("POST", "PUT", "PATCH") else None),
            follow_redirects=False,
            decompress_response=True,
            request_timeout=300,
            allow_nonstandard_methods=True,
        )
        response = await fetch(gateway.client, request)
        if response.code == 599:
            # Connection failed or the answer exceeded what any route may send.
            raise GatewayRefusal(f"{relative}: the workspace server did not answer within the enclave's limits "
                                 f"({response.error})", status=502, kind="upstream")
        if response.code == 403 and kind is Kind.CONTENTS:
            # The in-server guard (the second layer) refused it: audited here, where the
            # researcher cannot suppress the record.
            gateway.refused("download" if method == "GET" else "upload",
                            f"{relative}: refused by the workspace server's guard", method=method, path=relative)
        if owner is None and kind is not Kind.PROBE:
            location = response.headers.get("Location", "")
            safe_redirect = (location.startswith(("/", "http://", "https://")) and "/hub/" in location) or (
                location.startswith(gateway.base_url))
            if response.code not in LOGIN_STATUSES or (response.code in (301, 302, 303, 307, 308)
                                                       and not safe_redirect):
                raise GatewayRefusal(f"{relative}: sign in through the hub first", kind="unauthenticated")
        out = response.body or b""
        if out and method != "HEAD":
            out = await asyncio.get_running_loop().run_in_executor(
                _SCREENING, gateway.screen_response_body, kind, relative, method, out)
        self.set_status(response.code, response.reason)
        for name, value in response.headers.get_all():
            lower = name.lower()
            if lower in _HOP_BY_HOP or lower == "x-consumed-content-encoding":
                continue
            if lower == "set-cookie":
                self.add_header(name, value)
            else:
                self.set_header(name, value)
        self.set_header("Content-Security-Policy", _csp(self.request.headers.get("Host", "")))
        if kind is not Kind.STATIC:
            self.set_header("Cache-Control", "no-store")
        if method != "HEAD" and out and response.code not in (204, 304):
            self.finish(out)
        else:
            self.finish()

    get = head = post = put = patch = delete = _handle  # type: ignore[assignment]


class _WebSocketProxy(WebSocketHandler):
    """Both ends of one websocket: the browser's here, the server's over the adopted socket."""

    def initialize(self, gateway: WorkspaceGateway, kind: Kind) -> None:  # type: ignore[override]
        self.gateway = gateway
        self.kind = kind
        self.upstream: WebSocketClientConnection | None = None
        self.guard = KernelTrafficGuard(
            max_output_kb=gateway.policy.max_output_cell_kb,
            max_input_kb=gateway.policy.max_upload_kb,
            find_identifiers=_identifier_kinds,
        )
        self.v1 = False
        self._inbound: asyncio.Queue[str | bytes | None] = asyncio.Queue(maxsize=64)
        self._pump: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    def check_origin(self, origin: str) -> bool:
        return True  # the server checks the origin on its own handshake, which we forward

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        # The browser gets the protocol it asks for; the server always the legacy one.
        self.v1 = self.kind is Kind.KERNEL_WS and V1_PROTOCOL in subprotocols
        return V1_PROTOCOL if self.v1 else None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        relative = self.gateway.relative(self.request.path) or ""
        owner = await self.gateway.owner.owner(self.request.headers, self.request.query)
        if owner is None:
            self.gateway.refused("unauthenticated", "websocket without a valid credential", path=relative)
            self.set_status(403)
            self.finish({"message": "sign in through the hub first"})
            return
        headers = _forwarded_headers(self, _WS_HEADERS_DROPPED)
        headers["Host"] = self.request.headers.get("Host", "workspace")
        try:
            self.upstream = await connect_websocket(
                self.gateway.upstream,
                HTTPRequest("ws://workspace" + self.request.uri, headers=headers, request_timeout=30),
                max_message_bytes=self.gateway.max_upstream_body,
            )
        except Exception as exc:
            self.gateway.refused("upstream", f"websocket to the server failed: {exc}", path=relative)
            self.set_status(502)
            self.finish({"message": "the workspace server did not accept the connection"})
            return
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.gateway.sockets.add(self)
        self._reader = asyncio.ensure_future(self._read_upstream())
        self._pump = asyncio.ensure_future(self._write_upstream())

    # browser → server, in order, screened off the event loop
    def on_message(self, message: str | bytes) -> Any:
        return self._inbound.put(message)

    async def _write_upstream(self) -> None:
        loop = asyncio.get_running_loop()
        while (frame := await self._inbound.get()) is not None:
            if self.upstream is None:
                return
            if self.kind is not Kind.KERNEL_WS:
                if len(frame) > MAX_SMALL_BODY:
                    self.gateway.refused("message", "oversized websocket message from the browser")
                    continue
                await self.upstream.write_message(frame, binary=isinstance(frame, bytes))
                continue
            try:
                msg = decode_v1(frame) if self.v1 else decode_frame(frame)
            except MalformedMessage as exc:
                self.gateway.refused("message", str(exc))
                continue
            refusal = await loop.run_in_executor(_SCREENING, self.guard.inbound, msg)
            if refusal is not None:
                self.gateway.refused("kernel_input", refusal.reason, msg_type=msg["header"].get("msg_type"))
                for reply in refusal.replies:
                    self._send_to_browser(reply)
                continue
            # What goes on is what was checked: the decoded message, encoded again.
            out = encode_frame(msg)
            try:
                await self.upstream.write_message(out, binary=isinstance(out, bytes))
            except WebSocketClosedError:
                return

    # server → browser, capped and rate-limited
    async def _read_upstream(self) -> None:
        assert self.upstream is not None
        while True:
            frame = await self.upstream.read_message()
            if frame is None:
                break
            if self.kind is Kind.KERNEL_WS:
                try:
                    msg = decode_frame(frame)
                except MalformedMessage as exc:
                    self.gateway.refused("message", f"from the kernel: {exc}")
                    continue
                for item in self.guard.outbound(msg):
                    self._send_to_browser(item)
            elif self.kind is Kind.TERMINAL_WS:
                self._send_terminal(frame)
            else:
                if len(frame) > MAX_EVENT_BYTES:
                    continue
                self._write(frame)
        self.close()

    def _send_to_browser(self, msg: dict[str, Any]) -> None:
        self._write(encode_v1(msg) if self.v1 else encode_frame(msg))

    def _send_terminal(self, frame: str | bytes) -> None:
        # A terminal sends ["stdout", text]: the same output budget as a kernel's stream.
        try:
            kind, text = json.loads(frame)[:2]
        except (ValueError, TypeError):
            return
        msg = {"header": {"msg_type": "stream"}, "parent_header": {"msg_id": "terminal"},
               "content": {"name": kind, "text": str(text)}, "metadata": {}, "buffers": []}
        for item in self.guard.outbound(msg):
            self._write(json.dumps([kind, item["content"].get("text", "")]))

    def _write(self, frame: str | bytes) -> None:
        with contextlib.suppress(WebSocketClosedError):
            self.write_message(frame, binary=isinstance(frame, bytes))

    def on_close(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        self.gateway.sockets.discard(self)
        if self._inbound is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._inbound.put_nowait(None)
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            self.close()
