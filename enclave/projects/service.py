"""The project service: the one Python API that the CLI and the web portal both call.

Owns the application path end to end: submission (with the door checks of
:mod:`enclave.projects.spec`), the 3-case queue, steward decisions per column and per
file-year, the fee notice on approval, declarations, payment, first use, the usage period,
the scheduled jobs (void unpaid applications, promote the queue, expire projects) and
closure. Every state change goes through :func:`enclave.projects.lifecycle.set_status` and
is audited in the same transaction. Changes and extensions are in
:mod:`enclave.projects.changes`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog import load_catalog
from enclave import audit, clock
from enclave.billing import fees, notices
from enclave.billing.fees import FeeLine
from enclave.config import Settings
from enclave.errors import (
    AlreadyExists,
    ConfigError,
    EnclaveError,
    InputError,
    NotFound,
    NotInitialisedError,
    PermissionDenied,
    StateError,
)
from enclave.projects import hooks
from enclave.projects.lifecycle import IN_REVIEW, OPEN_STATUSES, Status, set_status
from enclave.projects.policy import ProjectsPolicy, add_months, projects_policy
from enclave.projects.spec import (
    ApplicationRefused,
    MemberRole,
    ProjectSpec,
    check_data_request,
    check_irb,
    check_personnel,
)
from enclave.roles import Role, check_may_join_project, check_may_review_application
from enclave.state.db import session_scope
from enclave.state.models import (
    FeeNotice,
    Project,
    ProjectColumn,
    ProjectDocument,
    ProjectFileYear,
    ProjectMember,
    User,
)
from enclave.users import Actor, get_user, require, resolve_actor


class Decision(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"


class Declaration(StrEnum):
    CONTRACT = "contract"  # 使用合約書, signed by the applicant's side for the project
    CONFIDENTIALITY = "confidentiality"  # 保密切結書, every person


@contextmanager
def audited_refusal(
    settings: Settings, *, actor: str, action: str, obj: str = "", project: str | None = None
) -> Iterator[None]:
    """Audit a refused request (outcome ``denied``) in its own transaction, then re-raise.

    The refused operation's transaction rolls back with its changes, so its refusal would
    otherwise leave no trace. Wrap each user-facing call (CLI command, portal view) in this.
    Store failures and configuration errors are not refusals and pass through untouched.
    """
    try:
        yield
    except (StateError, ConfigError, NotInitialisedError):
        raise
    except EnclaveError as exc:
        with session_scope(settings) as session:
            audit.record(session, settings, actor=actor, role="requester", action=action,
                         obj=obj, project=project, reason=str(exc)[:2000],
                         outcome=audit.Outcome.DENIED,
                         details={"error": type(exc).__name__})
        raise


def today() -> date:
    """The service centre's local date (from the settable clock)."""
    return clock.local_now().date()


# ---------------------------------------------------------------------------- look-ups


def get_project(session: Session, code: str) -> Project:
    """The project with ``code``, or :class:`NotFound`."""
    project = session.execute(select(Project).where(Project.code == code)).scalar_one_or_none()
    if project is None:
        raise NotFound(f"no project {code!r}")
    return project


def list_projects(
    session: Session, *, status: Status | None = None, applicant: str | None = None
) -> Sequence[Project]:
    """Projects ordered by code, optionally filtered."""
    stmt = select(Project).order_by(Project.id)
    if status is not None:
        stmt = stmt.where(Project.status == status.value)
    if applicant is not None:
        stmt = stmt.where(Project.applicant == applicant)
    return session.execute(stmt).scalars().all()


def current_members(project: Project) -> list[ProjectMember]:
    return [m for m in project.members if m.removed_at is None]


def member_names(project: Project) -> set[str]:
    return {m.username for m in current_members(project)}


def spec_of(project: Project) -> ProjectSpec:
    return ProjectSpec.model_validate(json.loads(project.spec_json))


def approved_columns(project: Project) -> dict[str, list[str]]:
    """file -> approved column names (in request order)."""
    out: dict[str, list[str]] = {}
    for c in project.columns:
        if c.decision == Decision.APPROVED.value:
            out.setdefault(c.file, []).append(c.column)
    return out


def approved_file_years(project: Project) -> list[tuple[str, int]]:
    return sorted((fy.file, fy.year) for fy in project.file_years
                  if fy.decision == Decision.APPROVED.value)


# ---------------------------------------------------------------------------- documents


def store_document(
    session: Session, settings: Settings, *, project: Project, source: Path, kind: str
) -> ProjectDocument:
    """Copy ``source`` to ``documents/<project>/`` and record its SHA-256."""
    if not source.is_file():
        raise InputError(f"{kind} document {source} does not exist")
    folder = settings.documents_dir / project.code
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{kind}-{source.name}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{kind}-{n}-{source.name}"
    shutil.copyfile(source, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    doc = ProjectDocument(project_id=project.id, kind=kind, file_name=target.name,
                          sha256=digest, stored_at=clock.now())
    project.documents.append(doc)
    session.flush()
    return doc


# ---------------------------------------------------------------------------- application


def _open_cases(session: Session, applicant: str) -> int:
    return session.execute(
        select(func.count(Project.id)).where(
            Project.applicant == applicant,
            Project.status.in_([s.value for s in OPEN_STATUSES]),
        )
    ).scalar_one()


def _next_code(session: Session, year: int) -> str:
    count = session.execute(
        select(func.count(Project.id)).where(Project.code.like(f"P{year}-%"))
    ).scalar_one()
    return f"P{year}-{count + 1:04d}"


def _check_people(session: Session, spec: ProjectSpec) -> list[str]:
    problems = []
    for person in [spec.applicant, *(p.username for p in spec.personnel)]:
        user = session.execute(select(User).where(User.username == person)).scalar_one_or_none()
        if user is None:
            problems.append(f"personnel: no account {person!r}; the custodian creates "
                            "researchers' accounts first (enclave user add)")
            continue
        if user.status != "active":
            problems.append(f"personnel: account {person!r} is {user.status}")
        check_may_join_project(person, user.role_names)  # raises: never a soft problem
    return problems


def apply(
    session: Session, settings: Settings, *, actor: str, spec: ProjectSpec, spec_dir: Path
) -> Project:
    """Submit an application; refuse it at the door or queue it as a 4th open case.

    Parameters
    ----------
    actor
        The applicant (a researcher) submitting their own application.
    spec
        The validated form.
    spec_dir
        Folder against which document paths in the spec (IRB, proofs) are resolved.

    Raises
    ------
    ApplicationRefused
        Every problem found, one per line (files, columns, reasons, IRB, personnel).
    SeparationOfDutiesError
        A custodian is named as a project member.
    """
    who = require(session, actor, Role.RESEARCHER)
    if who.username != spec.applicant:
        raise PermissionDenied(f"{who.username} may only submit their own applications "
                               f"(the spec names {spec.applicant})")
    policy = projects_policy(settings)
    day = today()
    applicant = get_user(session, spec.applicant)
    problems = check_data_request(spec.data, load_catalog(), today=day)
    problems += check_irb(spec, applicant_names={applicant.username, applicant.full_name},
                          today=day, exempt_types=policy.irb_exempt_types)
    problems += check_personnel(spec)
    problems += _check_people(session, spec)
    documents = []
    if spec.irb is not None:
        documents.append(("irb", spec_dir / spec.irb.document, None))
    for p in spec.personnel:
        if p.proof:
            documents.append(("proof", spec_dir / p.proof, p.username))
    for kind, path, _ in documents:
        if not path.is_file():
            problems.append(f"{kind}: document {path} does not exist")
    if problems:
        raise ApplicationRefused(
            f"application {spec.title!r} refused:\n  - " + "\n  - ".join(problems)
        )

    queued = _open_cases(session, spec.applicant) >= policy.max_concurrent_applications
    moment = clock.now()
    raw = spec.model_dump_json()
    project = Project(
        code=_next_code(session, day.year), applicant=spec.applicant,
        institution=spec.institution, project_type=spec.project_type.value, title=spec.title,
        status=(Status.QUEUED if queued else Status.SUBMITTED).value, spec_json=raw,
        spec_sha256=hashlib.sha256(raw.encode()).hexdigest(), submitted_at=moment,
        review_started_on=None if queued else day, status_changed_at=moment,
        approved_half_days=0, used_half_days=0, extension_months=0, computers=spec.computers,
    )
    session.add(project)
    session.flush()
    proofs: dict[str, int] = {}
    for kind, path, owner in documents:
        doc = store_document(session, settings, project=project, source=path, kind=kind)
        if owner:
            proofs[owner] = doc.id
    project.members.append(ProjectMember(
        username=spec.applicant, project_role=MemberRole.PI.value, unit=spec.institution,
        added_at=moment))
    for p in spec.personnel:
        project.members.append(ProjectMember(
            username=p.username, project_role=p.role.value, unit=p.unit,
            proof_document_id=proofs.get(p.username), added_at=moment))
    for req in spec.data:
        for column, reason in req.columns.items():
            project.columns.append(ProjectColumn(file=req.file, column=column,
                                                 reason=str(reason).strip()))
        for year in sorted(set(req.years)):
            project.file_years.append(ProjectFileYear(file=req.file, year=year))
    session.flush()
    audit.record(session, settings, actor=who.username, role=Role.RESEARCHER.value,
                 action="project.apply", obj=project.code, project=project.code,
                 details={"status": project.status, "type": project.project_type,
                          "files": sorted({r.file for r in spec.data}),
                          "columns": len(project.columns), "spec_sha256": project.spec_sha256,
                          "documents": [d.sha256 for d in project.documents]})
    return project


# ---------------------------------------------------------------------------- review


def _steward_for(session: Session, actor: str, project: Project) -> Actor:
    steward = require(session, actor, Role.STEWARD)
    check_may_review_application(steward.username, member_names(project))
    return steward


def application_fee_lines(project: Project, settings: Settings) -> list[FeeLine]:
    """The itemised fee of an approved application (DESIGN §7)."""
    schedule = fees.fee_schedule(settings)
    spec = spec_of(project)
    cols = {f: len(c) for f, c in approved_columns(project).items()}
    lines = fees.data_processing_lines(schedule, approved_file_years(project), cols)
    lines += fees.working_day_lines(schedule, half_days=spec.working_days.half_days,
                                    full_days=spec.working_days.full_days,
                                    computers=spec.computers)
    waiver = fees.waiver_line(schedule, lines, project.project_type)
    return lines + ([waiver] if waiver else [])


def approve(
    session: Session,
    settings: Settings,
    *,
    actor: str,
    code: str,
    reason: str,
    refused_columns: Mapping[tuple[str, str], str] | None = None,
    refused_file_years: Mapping[tuple[str, int], str] | None = None,
) -> FeeNotice:
    """Approve an application, refusing individual columns or file-years with reasons.

    Every requested column and file-year gets a decision and a reason; the fee notice is
    computed from what is approved and issued at once.
    """
    project = get_project(session, code)
    steward = _steward_for(session, actor, project)
    if not reason.strip():
        raise InputError("give a reason for the decision")
    refused_columns = dict(refused_columns or {})
    refused_file_years = dict(refused_file_years or {})
    by_col = {(c.file, c.column): c for c in project.columns}
    by_fy = {(fy.file, fy.year): fy for fy in project.file_years}
    for key, why in refused_columns.items():
        if key not in by_col:
            raise InputError(f"{code} did not request column {key[0]}.{key[1]}")
        if not why.strip():
            raise InputError(f"give a reason for refusing column {key[0]}.{key[1]}")
    for key, why in refused_file_years.items():
        if key not in by_fy:
            raise InputError(f"{code} did not request {key[0]} for {key[1]}")
        if not why.strip():
            raise InputError(f"give a reason for refusing {key[0]} {key[1]}")
    for key, col in by_col.items():
        if key in refused_columns:
            col.decision, col.decision_reason = Decision.REFUSED.value, refused_columns[key]
        else:
            col.decision, col.decision_reason = Decision.APPROVED.value, reason
    for key, fy in by_fy.items():
        if key in refused_file_years:
            fy.decision, fy.decision_reason = Decision.REFUSED.value, refused_file_years[key]
        else:
            fy.decision, fy.decision_reason = Decision.APPROVED.value, reason
    cols = approved_columns(project)
    years = approved_file_years(project)
    if not years:
        raise InputError(f"every file-year of {code} is refused; reject the application instead")
    for file in sorted({f for f, _ in years}):
        if not cols.get(file):
            raise InputError(f"{code}: every column of {file} is refused but some of its years "
                             f"are approved; refuse those years too")
    set_status(session, settings, project, Status.APPROVED, actor=steward, reason=reason,
               details={"refused_columns": [f"{f}.{c}" for f, c in sorted(refused_columns)],
                        "refused_file_years": [f"{f}/{y}" for f, y in sorted(refused_file_years)],
                        "approved_columns": sum(len(v) for v in cols.values())})
    policy = projects_policy(settings)
    spec = spec_of(project)
    day = today()
    project.decided_at, project.decided_by, project.decision_reason = clock.now(), actor, reason
    project.notice_date = day
    project.approved_half_days = spec.working_days.in_half_days
    project.computers = spec.computers
    _refresh_period(project, policy)
    return notices.issue(session, settings, project=project, purpose="application",
                         lines=application_fee_lines(project, settings), issued_on=day,
                         window_days=policy.payment_window_days, actor=steward.username)


def reject(session: Session, settings: Settings, *, actor: str, code: str, reason: str) -> None:
    """Reject the whole application with a reason."""
    project = get_project(session, code)
    steward = _steward_for(session, actor, project)
    if not reason.strip():
        raise InputError("give a reason for rejecting the application")
    for row in [*project.columns, *project.file_years]:
        row.decision, row.decision_reason = Decision.REFUSED.value, reason
    set_status(session, settings, project, Status.REJECTED, actor=steward, reason=reason)
    project.decided_at, project.decided_by, project.decision_reason = clock.now(), actor, reason
    promote_queue(session, settings, applicant=project.applicant)


def clarify(session: Session, settings: Settings, *, actor: str, code: str, questions: str) -> None:
    """Return the application to the applicant with questions."""
    project = get_project(session, code)
    steward = _steward_for(session, actor, project)
    if not questions.strip():
        raise InputError("state what the applicant must clarify")
    set_status(session, settings, project, Status.CLARIFICATION, actor=steward, reason=questions)


def respond(session: Session, settings: Settings, *, actor: str, code: str, answer: str) -> None:
    """The applicant answers the steward's questions; the application returns to review."""
    project = get_project(session, code)
    who = resolve_actor(session, actor)
    if not answer.strip():
        raise InputError("give the answer to the steward's questions")
    set_status(session, settings, project, Status.SUBMITTED, actor=who, reason=answer)


def withdraw(session: Session, settings: Settings, *, actor: str, code: str, reason: str) -> None:
    """The applicant withdraws a queued or pending application."""
    project = get_project(session, code)
    who = resolve_actor(session, actor)
    set_status(session, settings, project, Status.WITHDRAWN, actor=who,
               reason=reason or "withdrawn by the applicant")
    promote_queue(session, settings, applicant=project.applicant)


# ---------------------------------------------------------------------------- after approval


def record_declaration(
    session: Session, settings: Settings, *, actor: str, code: str, username: str,
    kind: Declaration | str,
) -> ProjectMember:
    """Record that ``username`` signed the contract or the confidentiality declaration."""
    who = require(session, actor, Role.CUSTODIAN)
    project = get_project(session, code)
    declaration = Declaration(kind)
    if Status(project.status) not in (Status.APPROVED, Status.ACTIVE):
        raise InputError(f"{code} is {project.status}; declarations are signed after approval")
    member = next((m for m in current_members(project) if m.username == username), None)
    if member is None:
        raise NotFound(f"{username} is not a member of {code}")
    attr = f"{declaration.value}_signed_at"
    if getattr(member, attr) is not None:
        raise AlreadyExists(f"{username} signed the {declaration.value} declaration of {code} "
                            f"already")
    setattr(member, attr, clock.now())
    audit.record(session, settings, actor=who.username, role=Role.CUSTODIAN.value,
                 action="project.declaration", obj=username, project=code,
                 details={"kind": declaration.value})
    _maybe_activate(session, settings, project, who)
    return member


def missing_declarations(project: Project) -> list[str]:
    """``user: kind`` for every declaration a current member has not signed."""
    out = []
    for m in current_members(project):
        for d in Declaration:
            if getattr(m, f"{d.value}_signed_at") is None:
                out.append(f"{m.username}: {d.value}")
    return out


def check_may_use(session: Session, code: str, username: str) -> ProjectMember:
    """Refuse unless ``username`` may work on ``code`` now (the workspace asks this).

    The project must be active and the person a current member who has signed both the
    contract and the confidentiality declaration (members added by a change sign too).
    """
    project = get_project(session, code)
    if project.status != Status.ACTIVE.value:
        raise PermissionDenied(f"{code} is {project.status}; only an active project is used")
    member = next((m for m in current_members(project) if m.username == username), None)
    if member is None:
        raise PermissionDenied(f"{username} is not a member of {code}")
    unsigned = [d.value for d in Declaration if getattr(member, f"{d.value}_signed_at") is None]
    if unsigned:
        raise PermissionDenied(f"{username} has not signed the {' and '.join(unsigned)} "
                               f"declaration(s) of {code}")
    return member


def application_notice(session: Session, project: Project) -> FeeNotice | None:
    return next((n for n in notices.for_project(session, project)
                 if n.purpose == "application" and n.status != notices.NoticeStatus.VOID.value),
                None)


def _maybe_activate(session: Session, settings: Settings, project: Project, who: Actor) -> None:
    if project.status != Status.APPROVED.value:
        return
    notice = application_notice(session, project)
    if notice is None or not notices.is_settled(notice) or missing_declarations(project):
        return
    set_status(session, settings, project, Status.ACTIVE, actor=who,
               reason="fee settled and every declaration signed")
    _refresh_period(project, projects_policy(settings))


def _project_of(session: Session, notice: FeeNotice) -> Project:
    project = session.get(Project, notice.project_id)
    if project is None:  # the foreign key makes this impossible unless the store is damaged
        raise NotFound(f"fee notice {notice.number} names a missing project")
    return project


def record_payment(
    session: Session, settings: Settings, *, actor: str, notice_number: str, paid_on: date,
    reference: str,
) -> FeeNotice:
    """The custodian records a payment; the application or change takes effect."""
    from enclave.projects import changes

    who = require(session, actor, Role.CUSTODIAN)
    notice = notices.get(session, notice_number)
    project = _project_of(session, notice)
    notices.record_payment(session, settings, notice=notice, paid_on=paid_on,
                           reference=reference, actor=who.username, project_code=project.code)
    if notice.purpose == "application":
        _maybe_activate(session, settings, project, who)
    elif notice.change_id is not None:
        changes.apply_change(session, settings, change_id=notice.change_id, actor=who)
    return notice


def record_first_use(
    session: Session, settings: Settings, *, actor: str, code: str, day: date | None = None
) -> Project:
    """Record the first day of use; the usage period then runs from it (seed 003 §9)."""
    who = resolve_actor(session, actor)
    if who.username != "system":
        require(session, actor, Role.CUSTODIAN)
    project = get_project(session, code)
    if project.status != Status.ACTIVE.value:
        raise InputError(f"{code} is {project.status}; only an active project is used")
    if project.first_use_date is not None:
        raise AlreadyExists(f"{code} was first used on {project.first_use_date}")
    project.first_use_date = day or today()
    _refresh_period(project, projects_policy(settings))
    audit.record(session, settings, actor=who.username, role=who.primary_role(Role.CUSTODIAN),
                 action="project.first_use", obj=code, project=code,
                 details={"first_use": project.first_use_date,
                          "period_end": project.period_end})
    return project


def record_day_use(
    session: Session, settings: Settings, *, actor: str, code: str, half_days: int
) -> Project:
    """Count working days used (the workspace calls this per booking; no-shows count)."""
    who = resolve_actor(session, actor)
    if who.username != "system":
        require(session, actor, Role.CUSTODIAN)
    project = get_project(session, code)
    if half_days < 1:
        raise InputError("half days used must be positive")
    if project.used_half_days + half_days > project.approved_half_days:
        raise InputError(
            f"{code} has {project.approved_half_days - project.used_half_days} approved half "
            f"days left; apply for more working days (change request) first"
        )
    project.used_half_days += half_days
    audit.record(session, settings, actor=who.username, role=who.primary_role(Role.CUSTODIAN),
                 action="project.day_use", obj=code, project=code,
                 details={"half_days": half_days, "used": project.used_half_days})
    return project


@dataclass(frozen=True)
class UsagePeriod:
    start: date
    end: date
    started_by_use: bool


def usage_period(project: Project, policy: ProjectsPolicy) -> UsagePeriod | None:
    """1 year from the first day of use, or from 3 months after the notice if not used by
    then; plus any extension. None before the notice."""
    if project.notice_date is None:
        return None
    deadline = add_months(project.notice_date, policy.start_deadline_months)
    used = project.first_use_date is not None and project.first_use_date <= deadline
    start = project.first_use_date if used and project.first_use_date else deadline
    end = add_months(start, policy.usage_period_months + project.extension_months)
    return UsagePeriod(start, end - timedelta(days=1), used)


def _refresh_period(project: Project, policy: ProjectsPolicy) -> None:
    period = usage_period(project, policy)
    project.period_end = period.end if period else None


def transfer_days(
    session: Session, settings: Settings, *, actor: str, from_code: str, to_code: str,
    half_days: int,
) -> None:
    """Move unused working days to another project of the same applicant (never refunded)."""
    who = require(session, actor, Role.CUSTODIAN)
    source, target = get_project(session, from_code), get_project(session, to_code)
    if source.applicant != target.applicant:
        raise InputError(f"unused days move only between projects of the same applicant "
                         f"({from_code}: {source.applicant}, {to_code}: {target.applicant})")
    if source.id == target.id:
        raise InputError("give two different projects")
    if Status(target.status) not in (Status.APPROVED, Status.ACTIVE):
        raise InputError(f"{to_code} is {target.status}; days move only to an approved or "
                         "active project")
    if Status(source.status) not in (Status.ACTIVE, Status.MARKED_FOR_DELETION, Status.CLOSED):
        raise InputError(f"{from_code} is {source.status}; it has no paid days to move")
    unused = source.approved_half_days - source.used_half_days
    if half_days < 1 or half_days > unused:
        raise InputError(f"{from_code} has {unused} unused half days; cannot move {half_days}")
    source.approved_half_days -= half_days
    target.approved_half_days += half_days
    audit.record(session, settings, actor=who.username, role=Role.CUSTODIAN.value,
                 action="project.transfer_days", obj=f"{from_code}->{to_code}",
                 project=from_code, details={"half_days": half_days, "to": to_code})


def close(session: Session, settings: Settings, *, actor: str, code: str, reason: str) -> None:
    """Close a project marked for deletion once its data and key are gone."""
    who = require(session, actor, Role.CUSTODIAN)
    set_status(session, settings, get_project(session, code), Status.CLOSED, actor=who,
               reason=reason or "data deleted and key destroyed")


# ---------------------------------------------------------------------------- scheduled jobs


def promote_queue(session: Session, settings: Settings, *, applicant: str) -> list[str]:
    """Move the applicant's oldest queued applications into review while slots are free."""
    policy = projects_policy(settings)
    system = Actor("system", frozenset({"system"}))
    promoted = []
    queued = session.execute(
        select(Project).where(Project.applicant == applicant,
                              Project.status == Status.QUEUED.value)
        .order_by(Project.submitted_at, Project.id)
    ).scalars().all()
    for project in queued:
        session.flush()
        if _open_cases(session, applicant) >= policy.max_concurrent_applications:
            break
        set_status(session, settings, project, Status.SUBMITTED, actor=system,
                   reason="a slot of the 3-case limit became free")
        project.review_started_on = today()
        promoted.append(project.code)
        session.flush()
    return promoted


@dataclass
class JobReport:
    """What :func:`run_due_jobs` did."""

    voided: list[str] = field(default_factory=list)
    voided_changes: list[int] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    disabled_accounts: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        return {"voided": self.voided, "voided_changes": self.voided_changes,
                "expired": self.expired, "disabled_accounts": self.disabled_accounts,
                "promoted": self.promoted}


def run_due_jobs(session: Session, settings: Settings) -> JobReport:
    """The daily job: void unpaid notices, expire ended projects, promote queues."""
    from enclave.projects import changes

    day = today()
    system = Actor("system", frozenset({"system"}))
    report = JobReport()
    overdue = session.execute(
        select(FeeNotice).where(FeeNotice.status == notices.NoticeStatus.ISSUED.value,
                                FeeNotice.due_on < day).order_by(FeeNotice.id)
    ).scalars().all()
    for notice in overdue:
        project = _project_of(session, notice)
        notices.void(session, settings, notice=notice, on=day, actor="system",
                     project_code=project.code)
        if notice.purpose == "application" and project.status == Status.APPROVED.value:
            set_status(session, settings, project, Status.VOID, actor=system,
                       reason=f"fee notice {notice.number} unpaid by {notice.due_on}")
            report.voided.append(project.code)
        elif notice.change_id is not None:
            changes.void_change(session, settings, change_id=notice.change_id)
            report.voided_changes.append(notice.change_id)
    for project in list_projects(session, status=Status.ACTIVE):
        if project.period_end is not None and project.period_end < day:
            report.disabled_accounts += expire(session, settings, project)
            report.expired.append(project.code)
    session.flush()
    applicants = session.execute(
        select(Project.applicant).where(Project.status == Status.QUEUED.value).distinct()
    ).scalars().all()
    for applicant in sorted(applicants):
        report.promoted += promote_queue(session, settings, applicant=applicant)
    return report


def expire(session: Session, settings: Settings, project: Project) -> list[str]:
    """End of period without extension: mark for deletion, disable accounts, run hooks."""
    from enclave.users import disable_user

    system = Actor("system", frozenset({"system"}))
    set_status(session, settings, project, Status.MARKED_FOR_DELETION, actor=system,
               reason=f"usage period ended {project.period_end} without extension")
    disabled = []
    for member in current_members(project):
        others = session.execute(
            select(func.count(ProjectMember.id)).join(Project).where(
                ProjectMember.username == member.username, ProjectMember.removed_at.is_(None),
                Project.id != project.id,
                Project.status.in_([s.value for s in OPEN_STATUSES]))
        ).scalar_one()
        user = get_user(session, member.username)
        if others == 0 and user.status == "active":
            disable_user(session, settings, actor="system", username=member.username,
                         reason=f"project {project.code} ended without extension")
            disabled.append(member.username)
    ran = hooks.run_closure_hooks(session, settings, project)
    audit.record(session, settings, actor="system", role="system", action="project.closure_hooks",
                 obj=project.code, project=project.code, details={"hooks": ran})
    promote_queue(session, settings, applicant=project.applicant)
    return disabled


def summary(session: Session, settings: Settings, project: Project) -> dict[str, object]:
    """A JSON-safe description of a project for ``show`` and the portal."""
    from enclave.projects import review

    policy = projects_policy(settings)
    period = usage_period(project, policy)
    clock_info = review.review_clock(project, settings) if project.review_started_on else None
    return {
        "code": project.code, "title": project.title, "applicant": project.applicant,
        "institution": project.institution, "type": project.project_type,
        "status": project.status, "submitted_at": project.submitted_at.isoformat(),
        "review": clock_info.as_dict() if clock_info and Status(project.status) in IN_REVIEW
        else None,
        "decided_by": project.decided_by, "decision_reason": project.decision_reason,
        "notice_date": project.notice_date, "first_use_date": project.first_use_date,
        "period": {"start": period.start, "end": period.end} if period else None,
        "extension_months": project.extension_months,
        "half_days": {"approved": project.approved_half_days, "used": project.used_half_days},
        "computers": project.computers,
        "members": [
            {"username": m.username, "role": m.project_role, "unit": m.unit,
             "contract": m.contract_signed_at, "confidentiality": m.confidentiality_signed_at,
             "removed_at": m.removed_at}
            for m in project.members
        ],
        "columns": [
            {"file": c.file, "column": c.column, "reason": c.reason, "decision": c.decision,
             "decision_reason": c.decision_reason}
            for c in project.columns
        ],
        "file_years": [
            {"file": fy.file, "year": fy.year, "decision": fy.decision,
             "decision_reason": fy.decision_reason}
            for fy in project.file_years
        ],
        "documents": [{"kind": d.kind, "file": d.file_name, "sha256": d.sha256}
                      for d in project.documents],
        "notices": [{"number": n.number, "purpose": n.purpose, "total": n.total,
                     "status": n.status, "due_on": n.due_on}
                    for n in notices.for_project(session, project)],
    }
