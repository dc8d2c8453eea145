"""Account hygiene (DESIGN §8; seed 004 L558-614): what is due and what conflicts.

Owns the periodic account review: grants due for their 6-monthly re-review, accounts idle
beyond the policy limit, researchers whose projects have all ended (departed from the data),
and separation-of-duties conflicts (a reviewer or steward on a project, a custodian listed on
a project, a forbidden role pair). ``apply_review`` disables what policy says to disable;
grant re-reviews and departures are recorded by the custodian one by one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave import audit, clock
from enclave.config import Settings
from enclave.errors import InputError, NotFound
from enclave.projects.lifecycle import OPEN_STATUSES
from enclave.projects.policy import add_months, local_date
from enclave.roles import Role, accounts_policy, parse_roles
from enclave.state.models import Project, ProjectMember, User
from enclave.users import disable_user, get_user, require


class FindingKind(StrEnum):
    GRANT_REVIEW_DUE = "grant_review_due"
    IDLE = "idle"
    PROJECTS_ENDED = "projects_ended"
    SOD_CONFLICT = "sod_conflict"


@dataclass(frozen=True)
class Finding:
    """One thing the account review found; ``disable`` when ``--apply`` disables the account."""

    kind: FindingKind
    username: str
    detail: str
    disable: bool = False

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["kind"] = self.kind.value
        return out


def _today() -> date:
    return clock.local_now().date()


def review_accounts(session: Session, settings: Settings) -> list[Finding]:
    """Everything due or in conflict today, sorted by kind and user."""
    policy = accounts_policy(settings)
    today = _today()
    findings: list[Finding] = []
    users = session.execute(select(User).order_by(User.username)).scalars().all()
    memberships = session.execute(
        select(ProjectMember, Project).join(Project).where(ProjectMember.removed_at.is_(None))
    ).all()
    by_user: dict[str, list[tuple[ProjectMember, Project]]] = {}
    for member, project in memberships:
        by_user.setdefault(member.username, []).append((member, project))
    open_values = {s.value for s in OPEN_STATUSES}
    forbidden = {frozenset(p) for p in policy.forbidden_combinations}
    for user in users:
        if user.status != "active":
            continue
        roles = user.role_names
        for grant in user.roles:
            last = local_date(grant.reviewed_at or grant.granted_at)
            due = add_months(last, policy.grant_review_months)
            if due <= today:
                findings.append(Finding(
                    FindingKind.GRANT_REVIEW_DUE, user.username,
                    f"role {grant.role} last reviewed {last}; re-review due {due} "
                    f"(every {policy.grant_review_months} months)"))
        last_seen = local_date(user.last_login_at or user.created_at)
        idle_days = (today - last_seen).days
        if idle_days > policy.idle_disable_days:
            keep = Role.CUSTODIAN.value in roles  # never lock out the administrators blindly
            findings.append(Finding(
                FindingKind.IDLE, user.username,
                f"no login for {idle_days} days (since {last_seen}; limit "
                f"{policy.idle_disable_days})" + ("; custodian: disable by hand" if keep else ""),
                disable=not keep))
        projects = by_user.get(user.username, [])
        if roles == {Role.RESEARCHER.value} and projects and not any(
            p.status in open_values for _, p in projects
        ):
            findings.append(Finding(
                FindingKind.PROJECTS_ENDED, user.username,
                "every project of this researcher has ended: "
                + ", ".join(f"{p.code} ({p.status})" for _, p in projects), disable=True))
        for pair in forbidden:
            if pair <= roles:
                findings.append(Finding(FindingKind.SOD_CONFLICT, user.username,
                                        f"holds forbidden role pair {sorted(pair)}"))
        for _member, project in projects:
            if project.status not in open_values:
                continue
            if Role.CUSTODIAN.value in roles:
                findings.append(Finding(FindingKind.SOD_CONFLICT, user.username,
                                        f"custodian is a member of {project.code}"))
            if Role.REVIEWER.value in roles:
                findings.append(Finding(
                    FindingKind.SOD_CONFLICT, user.username,
                    f"output reviewer is a member of {project.code}; must never review its "
                    "outputs"))
            if project.decided_by == user.username:
                findings.append(Finding(
                    FindingKind.SOD_CONFLICT, user.username,
                    f"steward decided {project.code} and is a member of it"))
    findings.sort(key=lambda f: (f.kind.value, f.username, f.detail))
    return findings


def run_review(
    session: Session, settings: Settings, *, actor: str, apply: bool = False
) -> list[Finding]:
    """List findings (custodian or auditor); with ``apply`` the custodian disables accounts."""
    who = require(session, actor, Role.CUSTODIAN if apply else [Role.CUSTODIAN, Role.AUDITOR])
    findings = review_accounts(session, settings)
    disabled = []
    if apply:
        for f in findings:
            if f.disable and get_user(session, f.username).status == "active":
                disable_user(session, settings, actor=who.username, username=f.username,
                             reason=f"account review: {f.kind.value}: {f.detail}")
                disabled.append(f.username)
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind.value] = counts.get(f.kind.value, 0) + 1
    audit.record(session, settings, actor=who.username,
                 role=who.primary_role(Role.CUSTODIAN), action="accounts.review",
                 obj="accounts", details={"findings": counts, "disabled": disabled,
                                          "applied": apply})
    return findings


def confirm_grant(
    session: Session, settings: Settings, *, actor: str, username: str, role: str,
    supervisor: str,
) -> None:
    """Record the 6-monthly re-review of one grant, approved by the named supervisor."""
    who = require(session, actor, Role.CUSTODIAN)
    if not supervisor.strip():
        raise InputError("name the supervisor who re-approved the grant")
    user = get_user(session, username)
    (wanted,) = parse_roles([role])
    grant = next((g for g in user.roles if g.role == wanted.value), None)
    if grant is None:
        raise NotFound(f"{username} has no role {wanted.value}")
    grant.reviewed_at = clock.now()
    audit.record(session, settings, actor=who.username, role=Role.CUSTODIAN.value,
                 action="accounts.grant_review", obj=username,
                 details={"role": wanted.value, "supervisor": supervisor})


def depart(
    session: Session, settings: Settings, *, actor: str, username: str, reason: str
) -> list[str]:
    """A person left: disable the account and remove them from every project they are on."""
    who = require(session, actor, Role.CUSTODIAN)
    if not reason.strip():
        raise InputError("give the reason (departed, retired, reassigned ...)")
    user = get_user(session, username)
    removed = []
    rows = session.execute(
        select(ProjectMember, Project).join(Project).where(
            ProjectMember.username == username, ProjectMember.removed_at.is_(None))
    ).all()
    for member, project in rows:
        if project.applicant == username and project.status in {s.value for s in OPEN_STATUSES}:
            raise InputError(
                f"{username} is the applicant (PI) of {project.code} ({project.status}); the "
                "project must be closed or transferred before the PI's account is removed")
        member.removed_at = clock.now()
        removed.append(project.code)
    if user.status == "active":
        disable_user(session, settings, actor=who.username, username=username,
                     reason=f"departed: {reason}")
    audit.record(session, settings, actor=who.username, role=Role.CUSTODIAN.value,
                 action="accounts.depart", obj=username, reason=reason,
                 details={"removed_from": removed})
    return removed
