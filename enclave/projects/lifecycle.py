"""Project states, the ONE table of allowed transitions, and :func:`set_status`.

Owns: which status may follow which, who owns each transition (applicant, steward,
custodian, system), which statuses count as an open case for the 3-case limit, and the audit
event of each transition. Every status change in the code base goes through
:func:`set_status`, which checks the table, then the actor, then stores the status and its
audit entry in the caller's transaction.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.orm import Session

from enclave import audit, clock
from enclave.config import Settings
from enclave.errors import EnclaveError, PermissionDenied
from enclave.roles import Role
from enclave.state.models import Project
from enclave.users import Actor


class Status(StrEnum):
    QUEUED = "queued"  # a 4th concurrent case, waiting for one of the three to end
    SUBMITTED = "submitted"  # under steward review (the review clock runs)
    CLARIFICATION = "clarification"  # returned to the applicant with questions
    APPROVED = "approved"  # fee notice sent; awaiting payment and declarations
    ACTIVE = "active"  # paid and signed; the usage period runs
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    VOID = "void"  # unpaid after the payment window
    MARKED_FOR_DELETION = "marked_for_deletion"  # period over without extension
    CLOSED = "closed"  # data deleted and key destroyed (confirmed by provisioning)


class Owner(StrEnum):
    APPLICANT = "applicant"
    STEWARD = "steward"
    CUSTODIAN = "custodian"
    SYSTEM = "system"


# (from, to) -> who may make the move. The one place the lifecycle is defined.
TRANSITIONS: dict[tuple[Status, Status], Owner] = {
    (Status.QUEUED, Status.SUBMITTED): Owner.SYSTEM,
    (Status.QUEUED, Status.WITHDRAWN): Owner.APPLICANT,
    (Status.SUBMITTED, Status.APPROVED): Owner.STEWARD,
    (Status.SUBMITTED, Status.REJECTED): Owner.STEWARD,
    (Status.SUBMITTED, Status.CLARIFICATION): Owner.STEWARD,
    (Status.SUBMITTED, Status.WITHDRAWN): Owner.APPLICANT,
    (Status.CLARIFICATION, Status.SUBMITTED): Owner.APPLICANT,
    (Status.CLARIFICATION, Status.WITHDRAWN): Owner.APPLICANT,
    (Status.APPROVED, Status.ACTIVE): Owner.CUSTODIAN,
    (Status.APPROVED, Status.VOID): Owner.SYSTEM,
    (Status.ACTIVE, Status.MARKED_FOR_DELETION): Owner.SYSTEM,
    (Status.MARKED_FOR_DELETION, Status.CLOSED): Owner.CUSTODIAN,
}

# Who is expected to act next in each status (None: terminal). A test asserts completeness.
STATUS_OWNERS: dict[Status, Owner | None] = {
    Status.QUEUED: Owner.SYSTEM,
    Status.SUBMITTED: Owner.STEWARD,
    Status.CLARIFICATION: Owner.APPLICANT,
    Status.APPROVED: Owner.CUSTODIAN,
    Status.ACTIVE: Owner.SYSTEM,
    Status.MARKED_FOR_DELETION: Owner.CUSTODIAN,
    Status.REJECTED: None,
    Status.WITHDRAWN: None,
    Status.VOID: None,
    Status.CLOSED: None,
}

# The audit action written for entering each status.
STATUS_AUDIT_EVENT: dict[Status, str] = {
    Status.QUEUED: "project.queue",
    Status.SUBMITTED: "project.submit",
    Status.CLARIFICATION: "project.clarify",
    Status.APPROVED: "project.approve",
    Status.ACTIVE: "project.activate",
    Status.REJECTED: "project.reject",
    Status.WITHDRAWN: "project.withdraw",
    Status.VOID: "project.void",
    Status.MARKED_FOR_DELETION: "project.expire",
    Status.CLOSED: "project.close",
}

# Cases that count against the per-applicant limit (seed 003 §8.1(10): cases in the same
# period, including those being carried out).
OPEN_STATUSES = frozenset(
    {Status.SUBMITTED, Status.CLARIFICATION, Status.APPROVED, Status.ACTIVE}
)
# Statuses in which the steward's review clock runs.
IN_REVIEW = frozenset({Status.SUBMITTED, Status.CLARIFICATION})


class InvalidTransition(EnclaveError):
    """The requested status change is not in the transition table."""

    exit_code = 3


def check_transition(current: Status, target: Status) -> Owner:
    """The owner of (current -> target), or :class:`InvalidTransition`."""
    owner = TRANSITIONS.get((current, target))
    if owner is None:
        allowed = sorted(t.value for (f, t) in TRANSITIONS if f == current)
        raise InvalidTransition(
            f"a {current.value} project cannot become {target.value}; "
            f"allowed from {current.value}: {', '.join(allowed) or 'nothing (final)'}"
        )
    return owner


def check_owner(owner: Owner, actor: Actor, project: Project) -> str:
    """Refuse unless ``actor`` may act as ``owner`` on ``project``; return the audit role."""
    if owner is Owner.SYSTEM:
        if actor.username != "system":
            raise PermissionDenied(f"only the system (scheduled job) does this, not "
                                   f"{actor.username}")
        return "system"
    if owner is Owner.APPLICANT:
        if actor.username != project.applicant:
            raise PermissionDenied(f"{actor.username} is not the applicant of {project.code} "
                                   f"({project.applicant} is)")
        return Role.RESEARCHER.value
    role = Role.STEWARD if owner is Owner.STEWARD else Role.CUSTODIAN
    if role.value not in actor.roles:
        raise PermissionDenied(f"{actor.username} is not a {role.value}; "
                               f"a {role.value} does this")
    return role.value


def set_status(
    session: Session,
    settings: Settings,
    project: Project,
    target: Status,
    *,
    actor: Actor,
    reason: str | None = None,
    details: dict[str, object] | None = None,
) -> None:
    """Move ``project`` to ``target``: table, then permission, then store + audit together."""
    current = Status(project.status)
    owner = check_transition(current, target)
    role = check_owner(owner, actor, project)
    project.status = target.value
    project.status_changed_at = clock.now()
    audit.record(session, settings, actor=actor.username, role=role,
                 action=STATUS_AUDIT_EVENT[target], obj=project.code, project=project.code,
                 reason=reason, details={"from": current.value, "to": target.value,
                                         **(details or {})})


def mermaid_diagram() -> str:
    """The state diagram (Mermaid) generated from :data:`TRANSITIONS`, for the docs."""
    lines = ["stateDiagram-v2", f"    [*] --> {Status.SUBMITTED.value}",
             f"    [*] --> {Status.QUEUED.value}"]
    for (source, target), owner in TRANSITIONS.items():
        lines.append(f"    {source.value} --> {target.value}: {owner.value}")
    for status, owner in STATUS_OWNERS.items():
        if owner is None:
            lines.append(f"    {status.value} --> [*]")
    return "\n".join(lines) + "\n"
