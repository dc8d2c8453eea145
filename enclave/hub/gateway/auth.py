"""Who is asking: the gateway's own check that a request comes from the server's owner.

The single-user server authenticates its visitors itself, but it runs as the researcher and so
is within reach of the researcher's kernel (which could, for instance, answer the server's
questions to the hub). The gateway therefore asks the hub itself, over the hub's own address
and never through the sandbox, whether the request's token belongs to the server's owner with
access to this server. The token comes from where JupyterHub's own ``HubAuth`` looks: the
``Authorization`` header, the ``token`` URL parameter, or the server's OAuth cookie (decoded with
the per-server cookie secret that the spawner gave the server). Answers are cached briefly, as
``HubAuth`` does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from jupyterhub.services.auth import HubAuth, check_scopes
from tornado.web import decode_signed_value

_AUTH_HEADER = re.compile(r"(?:token|bearer)\s+(\S+)", re.IGNORECASE)
COOKIE_MAX_AGE_DAYS = 1


@dataclass
class OwnerCheck:
    """Validates requests for one server.

    Parameters
    ----------
    username : str
        The server's owner (the enclave user the hub authenticated at spawn).
    server_name : str
        The JupyterHub server name (``""`` for the default server).
    hub_auth : HubAuth
        Talks to the hub's REST API with the hub's own URL (never through the sandbox).
    cookie_name : str
        The server's OAuth cookie (``jupyterhub-user-<name>``, maybe ``__Host-`` prefixed).
    cookie_secret : bytes
        The secret the server signs that cookie with (set by the spawner).
    refused_tokens : frozenset of str
        Tokens that never admit a visitor: the server's own API token (it identifies the
        server to the hub; in a kernel's hands it must not open the server to someone else).
    """

    username: str
    server_name: str
    hub_auth: HubAuth
    cookie_name: str
    cookie_secret: bytes
    refused_tokens: frozenset[str] = frozenset()

    def token(self, headers: Mapping[str, str], query: str) -> str | None:
        """The credential a request carries, if any (header, then URL, then the cookie)."""
        match = _AUTH_HEADER.match(headers.get("Authorization", ""))
        if match:
            return match.group(1)
        values = parse_qs(query).get("token")
        if values and values[0]:
            return values[0]
        raw = headers.get("Cookie", "")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except Exception:  # a malformed Cookie header is no credential
            return None
        morsel = jar.get(self.cookie_name)
        if morsel is None:
            return None
        value = decode_signed_value(
            self.cookie_secret, self.cookie_name, morsel.value, max_age_days=COOKIE_MAX_AGE_DAYS
        )
        return value.decode("ascii", "replace") if value else None

    async def owner(self, headers: Mapping[str, str], query: str) -> dict[str, Any] | None:
        """The hub's user model when the request is the owner's with access to this server."""
        token = self.token(headers, query)
        if not token or token in self.refused_tokens:
            return None
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model or model.get("name") != self.username or model.get("kind", "user") != "user":
            return None
        server = f"{self.username}/{self.server_name}"
        wanted = {f"access:servers!server={server}", f"access:servers!user={self.username}", "access:servers"}
        if not check_scopes(wanted, set(model.get("scopes") or [])):
            return None
        return model
