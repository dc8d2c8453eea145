"""User accounts: creation, roles, passwords (argon2), disabling, authentication.

Every change is written to the audit log in the same transaction. Role checks and
separation-of-duties rules come from :mod:`enclave.roles`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave import audit, clock
from enclave.config import Settings
from enclave.errors import AlreadyExists, InputError, NotFound, PermissionDenied
from enclave.roles import (
    Role,
    accounts_policy,
    check_has_role,
    check_role_combination,
    parse_roles,
)
from enclave.state.models import User, UserRole

_HASHER = PasswordHasher()
USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
# Names that suggest an account shared by several people (DESIGN §1: no shared accounts).
_SHARED_NAMES = {"admin", "root", "shared", "team", "group", "guest", "test", "common", "lab"}


@dataclass(frozen=True)
class Actor:
    """The person acting, resolved from the state store."""

    username: str
    roles: frozenset[str]

    def primary_role(self, preferred: Role | None = None) -> str:
        if preferred and preferred.value in self.roles:
            return preferred.value
        return sorted(self.roles)[0] if self.roles else "none"


def get_user(session: Session, username: str) -> User:
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def resolve_actor(session: Session, username: str) -> Actor:
    """Load an active user as an :class:`Actor`; disabled or unknown users are refused."""
    if username == "system":
        return Actor("system", frozenset({"system"}))
    try:
        user = get_user(session, username)
    except NotFound:
        raise PermissionDenied(f"unknown user {username!r}") from None
    if user.status != "active":
        raise PermissionDenied(f"account {username!r} is {user.status}")
    return Actor(user.username, user.role_names)


def require(session: Session, username: str, role: Role | Collection[Role]) -> Actor:
    """Resolve ``username`` and refuse unless they hold ``role``."""
    actor = resolve_actor(session, username)
    if actor.username != "system":
        check_has_role(actor.username, actor.roles, role)
    return actor


def _check_password(password: str, settings: Settings) -> None:
    minimum = accounts_policy(settings).min_password_length
    if len(password) < minimum:
        raise InputError(f"password too short: at least {minimum} characters (accounts.yaml)")


def add_user(
    session: Session,
    settings: Settings,
    *,
    actor: str,
    username: str,
    full_name: str,
    unit: str,
    roles: Collection[str],
    password: str,
    email: str | None = None,
    supervisor: str | None = None,
    bootstrap: bool = False,
) -> User:
    """Create a personal account. Only a custodian may do this (``bootstrap`` for ``init``)."""
    who = (
        Actor(actor, frozenset({Role.CUSTODIAN.value}))
        if bootstrap
        else require(session, actor, Role.CUSTODIAN)
    )
    if not USERNAME_RE.match(username):
        raise InputError(
            f"invalid user name {username!r}: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter"
        )
    if username in _SHARED_NAMES:
        raise InputError(f"{username!r} looks like a shared account; accounts are personal")
    if not full_name.strip() or not unit.strip():
        raise InputError("every account needs the person's full name and unit")
    wanted = parse_roles(roles)
    if not wanted:
        raise InputError("give at least one role")
    check_role_combination(wanted, accounts_policy(settings))
    _check_password(password, settings)
    exists = session.execute(select(User.id).where(User.username == username)).first()
    if exists:
        raise AlreadyExists(f"user {username!r} exists already")
    moment = clock.now()
    user = User(
        username=username,
        full_name=full_name.strip(),
        unit=unit.strip(),
        email=email,
        supervisor=supervisor,
        password_hash=_HASHER.hash(password),
        status="active",
        created_at=moment,
    )
    user.roles = [
        UserRole(role=r.value, granted_at=moment, granted_by=who.username) for r in sorted(wanted)
    ]
    session.add(user)
    session.flush()
    audit.record(
        session,
        settings,
        actor=who.username,
        role=Role.CUSTODIAN.value,
        action="user.add",
        obj=username,
        details={"roles": sorted(r.value for r in wanted), "unit": unit, "supervisor": supervisor},
    )
    return user


def grant_role(
    session: Session, settings: Settings, *, actor: str, username: str, role: str
) -> None:
    """Give an existing user one more role, subject to the separation-of-duties policy."""
    who = require(session, actor, Role.CUSTODIAN)
    user = get_user(session, username)
    new = parse_roles([role])
    combined = parse_roles(user.role_names) | new
    check_role_combination(combined, accounts_policy(settings))
    (target,) = new
    if target.value in user.role_names:
        raise AlreadyExists(f"{username} already has role {target.value}")
    user.roles.append(UserRole(role=target.value, granted_at=clock.now(), granted_by=who.username))
    audit.record(
        session,
        settings,
        actor=who.username,
        role="custodian",
        action="user.grant",
        obj=username,
        details={"role": target.value},
    )


def disable_user(
    session: Session, settings: Settings, *, actor: str, username: str, reason: str
) -> User:
    """Disable an account (departed, reassigned, idle ...). The row is kept for the roster."""
    who = require(session, actor, Role.CUSTODIAN)
    if not reason.strip():
        raise InputError("give a reason for disabling the account")
    user = get_user(session, username)
    if user.status == "disabled":
        raise AlreadyExists(f"account {username!r} is already disabled")
    user.status = "disabled"
    user.disabled_at = clock.now()
    user.disabled_reason = reason
    audit.record(
        session,
        settings,
        actor=who.username,
        role="custodian",
        action="user.disable",
        obj=username,
        reason=reason,
    )
    return user


def list_users(session: Session, *, include_disabled: bool = True) -> Sequence[User]:
    stmt = select(User).order_by(User.username)
    if not include_disabled:
        stmt = stmt.where(User.status == "active")
    return session.execute(stmt).scalars().all()


def authenticate(session: Session, settings: Settings, username: str, password: str) -> User | None:
    """Return the user if the password is right and the account active; audit every try."""
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    ok = False
    if user is not None and user.status == "active":
        try:
            ok = _HASHER.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if ok and _HASHER.check_needs_rehash(user.password_hash):
            user.password_hash = _HASHER.hash(password)
    if ok and user is not None:
        user.last_login_at = clock.now()
    audit.record(
        session,
        settings,
        actor=username if user else "unknown",
        role="user",
        action="user.login",
        obj=username,
        outcome=audit.Outcome.OK if ok else audit.Outcome.DENIED,
    )
    return user if ok else None


def user_summary(user: User) -> dict[str, object]:
    """A JSON-safe description of an account (never the password hash)."""
    return {
        "username": user.username,
        "full_name": user.full_name,
        "unit": user.unit,
        "roles": sorted(user.role_names),
        "status": user.status,
        "supervisor": user.supervisor,
        "created_at": user.created_at.isoformat() if user.created_at else None,
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
        "disabled_reason": user.disabled_reason,
    }
