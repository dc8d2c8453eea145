"""Which routes of a researcher's server the gateway lets through, and how each is inspected.

An allow-list: a request whose path (after the server's base URL) matches no :class:`Route`
is refused, whatever the server would have done with it. Each route has a kind that decides
the inspection (:mod:`enclave.hub.gateway.server`): what a body coming in may be, what a
response going out may be, and whether a visitor who is not signed in may reach it at all
(only the pages and the OAuth callback of the login dance, whose answers must then be
redirects). Download and export routes have their own refusal text, so a researcher learns the
way out that exists (an export request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """How the gateway treats a route."""

    PAGE = "page"  # HTML of JupyterLab (capped); reachable before login (must then redirect)
    LOGIN = "login"  # OAuth callback and logout: reachable before login, answers are redirects
    PROBE = "probe"  # the hub's readiness probe ({B}api): reachable before login, tiny answer
    STATIC = "static"  # assets of the installation (read-only in the sandbox), capped
    CONTENTS = "contents"  # the contents API: files and notebooks, screened both ways
    SETTINGS = "settings"  # JupyterLab user settings: files the kernel can write, capped per plugin
    WORKSPACES = "workspaces"  # JupyterLab layouts: files the kernel can write, capped
    API = "api"  # other JSON APIs (kernels, sessions, specs, config...), capped
    KERNEL_WS = "kernel_ws"  # a kernel's channels: every message inspected
    EVENTS_WS = "events_ws"  # the server's event stream: messages capped
    TERMINAL_WS = "terminal_ws"  # a terminal (only when policy enables terminals): output capped


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    kind: Kind
    methods: frozenset[str]


_READ = frozenset({"GET", "HEAD"})
_ALL = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})


def _r(pattern: str, kind: Kind, methods: frozenset[str] = _READ) -> Route:
    return Route(re.compile(pattern), kind, methods)


# Paths are relative to the server's base URL (/user/<name>/), without a leading slash.
ROUTES: tuple[Route, ...] = (
    _r(r"", Kind.PAGE),  # redirects to the default URL
    _r(r"oauth_callback", Kind.LOGIN),
    _r(r"logout", Kind.LOGIN),
    _r(r"api", Kind.PROBE),
    _r(r"static/.+", Kind.STATIC),
    _r(r"lab/extensions/.+", Kind.STATIC),
    _r(r"lab/api/themes/.+", Kind.STATIC),
    _r(r"custom/custom\.css", Kind.STATIC),
    _r(r"kernelspecs/[\w.%-]+/.+", Kind.STATIC),
    _r(r"api/contents(/.*)?", Kind.CONTENTS, _ALL),
    _r(r"lab/api/settings(/.*)?", Kind.SETTINGS, frozenset({"GET", "HEAD", "PUT"})),
    _r(r"lab/api/workspaces(/.*)?", Kind.WORKSPACES, frozenset({"GET", "HEAD", "PUT", "DELETE"})),
    _r(r"lab/api/(translations|licenses)(/.*)?", Kind.API),
    _r(r"lab/api/(build|plugins)", Kind.API),  # status and list only; changing them is refused
    _r(r"api/(status|me|spec\.yaml|resolvePath|nbconvert)", Kind.API),
    _r(r"api/kernelspecs(/[\w.%-]+)?", Kind.API),
    _r(r"api/kernels/?", Kind.API, frozenset({"GET", "HEAD", "POST"})),
    _r(r"api/kernels/[\w-]+/channels", Kind.KERNEL_WS),
    _r(r"api/kernels/[\w-]+(/(interrupt|restart))?", Kind.API, _ALL),
    _r(r"api/sessions(/[\w-]+)?", Kind.API, _ALL),
    _r(r"api/config/\w+", Kind.API, frozenset({"GET", "HEAD", "PATCH", "PUT"})),
    _r(r"api/events", Kind.API, frozenset({"POST"})),
    _r(r"api/events/subscribe", Kind.EVENTS_WS),
    # The JupyterLab page itself: /lab, /lab/tree/..., /lab/workspaces/..., /doc/...; after the
    # lab/api, lab/extensions and refused routes above and below, which it would also match.
    _r(r"(lab|doc)(/(?!api/|extensions/).*)?", Kind.PAGE),
)
TERMINAL_ROUTES: tuple[Route, ...] = (
    _r(r"api/terminals(/[\w-]+)?", Kind.API, _ALL),
    _r(r"terminals/websocket/[\w-]+", Kind.TERMINAL_WS),
)

_HOW_TO_EXPORT = "; outputs leave only through an export request (toolkit request_export(...))"
# Known routes that stay closed, with the reason a researcher reads.
REFUSED: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), reason)
    for p, reason in (
        (r"(files|view)(/.*)?", "file downloads are disabled in the enclave" + _HOW_TO_EXPORT),
        (r"(api/)?nbconvert(/.*)?", "notebook export (nbconvert) is disabled in the enclave" + _HOW_TO_EXPORT),
        (r"(directories|api/archive|extract-archive)(/.*)?", "archive downloads and uploads are disabled"),
        (r"(api/terminals|terminals)(/.*)?", "terminals are disabled (policies/quotas.yaml terminal_enabled)"),
        (r"(api/)?lsp(/.*)?", "language servers are disabled in the enclave"),
        (r"lab/api/(extensions|news|update|listings)(/.*)?", "extension management is disabled in the enclave"),
        (r"(api/shutdown|metrics)", "this address of the server is not open in the enclave"),
    )
)


# Refused without an audit entry: JupyterLab itself asks for these on every page load.
QUIET = re.compile(r"lsp/status")


@dataclass(frozen=True)
class Decision:
    """A route found for a request, or the reason it is refused (``quiet``: not audited)."""

    kind: Kind | None
    refusal: str | None = None
    quiet: bool = False


def classify(method: str, relative: str, *, terminals: bool = False) -> Decision:
    """Decide a request: its route kind, or why it is refused.

    Parameters
    ----------
    method : str
        The HTTP method.
    relative : str
        The path after the server's base URL (``api/contents/x.ipynb``), percent-decoding left
        to the server: the gateway matches the path as sent, and a path that only decodes to an
        allowed one is not allowed.
    terminals : bool
        Whether policy enables terminals.
    """
    routes = (*TERMINAL_ROUTES, *ROUTES) if terminals else ROUTES
    for route in routes:
        if route.pattern.fullmatch(relative):
            if method not in route.methods:
                return Decision(None, f"{method} is not open on this route in the enclave")
            return Decision(route.kind)
    for pattern, reason in REFUSED:
        if pattern.fullmatch(relative):
            return Decision(None, reason, quiet=bool(QUIET.fullmatch(relative)))
    return Decision(None, "this address of the server is not open in the enclave")
