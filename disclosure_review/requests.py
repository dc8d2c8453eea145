"""Export requests: the review queue, the release to the project outbox, and recall.

Owns the request lifecycle. States are :class:`Status`; the allowed moves are the ONE table
:data:`TRANSITIONS` (each with the :class:`Owner` who may make it); :data:`STATUS_OWNERS`
says who acts next in each state; :func:`set_status` checks the table, then the actor, then
stores the status and its audit entry in the caller's transaction. Who-may rules come from
:mod:`enclave.roles`.

Path of a request::

    draft → submitted → (automatic check) → blocked (fail)        → withdrawn
                                          → queued (pass/review) → approved → released → recalled
                                                                 → rejected
                                                                 → changes_requested → withdrawn

Files are copied into ``<home>/exports/<code>/files/`` (read-only, SHA-256 recorded) with
the automated report ``check_report.json``; cell-membership sidecars (see
:mod:`disclosure_review.cells`) go to ``cells/`` and feed the differencing rule at
submission and the project's differencing history at release.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from disclosure_review.cells import is_sidecar, read_cells, sidecar_for
from disclosure_review.checker import check_paths
from disclosure_review.context import StoreProjectContext
from disclosure_review.differencing import CellMembership, DifferencingHistory
from disclosure_review.errors import ManifestError, UnknownProjectError
from disclosure_review.figures import reencode_image
from disclosure_review.model import CheckReport, Verdict
from disclosure_review.policy import POLICY_FILE, DisclosurePolicy, load_policy
from disclosure_review.release import ReleaseVerificationError, sign_manifest
from enclave import audit, clock
from enclave.checksums import sha256_file
from enclave.config import Settings
from enclave.errors import EnclaveError, InputError, NotFound, PermissionDenied
from enclave.keys import KeyStore
from enclave.roles import (
    Role,
    check_distinct_persons,
    check_has_role,
    check_is_project_member,
    check_may_review_output,
)
from enclave.state.models import ExportDecision, ExportFile, ExportRequest, Notification, Project
from enclave.users import require, resolve_actor
from enclave.yaml_text import parse_yaml

SYSTEM = "system"
EXPORTS_FOLDER = "exports"
FIGURE_SUFFIXES = {".png", ".jpg", ".jpeg"}
# Roles that may read any request (reviewers decide, stewards and custodians run the
# service, auditors sample); researchers see their own projects' requests only.
OVERSIGHT_ROLES = (Role.REVIEWER, Role.STEWARD, Role.CUSTODIAN, Role.AUDITOR)


class Status(StrEnum):
    DRAFT = "draft"  # files being copied; never visible outside one transaction
    SUBMITTED = "submitted"  # files frozen, automatic check running
    BLOCKED = "blocked"  # the automatic check failed; the author withdraws and fixes
    QUEUED = "queued"  # waiting for reviewer(s)
    APPROVED = "approved"  # enough approvals; release runs
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"  # the author withdraws and submits a new request
    RELEASED = "released"  # in the project's outbox with a signed manifest
    WITHDRAWN = "withdrawn"
    RECALLED = "recalled"  # found disclosive after release; the PI was told to destroy it


class Owner(StrEnum):
    AUTHOR = "author"
    REVIEWER = "reviewer"
    SYSTEM = "system"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"


# (from, to) → who may make the move. The one place the lifecycle is defined.
TRANSITIONS: dict[tuple[Status, Status], Owner] = {
    (Status.DRAFT, Status.SUBMITTED): Owner.AUTHOR,
    (Status.SUBMITTED, Status.BLOCKED): Owner.SYSTEM,
    (Status.SUBMITTED, Status.QUEUED): Owner.SYSTEM,
    (Status.BLOCKED, Status.WITHDRAWN): Owner.AUTHOR,
    (Status.QUEUED, Status.APPROVED): Owner.REVIEWER,
    (Status.QUEUED, Status.REJECTED): Owner.REVIEWER,
    (Status.QUEUED, Status.CHANGES_REQUESTED): Owner.REVIEWER,
    (Status.QUEUED, Status.WITHDRAWN): Owner.AUTHOR,
    (Status.CHANGES_REQUESTED, Status.WITHDRAWN): Owner.AUTHOR,
    (Status.APPROVED, Status.RELEASED): Owner.SYSTEM,
    (Status.RELEASED, Status.RECALLED): Owner.REVIEWER,
}

# Who is expected to act next in each status (None: terminal). A test asserts completeness.
STATUS_OWNERS: dict[Status, Owner | None] = {
    Status.DRAFT: Owner.AUTHOR,
    Status.SUBMITTED: Owner.SYSTEM,
    Status.BLOCKED: Owner.AUTHOR,
    Status.QUEUED: Owner.REVIEWER,
    Status.APPROVED: Owner.SYSTEM,
    Status.CHANGES_REQUESTED: Owner.AUTHOR,
    Status.RELEASED: Owner.REVIEWER,
    Status.REJECTED: None,
    Status.WITHDRAWN: None,
    Status.RECALLED: None,
}

# The audit action written on entering each status.
STATUS_AUDIT_EVENT: dict[Status, str] = {
    Status.DRAFT: "export.draft",
    Status.SUBMITTED: "export.submit",
    Status.BLOCKED: "export.block",
    Status.QUEUED: "export.queue",
    Status.APPROVED: "export.approve",
    Status.REJECTED: "export.reject",
    Status.CHANGES_REQUESTED: "export.request_changes",
    Status.RELEASED: "export.release",
    Status.WITHDRAWN: "export.withdraw",
    Status.RECALLED: "export.recall",
}

_DECISION_TARGET = {
    Decision.APPROVE: Status.APPROVED,
    Decision.REJECT: Status.REJECTED,
    Decision.REQUEST_CHANGES: Status.CHANGES_REQUESTED,
}


class ExportRequestError(EnclaveError):
    """Base of the export-request errors."""


class InvalidTransitionError(ExportRequestError):
    """The request's status does not allow this move (names both states)."""

    exit_code = 2


class ExportRequestNotFound(NotFound):
    """No export request with this code."""


class ProjectNotActiveError(PermissionDenied):
    """Outputs leave only active projects."""


# -- projects (issue 4's tables, read-only) -------------------------------------------------
def get_project(session: Session, code: str) -> Project:
    project = session.execute(select(Project).where(Project.code == code)).scalar_one_or_none()
    if project is None:
        raise UnknownProjectError(f"no project {code!r}; check the code with `enclave project list`")
    return project


def project_members(project: Project) -> set[str]:
    """Usernames of the project's current members (removed members excluded)."""
    return {m.username for m in project.members if m.removed_at is None}


def principal_investigators(project: Project) -> list[str]:
    """The project's current PI(s); the applicant when no member carries role ``pi``."""
    pis = sorted(m.username for m in project.members
                 if m.removed_at is None and m.project_role == "pi")
    return pis or [project.applicant]


# -- lifecycle --------------------------------------------------------------------------------
def _check_transition(request: ExportRequest, to: Status) -> Owner:
    frm = Status(request.status)
    owner = TRANSITIONS.get((frm, to))
    if owner is None:
        allowed = sorted(t.value for (f, t) in TRANSITIONS if f is frm)
        raise InvalidTransitionError(
            f"export request {request.code} is {frm.value}; it cannot become {to.value} "
            f"(from {frm.value}: {', '.join(allowed) or 'no further moves'})"
        )
    return owner


def _check_owner(session: Session, request: ExportRequest, owner: Owner, actor: str) -> str:
    """Refuse unless ``actor`` may act as ``owner`` on ``request``; return the audit role."""
    if owner is Owner.SYSTEM:
        if actor != SYSTEM:
            raise PermissionDenied(f"only the system moves export request {request.code} here")
        return SYSTEM
    if owner is Owner.AUTHOR:
        require(session, actor, Role.RESEARCHER)
        if actor != request.author:
            raise PermissionDenied(
                f"{actor} is not the author of export request {request.code} "
                f"({request.author} is)"
            )
        check_is_project_member(actor, project_members(get_project(session, request.project_code)),
                                request.project_code)
        return Role.RESEARCHER.value
    require(session, actor, Role.REVIEWER)
    check_may_review_output(actor, project_members(get_project(session, request.project_code)))
    return Role.REVIEWER.value


def set_status(
    session: Session,
    settings: Settings,
    request: ExportRequest,
    to: Status,
    *,
    actor: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Move ``request`` to ``to``: check the table, then the actor, then store and audit.

    Raises
    ------
    InvalidTransitionError
        The move is not in :data:`TRANSITIONS`.
    PermissionDenied, SeparationOfDutiesError
        ``actor`` is not the owner of the move.
    """
    owner = _check_transition(request, to)
    role = _check_owner(session, request, owner, actor)
    frm = request.status
    request.status = to.value
    request.status_changed_at = clock.now()
    audit.record(
        session, settings, actor=actor, role=role, action=STATUS_AUDIT_EVENT[to],
        obj=request.code, project=request.project_code, reason=reason,
        details={"from": frm, "to": to.value, **(details or {})},
    )


# -- submission -------------------------------------------------------------------------------
def _make_writable(folder: Path) -> None:
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for name in dirs:
            os.chmod(Path(root) / name, 0o755)
        for name in files:
            os.chmod(Path(root) / name, 0o644)


def _freeze(folder: Path) -> None:
    """Make a folder tree read-only (files 0444, folders 0555)."""
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            os.chmod(Path(root) / name, 0o444)
        for name in dirs:
            os.chmod(Path(root) / name, 0o555)
    os.chmod(folder, 0o555)


def _copy_manifest(manifest: Path, sources: dict[Path, str], folder: Path) -> Path:
    """Rewrite a request manifest to point at the copies under ``files/``."""
    try:
        text = manifest.read_text(encoding="utf-8")
        data = json.loads(text) if manifest.suffix.lower() == ".json" else parse_yaml(text)
        entries = data["files"]
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ManifestError(f"manifest {manifest}: unreadable or without 'files' ({exc})") from exc
    for i, entry in enumerate(entries):
        original = (manifest.parent / str(entry.get("path", ""))).resolve()
        if original not in sources:
            raise ManifestError(
                f"manifest {manifest}: files[{i}] path {entry.get('path')!r} is not one of the "
                "files of this request"
            )
        entry["path"] = f"files/{sources[original]}"
    target = folder / "manifest.json"
    target.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return target


def _request_cells(code: str, name: str, cells: Sequence[CellMembership]) -> list[CellMembership]:
    # History ids are request-scoped: the toolkit's own ids repeat across requests and
    # record_release replaces an earlier record with the same id.
    output_id = f"{code}/{name}"
    return [replace(c, output_id=output_id) for c in cells]


def request_policy(settings: Settings) -> DisclosurePolicy:
    """The deployment's disclosure policy (``<policies_dir>/disclosure.yaml``)."""
    return load_policy(base=settings.policies_dir / POLICY_FILE)


def _run_check(
    request: ExportRequest,
    folder: Path,
    copies: list[Path],
    manifest: Path | None,
    policy: DisclosurePolicy,
    context: StoreProjectContext,
    cells_by_name: dict[str, list[CellMembership]],
    progress: Callable[[Path], None] | None,
) -> CheckReport:
    report = check_paths(copies, manifest=manifest, policy=policy, project=context,
                         progress=progress)
    labels = {str(p): p.name for p in copies}
    findings = [replace(f, file=labels.get(f.file, f.file)) for f in report.findings]
    new_cells = [c for name in sorted(cells_by_name)
                 for c in _request_cells(request.code, name, cells_by_name[name])]
    if new_cells:
        history = DifferencingHistory(context.differencing_store,
                                      threshold=policy.differencing_threshold)
        findings.extend(history.check(new_cells))
    return CheckReport(findings=tuple(findings), policy=report.policy,
                       files=tuple(p.name for p in copies))


def create_request(
    session: Session,
    settings: Settings,
    *,
    actor: str,
    project: str,
    paths: Sequence[Path],
    purpose: str,
    manifest: Path | None = None,
    progress: Callable[[Path], None] | None = None,
) -> ExportRequest:
    """Freeze output files into a new request, run the automatic check, queue or block it.

    Parameters
    ----------
    actor : str
        The researcher submitting; must be a current member of the active ``project``.
    project : str
        Project code.
    paths : sequence of Path
        Output files (distinct file names). A sidecar ``<file>.cells.parquet|json`` next to
        a file is taken along automatically.
    purpose : str
        What is exported and why (DESIGN §6), shown to reviewers and in the manifest.
    manifest : Path, optional
        Checker manifest declaring each file's kind and columns.
    progress : callable, optional
        Called with each file after it is checked.

    Returns
    -------
    ExportRequest
        Status ``queued`` (pass or review) or ``blocked`` (fail); ``check_report`` holds
        the automated report.

    Raises
    ------
    PermissionDenied
        Not a researcher, not a member, or the project is not active.
    InputError
        No files, missing files, duplicate names, empty purpose, bad manifest or sidecar.
    """
    require(session, actor, Role.RESEARCHER)
    proj = get_project(session, project)
    check_is_project_member(actor, project_members(proj), proj.code)
    if proj.status != "active":
        raise ProjectNotActiveError(
            f"project {proj.code} is {proj.status}; outputs leave only active projects"
        )
    if not purpose.strip():
        raise InputError("state the purpose: what is exported and why (--purpose)")
    sources = [Path(p) for p in paths if not is_sidecar(Path(p))]
    if not sources:
        raise InputError("give at least one output file to export")
    names: dict[str, Path] = {}
    for path in sources:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        if path.name in names:
            raise InputError(
                f"{path}: another file of this request is also named {path.name!r} "
                f"({names[path.name]}); rename one"
            )
        names[path.name] = path
    policy = request_policy(settings)
    moment = clock.now()
    request = ExportRequest(
        code="pending", project_code=proj.code, author=actor, purpose=purpose.strip(),
        status=Status.DRAFT.value, folder="", created_at=moment, status_changed_at=moment,
        two_reviewers=int(policy.two_reviewers),
    )
    session.add(request)
    session.flush()
    request.code = f"EXP-{request.id:06d}"
    folder = settings.home / EXPORTS_FOLDER / request.code
    request.folder = str(folder)
    audit.record(session, settings, actor=actor, role=Role.RESEARCHER.value,
                 action=STATUS_AUDIT_EVENT[Status.DRAFT], obj=request.code,
                 project=proj.code, details={"files": sorted(names)})
    try:
        folder.mkdir(parents=True, exist_ok=False)
        (folder / "files").mkdir()
        copies: list[Path] = []
        cells_by_name: dict[str, list[CellMembership]] = {}
        for name, source in names.items():
            target = folder / "files" / name
            shutil.copyfile(source, target)
            record = ExportFile(name=name, sha256=sha256_file(target), size=target.stat().st_size)
            sidecar = sidecar_for(source)
            if sidecar is not None:
                (folder / "cells").mkdir(exist_ok=True)
                kept = folder / "cells" / sidecar.name
                shutil.copyfile(sidecar, kept)
                cells_by_name[name] = read_cells(kept)
                record.cells_name, record.cells_sha256 = sidecar.name, sha256_file(kept)
            request.files.append(record)
            copies.append(target)
        kept_manifest = (
            _copy_manifest(manifest, {p.resolve(): n for n, p in names.items()}, folder)
            if manifest is not None else None
        )
        set_status(session, settings, request, Status.SUBMITTED, actor=actor,
                   details={"files": {f.name: f.sha256 for f in request.files}})
        context = StoreProjectContext(proj.code, settings.projects_dir / proj.code)
        report = _run_check(request, folder, copies, kept_manifest, policy, context,
                            cells_by_name, progress)
        payload = report.to_dict()
        (folder / "check_report.json").write_text(
            json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
        request.check_report = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        request.check_verdict = report.verdict.value
        request.policy_label = report.policy
        target_status = Status.BLOCKED if report.verdict is Verdict.FAIL else Status.QUEUED
        set_status(session, settings, request, target_status, actor=SYSTEM,
                   details={"verdict": report.verdict.value, "findings": len(report.findings),
                            "rules": sorted({f.rule for f in report.findings})})
        _freeze(folder)
    except BaseException:
        # The transaction rolls back; leave no orphan folder behind it.
        if folder.exists():
            _make_writable(folder)
            shutil.rmtree(folder)
        raise
    return request


# -- lookup and visibility --------------------------------------------------------------------
def get_request(session: Session, code: str) -> ExportRequest:
    """The request with ``code`` (e.g. ``EXP-000001``), or :class:`ExportRequestNotFound`."""
    request = session.execute(
        select(ExportRequest).where(ExportRequest.code == code)
    ).scalar_one_or_none()
    if request is None:
        raise ExportRequestNotFound(f"no export request {code!r}; see `enclave review list`")
    return request


def check_may_view(session: Session, actor: str, request: ExportRequest) -> None:
    """Project members see their project's requests; oversight roles see all."""
    who = resolve_actor(session, actor)
    if who.roles & {r.value for r in OVERSIGHT_ROLES}:
        return
    members = project_members(get_project(session, request.project_code))
    if actor in members:
        return
    check_has_role(actor, who.roles, OVERSIGHT_ROLES)


def list_requests(
    session: Session, *, status: Status | None = None, project: str | None = None
) -> Sequence[ExportRequest]:
    """Requests in code order, optionally filtered by status and project."""
    stmt = select(ExportRequest).order_by(ExportRequest.id)
    if status is not None:
        stmt = stmt.where(ExportRequest.status == status.value)
    if project is not None:
        stmt = stmt.where(ExportRequest.project_code == project)
    return session.execute(stmt).scalars().all()


def request_summary(request: ExportRequest, *, with_report: bool = False) -> dict[str, Any]:
    """JSON-ready view of a request (the report's findings only when asked)."""
    out: dict[str, Any] = {
        "code": request.code,
        "project": request.project_code,
        "author": request.author,
        "purpose": request.purpose,
        "status": request.status,
        "next_actor": (STATUS_OWNERS[Status(request.status)] or "none"),
        "created_at": request.created_at.isoformat(),
        "status_changed_at": request.status_changed_at.isoformat(),
        "verdict": request.check_verdict,
        "two_reviewers": bool(request.two_reviewers),
        "files": [{"name": f.name, "sha256": f.sha256, "size": f.size,
                   "cells": f.cells_name} for f in request.files],
        "decisions": [{"reviewer": d.reviewer, "decision": d.decision, "reason": d.reason,
                       "at": d.decided_at.isoformat()} for d in request.decisions],
        "outbox": request.outbox,
        "manifest_sha256": request.manifest_sha256,
        "released_at": request.released_at.isoformat() if request.released_at else None,
        "recalled_at": request.recalled_at.isoformat() if request.recalled_at else None,
        "recall_reason": request.recall_reason,
    }
    if with_report:
        out["check_report"] = json.loads(request.check_report or "{}")
    return out


# -- author actions ---------------------------------------------------------------------------
def withdraw(session: Session, settings: Settings, *, actor: str, code: str,
             reason: str | None = None) -> ExportRequest:
    """The author withdraws a blocked, queued or returned request."""
    request = get_request(session, code)
    set_status(session, settings, request, Status.WITHDRAWN, actor=actor, reason=reason)
    return request


# -- review -----------------------------------------------------------------------------------
def decide(
    session: Session,
    settings: Settings,
    *,
    actor: str,
    code: str,
    decision: Decision,
    reason: str,
) -> ExportRequest:
    """Record a reviewer's decision; enough approvals release the request at once.

    With policy ``two_reviewers`` (fixed on the request at submission) the first approval
    is recorded and the request stays queued; a second, different reviewer's approval
    approves and releases it.

    Raises
    ------
    InputError
        Empty reason.
    InvalidTransitionError
        The request is not queued.
    SeparationOfDutiesError
        The reviewer is a member of the project, or approves a second time.
    """
    if not reason.strip():
        raise InputError("a review decision needs a reason (--reason)")
    request = get_request(session, code)
    target = _DECISION_TARGET[decision]
    owner = _check_transition(request, target)
    role = _check_owner(session, request, owner, actor)
    approvals = [d.reviewer for d in request.decisions if d.decision == Decision.APPROVE]
    if decision is Decision.APPROVE:
        for earlier in approvals:
            check_distinct_persons(earlier, actor, f"release of export request {code}")
    moment = clock.now()
    request.decisions.append(ExportDecision(reviewer=actor, decision=decision.value,
                                            reason=reason.strip(), decided_at=moment))
    needed = 2 if request.two_reviewers else 1
    audit.record(session, settings, actor=actor, role=role, action=f"export.review.{decision}",
                 obj=code, project=request.project_code, reason=reason.strip(),
                 details={"approvals": len(approvals) + (decision is Decision.APPROVE),
                          "needed": needed})
    if decision is Decision.APPROVE and len(approvals) + 1 < needed:
        session.flush()
        return request
    set_status(session, settings, request, target, actor=actor, reason=reason.strip())
    if target is Status.APPROVED:
        release(session, settings, request)
    return request


def release(session: Session, settings: Settings, request: ExportRequest) -> Path:
    """Copy an approved request to the project outbox with a signed manifest.

    Figures are re-encoded (pixels only). The copied files are checked against the
    checksums recorded at submission first, so a changed request folder never leaves.
    Released cells are added to the project's differencing history.

    Returns
    -------
    Path
        ``<projects_dir>/<project>/outbox/<code>``.
    """
    _check_transition(request, Status.RELEASED)
    folder = Path(request.folder)
    outbox = settings.projects_dir / request.project_code / "outbox" / request.code
    if outbox.exists():
        raise ExportRequestError(f"{outbox} exists already; a request is released once")
    policy = request_policy(settings)
    context = StoreProjectContext(request.project_code,
                                  settings.projects_dir / request.project_code)
    outbox.mkdir(parents=True)
    released: list[dict[str, Any]] = []
    cells: dict[str, list[CellMembership]] = {}
    try:
        for record in request.files:
            source = folder / "files" / record.name
            if not source.is_file() or sha256_file(source) != record.sha256:
                raise ReleaseVerificationError(
                    f"{source}: missing or changed since submission (SHA-256 recorded "
                    f"{record.sha256[:16]}…); the request folder was tampered with"
                )
            target = outbox / record.name
            reencoded = source.suffix.lower() in FIGURE_SUFFIXES
            if reencoded:
                reencode_image(source, target)
            else:
                shutil.copyfile(source, target)
            released.append({"name": record.name, "sha256": sha256_file(target),
                             "size": target.stat().st_size, "submitted_sha256": record.sha256,
                             "reencoded": reencoded})
            if record.cells_name:
                cells[record.name] = _request_cells(
                    request.code, record.name, read_cells(folder / "cells" / record.cells_name))
        report = json.loads(request.check_report or "{}")
        moment = clock.now()
        manifest = {
            "format": "enclave-release-1",
            "request": request.code,
            "project": request.project_code,
            "author": request.author,
            "purpose": request.purpose,
            "submitted_at": request.created_at.isoformat(),
            "released_at": moment.isoformat(),
            "files": released,
            "reviewers": [{"reviewer": d.reviewer, "decision": d.decision, "reason": d.reason,
                           "decided_at": d.decided_at.isoformat()} for d in request.decisions],
            "checker": {"verdict": report.get("verdict"), "policy": report.get("policy"),
                        "findings": len(report.get("findings", []))},
            "signed_with": "audit_signing",
        }
        key = KeyStore.for_home(settings.keys_dir).audit_signing_key()
        digest = sign_manifest(outbox, manifest, key)
        for name in sorted(cells):
            DifferencingHistory(context.differencing_store,
                                threshold=policy.differencing_threshold
                                ).record_release(f"{request.code}/{name}", cells[name])
        _freeze(outbox)
    except BaseException:
        _make_writable(outbox)
        shutil.rmtree(outbox)
        raise
    request.outbox, request.manifest_sha256, request.released_at = str(outbox), digest, moment
    set_status(session, settings, request, Status.RELEASED, actor=SYSTEM,
               details={"outbox": str(outbox), "manifest_sha256": digest,
                        "files": {f["name"]: f["sha256"] for f in released},
                        "cells_recorded": sum(len(v) for v in cells.values())})
    return outbox


# -- recall and notifications ------------------------------------------------------------------
def recall(session: Session, settings: Settings, *, actor: str, code: str,
           reason: str) -> list[Notification]:
    """Mark a released output recalled and tell the project's PI(s) to destroy it.

    Returns
    -------
    list[Notification]
        One notification per PI.
    """
    if not reason.strip():
        raise InputError("a recall needs a reason (--reason): why the output is disclosive")
    request = get_request(session, code)
    project = get_project(session, request.project_code)
    moment = clock.now()
    pis = principal_investigators(project)
    set_status(session, settings, request, Status.RECALLED, actor=actor, reason=reason.strip(),
               details={"notified": pis})
    request.recalled_at, request.recall_reason = moment, reason.strip()
    notes = []
    for pi in pis:
        note = Notification(
            username=pi, project_code=project.code, kind="export.recall", object=code,
            subject=f"Output {code} of project {project.code} was recalled: destroy every copy",
            body=(f"The output released as {code} ({', '.join(f.name for f in request.files)}) "
                  f"was found disclosive and is recalled: {reason.strip()}. Destroy every copy "
                  "made from the outbox and confirm to the service centre (DESIGN §6)."),
            created_at=moment,
        )
        session.add(note)
        notes.append(note)
    session.flush()
    return notes


def list_notifications(session: Session, *, username: str,
                       unread_only: bool = False) -> Sequence[Notification]:
    """A user's notifications, newest first."""
    resolve_actor(session, username)
    stmt = select(Notification).where(Notification.username == username)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    return session.execute(stmt.order_by(Notification.id.desc())).scalars().all()


def notification_summary(note: Notification) -> dict[str, Any]:
    """JSON-ready view of one notification."""
    return {"id": note.id, "kind": note.kind, "project": note.project_code,
            "object": note.object, "subject": note.subject, "body": note.body,
            "created_at": note.created_at.isoformat(),
            "read_at": note.read_at.isoformat() if note.read_at else None}

