"""Change requests and extensions of an active project (seed 003 §10-§11).

Owns the change kinds, their limits (read from ``policies/projects.yaml``): personnel at most
once per 6 months and at most 6 people per change; adding files or years at most once;
adding columns at most 4 times (billed by the added columns the first time, by the file's
total columns after the change from the second time); more working days; an extension of up
to 1 year with the data-retention fee. A change is requested by the applicant, decided by a
steward, and takes effect when its fee notice is paid (at once when there is nothing to pay).
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import load_catalog
from enclave import audit, clock
from enclave.billing import fees, notices
from enclave.billing.fees import FeeLine
from enclave.config import Settings
from enclave.errors import EnclaveError, InputError, NotFound, PermissionDenied
from enclave.projects.lifecycle import Status
from enclave.projects.policy import add_months, local_date, projects_policy
from enclave.projects.service import (
    Decision,
    approved_columns,
    approved_file_years,
    current_members,
    get_project,
    member_names,
    store_document,
    today,
    usage_period,
)
from enclave.projects.spec import DataRequest, Person, WorkingDays, check_data_request, same_unit
from enclave.roles import Role, check_may_join_project, check_may_review_application
from enclave.state.models import (
    ChangeRequest,
    FeeNotice,
    Project,
    ProjectColumn,
    ProjectFileYear,
    ProjectMember,
)
from enclave.users import Actor, get_user, require, resolve_actor


class ChangeKind(StrEnum):
    PERSONNEL = "personnel"
    FILES_YEARS = "files_years"
    COLUMNS = "columns"
    WORKING_DAYS = "working_days"
    EXTENSION = "extension"


class ChangeStatus(StrEnum):
    PENDING = "pending"  # waiting for a steward
    APPROVED = "approved"  # fee notice issued, waiting for payment
    APPLIED = "applied"  # in effect
    REJECTED = "rejected"
    VOID = "void"  # its fee notice was not paid in time


# Statuses that use up one of a kind's allowed changes.
_COUNTED = (ChangeStatus.PENDING.value, ChangeStatus.APPROVED.value, ChangeStatus.APPLIED.value)


class ChangeLimitExceeded(EnclaveError):
    """A change would break one of the seed's limits (how often, how many)."""

    exit_code = 3


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonnelChange(_Form):
    add: list[Person] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class ColumnsAdd(_Form):
    file: str
    columns: dict[str, str | None] = Field(min_length=1)


class ColumnsChange(_Form):
    add: list[ColumnsAdd] = Field(min_length=1)


class FilesYearsAdd(_Form):
    file: str
    years: list[int] = Field(min_length=1)
    # Only for a file new to the project; new years of an approved file get its columns.
    columns: dict[str, str | None] = Field(default_factory=dict)


class FilesYearsChange(_Form):
    add: list[FilesYearsAdd] = Field(min_length=1)


class ExtensionChange(_Form):
    months: int = Field(ge=1)


_PAYLOADS: dict[ChangeKind, type[BaseModel]] = {
    ChangeKind.PERSONNEL: PersonnelChange,
    ChangeKind.FILES_YEARS: FilesYearsChange,
    ChangeKind.COLUMNS: ColumnsChange,
    ChangeKind.WORKING_DAYS: WorkingDays,
    ChangeKind.EXTENSION: ExtensionChange,
}


def parse_payload(kind: ChangeKind, payload: dict[str, Any]) -> BaseModel:
    """Validate a change's payload for its kind, naming the field on error."""
    try:
        return _PAYLOADS[kind].model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise InputError(f"{kind.value} change: {problems}") from exc


def _changes(session: Session, project: Project, kind: ChangeKind) -> list[ChangeRequest]:
    return list(session.execute(
        select(ChangeRequest).where(ChangeRequest.project_id == project.id,
                                    ChangeRequest.kind == kind.value)
        .order_by(ChangeRequest.id)
    ).scalars())


def get_change(session: Session, change_id: int) -> ChangeRequest:
    change = session.get(ChangeRequest, change_id)
    if change is None:
        raise NotFound(f"no change request #{change_id}")
    return change


def _check_limits(
    session: Session, settings: Settings, project: Project, kind: ChangeKind, body: BaseModel,
    base_dir: Path | None,
) -> None:
    limits = projects_policy(settings).changes
    policy = projects_policy(settings)
    earlier = [c for c in _changes(session, project, kind) if c.status in _COUNTED]
    day = today()
    if kind is ChangeKind.PERSONNEL:
        people = len(body.add) + len(body.remove)
        if people == 0:
            raise InputError("a personnel change adds or removes at least one person")
        if people > limits.personnel_max_people:
            raise ChangeLimitExceeded(
                f"a personnel change may involve at most {limits.personnel_max_people} people; "
                f"this one has {people} (projects.yaml changes.personnel_max_people)")
        if earlier:
            last: datetime = earlier[-1].decided_at or earlier[-1].requested_at
            last_day = local_date(last)
            next_allowed = add_months(last_day, limits.personnel_interval_months)
            if day < next_allowed:
                raise ChangeLimitExceeded(
                    f"personnel may change once every {limits.personnel_interval_months} "
                    f"months; the last change was on {last_day}, the next is possible from "
                    f"{next_allowed}")
        members = member_names(project)
        for name in body.remove:
            if name not in members:
                raise InputError(f"{name} is not a member of {project.code}")
            if name == project.applicant:
                raise InputError(f"the applicant {name} cannot be removed from their project")
        for person in body.add:
            if person.username in members:
                raise InputError(f"{person.username} is a member of {project.code} already")
            user = get_user(session, person.username)
            check_may_join_project(person.username, user.role_names)
            if not same_unit(person.unit, project.institution):
                if not person.proof:
                    raise InputError(
                        f"{person.username} belongs to {person.unit!r}, not "
                        f"{project.institution!r}; attach proof of participation (proof:)")
                if base_dir is None or not (base_dir / person.proof).is_file():
                    raise InputError(f"proof of participation {person.proof} does not exist")
    elif kind is ChangeKind.FILES_YEARS:
        if len(earlier) >= limits.files_years_max:
            raise ChangeLimitExceeded(
                f"files or years may be added at most {limits.files_years_max} time(s) "
                f"(projects.yaml changes.files_years_max); {project.code} used it already")
        have = set(approved_file_years(project))
        cols = approved_columns(project)
        requests = []
        for add in body.add:
            for year in add.years:
                if (add.file, year) in have:
                    raise InputError(f"{add.file} {year} is part of {project.code} already")
            if add.file in cols and add.columns:
                raise InputError(f"{add.file} is approved already; new years get its approved "
                                 "columns (add columns with a columns change)")
            if add.file not in cols:
                requests.append(DataRequest(file=add.file, years=add.years, columns=add.columns))
            else:
                requests.append(DataRequest(file=add.file, years=add.years,
                                            columns={c: "approved" for c in cols[add.file]}))
        problems = check_data_request(requests, load_catalog(), today=day)
        if problems:
            raise InputError("files/years change refused:\n  - " + "\n  - ".join(problems))
    elif kind is ChangeKind.COLUMNS:
        if len(earlier) >= limits.columns_max:
            raise ChangeLimitExceeded(
                f"columns may be added at most {limits.columns_max} times "
                f"(projects.yaml changes.columns_max); {project.code} has used all of them")
        cols = approved_columns(project)
        requested = {(c.file, c.column) for c in project.columns}
        requests = []
        for add in body.add:
            if add.file not in cols:
                raise InputError(f"{add.file} is not an approved file of {project.code}; "
                                 "add files with a files_years change")
            for column in add.columns:
                if (add.file, column) in requested:
                    raise InputError(f"{add.file}.{column} was requested already")
            requests.append(DataRequest(file=add.file, years=[day.year], columns=add.columns))
        problems = check_data_request(requests, load_catalog(), today=day)
        if problems:
            raise InputError("columns change refused:\n  - " + "\n  - ".join(problems))
    elif kind is ChangeKind.WORKING_DAYS:
        if body.in_half_days == 0:
            raise InputError("a working-days change adds at least one half day")
    elif kind is ChangeKind.EXTENSION:
        used = sum(json.loads(c.payload)["months"] for c in earlier)
        if used + body.months > policy.extension_max_months:
            raise ChangeLimitExceeded(
                f"a project may be extended by at most {policy.extension_max_months} months in "
                f"all; {project.code} has {used} already, {body.months} more is too many "
                "(a longer need is a new application)")


def request_change(
    session: Session, settings: Settings, *, actor: str, code: str, kind: ChangeKind | str,
    payload: dict[str, Any], reason: str, base_dir: Path | None = None,
) -> ChangeRequest:
    """The applicant asks for a change or an extension of an active project."""
    who = resolve_actor(session, actor)
    project = get_project(session, code)
    if who.username != project.applicant:
        raise PermissionDenied(f"{who.username} is not the applicant of {code}; "
                               f"only {project.applicant} requests changes")
    change_kind = ChangeKind(kind)
    if project.status != Status.ACTIVE.value:
        raise InputError(f"{code} is {project.status}; changes are possible while it is active")
    if not reason.strip():
        raise InputError("state the reason for the change")
    body = parse_payload(change_kind, payload)
    _check_limits(session, settings, project, change_kind, body, base_dir)
    stored = body.model_dump(mode="json")
    change = ChangeRequest(project_id=project.id, kind=change_kind.value,
                           status=ChangeStatus.PENDING.value, payload=json.dumps(stored),
                           requested_by=who.username, requested_at=clock.now(),
                           decision_reason=None)
    session.add(change)
    session.flush()
    if change_kind is ChangeKind.PERSONNEL and base_dir is not None:
        for person in body.add:
            if person.proof:
                doc = store_document(session, settings, project=project,
                                     source=base_dir / person.proof, kind="proof")
                stored_person = next(p for p in stored["add"] if p["username"] == person.username)
                stored_person["proof_document_id"] = doc.id
        change.payload = json.dumps(stored)
    audit.record(session, settings, actor=who.username, role=Role.RESEARCHER.value,
                 action="project.change_request", obj=f"change:{change.id}", project=code,
                 reason=reason, details={"kind": change_kind.value, "payload": stored})
    return change


def change_fee_lines(
    session: Session, settings: Settings, project: Project, change: ChangeRequest
) -> list[FeeLine]:
    """What a change costs under the fee schedule (seed 003 §10(三))."""
    schedule = fees.fee_schedule(settings)
    kind = ChangeKind(change.kind)
    payload = json.loads(change.payload)
    lines: list[FeeLine] = []
    if kind is ChangeKind.COLUMNS:
        earlier = [c for c in _changes(session, project, kind)
                   if c.status in (ChangeStatus.APPROVED.value, ChangeStatus.APPLIED.value)
                   and c.id != change.id]
        nth = len(earlier) + 1
        cols = approved_columns(project)
        added = {a["file"]: len(a["columns"]) for a in payload["add"]}
        total_after = {f: len(cols.get(f, [])) + n for f, n in added.items()}
        years = [fy for fy in approved_file_years(project) if fy[0] in added]
        lines = fees.column_change_lines(schedule, nth_change=nth, file_years=years,
                                         added=added, total_after=total_after)
    elif kind is ChangeKind.FILES_YEARS:
        cols = approved_columns(project)
        for add in payload["add"]:
            n = len(cols[add["file"]]) if add["file"] in cols else len(add["columns"])
            lines += fees.data_processing_lines(
                schedule, [(add["file"], y) for y in add["years"]], {add["file"]: n},
                kind="change_files_years", note="(added by change)")
    elif kind is ChangeKind.WORKING_DAYS:
        lines = fees.working_day_lines(schedule, half_days=payload["half_days"],
                                       full_days=payload["full_days"],
                                       computers=project.computers)
    elif kind is ChangeKind.EXTENSION:
        lines = [fees.retention_line(schedule, months=payload["months"])]
    waiver = fees.waiver_line(schedule, lines, project.project_type)
    return lines + ([waiver] if waiver else [])


def decide_change(
    session: Session, settings: Settings, *, actor: str, change_id: int, approve: bool,
    reason: str,
) -> FeeNotice | None:
    """A steward approves (fee notice, or in effect at once when free) or rejects a change."""
    change = get_change(session, change_id)
    project = session.get(Project, change.project_id)
    if project is None:
        raise NotFound(f"change #{change_id} names a missing project")
    steward = require(session, actor, Role.STEWARD)
    check_may_review_application(steward.username, member_names(project))
    if change.status != ChangeStatus.PENDING.value:
        raise InputError(f"change #{change_id} is {change.status}; only a pending change is "
                         "decided")
    if not reason.strip():
        raise InputError("give a reason for the decision")
    change.decided_by, change.decided_at, change.decision_reason = actor, clock.now(), reason
    if not approve:
        change.status = ChangeStatus.REJECTED.value
        audit.record(session, settings, actor=steward.username, role=Role.STEWARD.value,
                     action="project.change_reject", obj=f"change:{change.id}",
                     project=project.code, reason=reason)
        return None
    change.status = ChangeStatus.APPROVED.value
    audit.record(session, settings, actor=steward.username, role=Role.STEWARD.value,
                 action="project.change_approve", obj=f"change:{change.id}",
                 project=project.code, reason=reason, details={"kind": change.kind})
    lines = change_fee_lines(session, settings, project, change)
    notice = None
    if lines:
        notice = notices.issue(session, settings, project=project,
                               purpose=f"change:{change.kind}", lines=lines, issued_on=today(),
                               window_days=projects_policy(settings).payment_window_days,
                               actor=steward.username, change_id=change.id)
    if notice is None or notices.is_settled(notice):
        apply_change(session, settings, change_id=change.id, actor=steward)
    return notice


def apply_change(session: Session, settings: Settings, *, change_id: int, actor: Actor) -> None:
    """Put an approved (and paid) change into effect."""
    change = get_change(session, change_id)
    project = session.get(Project, change.project_id)
    if project is None:
        raise NotFound(f"change #{change_id} names a missing project")
    if change.status != ChangeStatus.APPROVED.value:
        raise InputError(f"change #{change_id} is {change.status}; cannot apply it")
    payload = json.loads(change.payload)
    kind = ChangeKind(change.kind)
    moment = clock.now()
    tag = f"change #{change.id}"
    if kind is ChangeKind.PERSONNEL:
        for name in payload["remove"]:
            for m in current_members(project):
                if m.username == name:
                    m.removed_at = moment
        for p in payload["add"]:
            project.members.append(ProjectMember(
                username=p["username"], project_role=p["role"], unit=p["unit"],
                proof_document_id=p.get("proof_document_id"), added_at=moment))
    elif kind is ChangeKind.COLUMNS:
        for add in payload["add"]:
            for column, why in add["columns"].items():
                project.columns.append(ProjectColumn(
                    file=add["file"], column=column, reason=why,
                    decision=Decision.APPROVED.value, decision_reason=tag, change_id=change.id))
    elif kind is ChangeKind.FILES_YEARS:
        cols = approved_columns(project)
        for add in payload["add"]:
            if add["file"] not in cols:
                for column, why in add["columns"].items():
                    project.columns.append(ProjectColumn(
                        file=add["file"], column=column, reason=why,
                        decision=Decision.APPROVED.value, decision_reason=tag,
                        change_id=change.id))
            for year in add["years"]:
                project.file_years.append(ProjectFileYear(
                    file=add["file"], year=year, decision=Decision.APPROVED.value,
                    decision_reason=tag, change_id=change.id))
    elif kind is ChangeKind.WORKING_DAYS:
        project.approved_half_days += payload["half_days"] + 2 * payload["full_days"]
    elif kind is ChangeKind.EXTENSION:
        project.extension_months += payload["months"]
        period = usage_period(project, projects_policy(settings))
        project.period_end = period.end if period else None
    change.status = ChangeStatus.APPLIED.value
    session.flush()
    audit.record(session, settings, actor=actor.username,
                 role=actor.primary_role(Role.CUSTODIAN), action="project.change_apply",
                 obj=f"change:{change.id}", project=project.code,
                 details={"kind": kind.value, "period_end": project.period_end,
                          "approved_half_days": project.approved_half_days})


def void_change(session: Session, settings: Settings, *, change_id: int) -> None:
    """Its fee notice went unpaid: the change lapses (called by the daily job)."""
    change = get_change(session, change_id)
    change.status = ChangeStatus.VOID.value
    project = session.get(Project, change.project_id)
    audit.record(session, settings, actor="system", role="system", action="project.change_void",
                 obj=f"change:{change.id}", project=project.code if project else None,
                 reason="fee notice unpaid in time")


def list_changes(session: Session, project: Project) -> list[ChangeRequest]:
    return list(session.execute(
        select(ChangeRequest).where(ChangeRequest.project_id == project.id)
        .order_by(ChangeRequest.id)
    ).scalars())


def change_summary(change: ChangeRequest) -> dict[str, object]:
    return {"id": change.id, "kind": change.kind, "status": change.status,
            "payload": json.loads(change.payload), "requested_by": change.requested_by,
            "requested_at": change.requested_at, "decided_by": change.decided_by,
            "decision_reason": change.decision_reason}
