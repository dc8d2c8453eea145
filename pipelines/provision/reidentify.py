"""Re-identification ("decryption"): a custodian's written request, a second person's
approval, then resolution through the ingest escrow; every step audited.

States and their allowed transitions are one table (:data:`TRANSITIONS`); :func:`set_status`
checks it, stores the status and writes the audit entry in one call. Rules:

* custodians only, a reason is mandatory;
* the approver is a second custodian, never the requester
  (:func:`enclave.roles.check_distinct_persons`);
* refused once the project is closed or its key destroyed;
* resolution recomputes stage-2 pseudonyms over the vault tokens of the project's approved
  identifier columns (needs the project key), maps the requested pseudonyms to stage-1
  tokens, and opens their escrow records. The identifiers are returned once and written to a
  custodian-only file; audit entries hold the request id and counts, never an identifier or
  key material.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave import audit, clock
from enclave.config import Settings
from enclave.errors import InputError, NotFound
from enclave.keys import KeyStore, project_key, project_key_path
from enclave.roles import Role, check_distinct_persons
from enclave.state.models import Project, ReidRequest
from enclave.users import Actor, require
from pipelines.provision.errors import ReidError

PSEUDONYM = re.compile(r"^[A-Za-z0-9_-]{22}$")
CLOSED_STATUSES = ("closed", "marked_for_deletion")


class ReidStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    RESOLVED = "resolved"


TRANSITIONS: dict[ReidStatus, set[ReidStatus]] = {
    ReidStatus.REQUESTED: {ReidStatus.APPROVED, ReidStatus.REJECTED},
    ReidStatus.APPROVED: {ReidStatus.RESOLVED},
    ReidStatus.REJECTED: set(),
    ReidStatus.RESOLVED: set(),
}
STATUS_AUDIT_EVENT = {
    ReidStatus.APPROVED: "reid.approve",
    ReidStatus.REJECTED: "reid.reject",
    ReidStatus.RESOLVED: "reid.resolve",
}


def reid_dir(settings: Settings) -> Path:
    """Custodian-only folder of resolved requests (0700, files 0600)."""
    return settings.home / "reid"


def get_request(session: Session, request_id: int) -> ReidRequest:
    row = session.get(ReidRequest, request_id)
    if row is None:
        raise NotFound(f"no re-identification request {request_id}")
    return row


def _check_project_open(session: Session, settings: Settings, code: str) -> Project:
    project = session.execute(select(Project).where(Project.code == code)).scalar_one_or_none()
    if project is None:
        raise NotFound(f"no project {code!r}")
    keys = KeyStore.for_home(settings.keys_dir)
    if project.status in CLOSED_STATUSES or project_key_path(keys, code).with_suffix(".destroyed").exists():
        raise ReidError(f"project {code} is {project.status} and its key is destroyed or due to be: "
                        "its pseudonyms can no longer be re-identified")
    if not project_key_path(keys, code).is_file():
        raise ReidError(f"project {code} has no key (never provisioned): nothing to re-identify")
    return project


def set_status(session: Session, settings: Settings, request: ReidRequest, new: ReidStatus, *,
               actor: Actor, reason: str | None = None, details: dict | None = None) -> None:
    """Move ``request`` to ``new`` if the table allows it; audit in the same call."""
    current = ReidStatus(request.status)
    if new not in TRANSITIONS[current]:
        raise ReidError(f"re-identification request {request.id} is {current.value}; "
                        f"it cannot become {new.value}")
    request.status = new.value
    audit.record(session, settings, actor=actor.username, role=Role.CUSTODIAN.value,
                 action=STATUS_AUDIT_EVENT[new], obj=f"reid:{request.id}",
                 project=request.project_code, reason=reason,
                 details={"request": request.id, **(details or {})})


def request(session: Session, settings: Settings, *, actor: str, code: str,
            pseudonyms: list[str], reason: str) -> ReidRequest:
    """File a request to re-identify ``pseudonyms`` of project ``code`` (custodian only)."""
    who = require(session, actor, Role.CUSTODIAN)
    if not reason or not reason.strip():
        raise InputError("a re-identification request needs a written reason (--reason)")
    wanted = sorted(set(pseudonyms))
    bad = [p for p in wanted if not PSEUDONYM.match(p)]
    if not wanted or bad:
        raise InputError(f"give project pseudonyms (22 characters of A-Z a-z 0-9 _ -); "
                         f"{len(bad)} of {len(wanted)} are malformed")
    _check_project_open(session, settings, code)
    row = ReidRequest(project_code=code, status=ReidStatus.REQUESTED.value,
                      requested_by=who.username, reason=reason.strip(),
                      pseudonyms_json=json.dumps(wanted), created_at=clock.now())
    session.add(row)
    session.flush()
    audit.record(session, settings, actor=who.username, role=Role.CUSTODIAN.value,
                 action="reid.request", obj=f"reid:{row.id}", project=code, reason=row.reason,
                 details={"request": row.id, "pseudonyms": len(wanted)})
    return row


def decide(session: Session, settings: Settings, *, actor: str, request_id: int, approve: bool,
           reason: str) -> ReidRequest:
    """Approve or reject as the second person (a custodian who is not the requester)."""
    who = require(session, actor, Role.CUSTODIAN)
    row = get_request(session, request_id)
    check_distinct_persons(row.requested_by, who.username, "re-identification approval")
    if not reason or not reason.strip():
        raise InputError("give a reason for the decision (--reason)")
    if approve:
        _check_project_open(session, settings, row.project_code)
    set_status(session, settings, row, ReidStatus.APPROVED if approve else ReidStatus.REJECTED,
               actor=who, reason=reason.strip())
    row.decided_by, row.decided_at, row.decision_reason = who.username, clock.now(), reason.strip()
    return row


@dataclass
class Resolution:
    """The resolved identifiers (shown once) and the custodian-only file that keeps them."""

    request_id: int
    identifiers: list[dict]
    unresolved: list[str]
    path: Path


def _project_tokens(session: Session, settings: Settings, project: Project) -> pl.DataFrame:
    """Distinct (kind, token) of the project's approved identifier columns in its batches."""
    import duckdb

    from catalog import load_catalog
    from enclave.state.models import ProjectExtract
    from pipelines import vault
    from pipelines.provision.project import paths_in_batches, project_plans
    from pipelines.vault import parquet_source, quote

    record = session.execute(select(ProjectExtract).where(
        ProjectExtract.project_code == project.code)).scalar_one_or_none()
    batches = json.loads(record.batches_json) if record else vault.committed_batches(session)
    paths_for = paths_in_batches(settings, batches)
    parts = []
    for plan in project_plans(project, load_catalog()):
        paths = [p for y in plan.years for p in paths_for(plan.file, y)]
        for column, kind in plan.identifiers.items():
            if paths:
                parts.append(f"SELECT '{kind}' AS kind, {quote(column)} AS token FROM {parquet_source(paths)}")
    if not parts:
        return pl.DataFrame(schema={"kind": pl.String, "token": pl.Binary})
    con = duckdb.connect(":memory:")
    try:
        table = con.sql(f"SELECT DISTINCT kind, token FROM ({' UNION ALL '.join(parts)}) "
                        "WHERE token IS NOT NULL").to_arrow_table()
    finally:
        con.close()
    return pl.DataFrame(table)


def _escrow(settings: Settings, session: Session) -> pl.LazyFrame:
    from pipelines import vault

    paths = [vault.escrow_dir(settings) / f"batch={b}" / "escrow.parquet"
             for b in vault.committed_batches(session)]
    return pl.scan_parquet([p for p in paths if p.is_file()])


def resolve(session: Session, settings: Settings, *, actor: str, request_id: int) -> Resolution:
    """Resolve an approved request (custodian only; once)."""
    from pipelines.ingest.tokens import open_escrow
    from pipelines.provision.pseudonymize import stage2_mapping

    who = require(session, actor, Role.CUSTODIAN)
    row = get_request(session, request_id)
    if ReidStatus(row.status) != ReidStatus.APPROVED:
        raise ReidError(f"re-identification request {row.id} is {row.status}; only an approved "
                        "request (second person) can be resolved, and only once")
    project = _check_project_open(session, settings, row.project_code)
    keys = KeyStore.for_home(settings.keys_dir)
    key = project_key(keys, project.code)
    wanted = set(json.loads(row.pseudonyms_json))
    tokens = _project_tokens(session, settings, project)
    found = []
    for kind in sorted(set(tokens.get_column("kind").to_list())):
        values = tokens.filter(pl.col("kind") == kind).get_column("token").to_arrow()
        mapping = pl.DataFrame(stage2_mapping(key, kind, values))
        hits = mapping.filter(pl.col("pseudonym").is_in(list(wanted)))
        found.append(hits.with_columns(pl.lit(kind).alias("kind")))
    matched = pl.concat(found) if found else pl.DataFrame(
        schema={"token": pl.Binary, "pseudonym": pl.String, "kind": pl.String})
    sealed = matched.lazy().join(_escrow(settings, session), on=["kind", "token"], how="left").collect()
    escrow_key = keys.escrow_key()
    identifiers = [
        {"pseudonym": r["pseudonym"], "kind": r["kind"],
         "identifier": open_escrow(escrow_key, r["kind"], r["sealed"]) if r["sealed"] else None}
        for r in sealed.sort("pseudonym").iter_rows(named=True)
    ]
    unresolved = sorted(wanted - {i["pseudonym"] for i in identifiers if i["identifier"]})
    folder = reid_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    path = folder / f"request-{row.id}.json"
    tmp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"request": row.id, "project": row.project_code, "resolved_by": who.username,
                   "identifiers": identifiers, "unresolved": unresolved}, handle, indent=2)
    os.replace(tmp, path)
    set_status(session, settings, row, ReidStatus.RESOLVED, actor=who,
               details={"requested": len(wanted), "resolved": len(wanted) - len(unresolved)})
    row.resolved_by, row.resolved_at = who.username, clock.now()
    row.resolved_count, row.output_path = len(wanted) - len(unresolved), str(path)
    return Resolution(row.id, identifiers, unresolved, path)


def list_requests(session: Session, *, project: str | None = None) -> list[dict]:
    """Requests with their status (no pseudonyms, no identifiers)."""
    stmt = select(ReidRequest).order_by(ReidRequest.id)
    if project:
        stmt = stmt.where(ReidRequest.project_code == project)
    return [
        {"id": r.id, "project": r.project_code, "status": r.status, "requested_by": r.requested_by,
         "reason": r.reason, "pseudonyms": len(json.loads(r.pseudonyms_json)),
         "decided_by": r.decided_by, "resolved_count": r.resolved_count,
         "created_at": r.created_at}
        for r in session.execute(stmt).scalars()
    ]
