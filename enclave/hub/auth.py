"""The hub's Authenticator: enclave accounts, the researcher role, active projects, TOTP, and
the on-site network allow-list.

Only the stages are overridden (``authenticate``, ``check_allowed``); JupyterHub's outer login
flow that chains them is left as it is. Every attempt, accepted or refused, is audited.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pyotp
from jupyterhub.auth import Authenticator
from sqlalchemy import select
from traitlets import Bool, Unicode, default

from enclave import audit, users
from enclave.config import Settings, load_settings
from enclave.errors import NotFound, PermissionDenied
from enclave.hub.policy import quotas_policy
from enclave.projects import service
from enclave.projects.lifecycle import Status
from enclave.state.db import session_scope
from enclave.state.models import Project, ProjectMember

RESEARCHER = "researcher"


def usable_projects(session, username: str) -> list[str]:
    """Codes of the active projects ``username`` may work on now (member, declarations signed)."""
    codes = (
        session.execute(
            select(Project.code)
            .join(ProjectMember, ProjectMember.project_id == Project.id)
            .where(
                ProjectMember.username == username,
                ProjectMember.removed_at.is_(None),
                Project.status == Status.ACTIVE.value,
            )
            .order_by(Project.code)
        )
        .scalars()
        .all()
    )
    out = []
    for code in codes:
        try:
            service.check_may_use(session, code, username)
        except PermissionDenied:
            continue
        out.append(code)
    return out


def client_address(handler: Any) -> str:
    """The login client's address as the proxy saw it.

    configurable-http-proxy appends the peer to ``X-Forwarded-For``, so its last entry is the
    real client; tornado's ``remote_ip`` would prefer ``X-Real-Ip``, which a client can send
    itself and the proxy passes on, so it is not trusted here.
    """
    if handler is None:
        return ""
    forwarded = handler.request.headers.get("X-Forwarded-For", "")
    if forwarded.strip():
        return forwarded.split(",")[-1].strip()
    return (
        handler.request.connection.context.remote_ip
        if hasattr(handler.request.connection, "context")
        else handler.request.remote_ip
    )


class EnclaveAuthenticator(Authenticator):
    """Log researchers in with their enclave password (and TOTP code when they have one).

    Override nothing else: JupyterHub's ``get_authenticated_user`` chains
    :meth:`authenticate` and :meth:`check_allowed`.
    """

    enclave_home = Unicode(
        "",
        help="The enclave home (its state store, policies and audit log). Empty: $ENCLAVE_HOME. "
        "Security: the hub trusts this store for accounts and projects.",
    ).tag(config=True)

    require_totp = Bool(
        False,
        help="Refuse accounts without a TOTP secret (default False: a code is asked of the "
        "accounts that have one). True makes the second factor mandatory for everyone.",
    ).tag(config=True)

    @default("request_otp")
    def _default_request_otp(self) -> bool:
        # The login form always shows the code field: accounts with a secret must fill it.
        return True

    @default("otp_prompt")
    def _default_otp_prompt(self) -> str:
        return "One-time code (if your account has a second factor):"

    def _settings(self) -> Settings:
        return load_settings(self.enclave_home or None)

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        """Check the network, the password and the TOTP code; return the user model or None."""
        address = client_address(handler)
        return await asyncio.get_running_loop().run_in_executor(
            None,
            self._authenticate_sync,
            data.get("username", ""),
            data.get("password", ""),
            data.get("otp", ""),
            address,
        )

    def _authenticate_sync(self, username: str, password: str, otp: str, address: str) -> dict | None:
        settings = self._settings()
        quotas = quotas_policy(settings)
        with session_scope(settings) as session:
            if not quotas.client_allowed(address):
                _deny_login(session, settings, username, "network", address=address)
                self.log.warning("login of %s refused: %s is outside allowed_networks", username, address)
                return None
            user = users.authenticate(session, settings, username, password)
            if user is None:
                return None
            secret = user.totp_secret
            code_ok = bool(secret) and pyotp.TOTP(secret).verify(otp.strip(), valid_window=1)
            if (secret or self.require_totp) and not code_ok:
                _deny_login(session, settings, username, "totp")
                return None
            audit.record(
                session,
                settings,
                actor=username,
                role=RESEARCHER,
                action="hub.login",
                obj=username,
                details={"address": address},
            )
        return {"name": username}

    async def check_allowed(self, username: str, authentication: dict | None = None) -> bool:
        """Allow researchers with at least one active project they may use."""
        return await asyncio.get_running_loop().run_in_executor(None, self._allowed_sync, username)

    def _allowed_sync(self, username: str) -> bool:
        settings = self._settings()
        with session_scope(settings) as session:
            try:
                user = users.get_user(session, username)
            except NotFound:
                return False
            reason = None
            if user.status != "active":
                reason = f"account {user.status}"
            elif RESEARCHER not in user.role_names:
                reason = "not a researcher"
            elif not usable_projects(session, username):
                reason = "no active project"
            if reason:
                _deny_login(session, settings, username, reason)
                self.log.warning("login of %s refused: %s", username, reason)
                return False
        return True


def _deny_login(session, settings, username: str, reason: str, **details: str) -> None:
    """Audit one refused hub login (the reason is a label, never a password or code)."""
    audit.record(
        session,
        settings,
        actor=username or "unknown",
        role="user",
        action="hub.login",
        obj=username,
        outcome=audit.Outcome.DENIED,
        details={"reason": reason, **details},
    )
