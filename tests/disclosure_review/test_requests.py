"""Export request lifecycle: transition table, submission, blocking, review duties, two reviewers."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from disclosure_review.errors import UnknownProjectError
from disclosure_review.requests import (
    STATUS_AUDIT_EVENT,
    STATUS_OWNERS,
    TRANSITIONS,
    Decision,
    InvalidTransitionError,
    ProjectNotActiveError,
    Status,
    create_request,
    decide,
    get_request,
    withdraw,
)
from enclave.checksums import sha256_file
from enclave.config import Settings
from enclave.errors import InputError, PermissionDenied, SeparationOfDutiesError
from enclave.state.db import session_scope
from enclave.state.models import AuditEntry, ExportRequest

PROJECT = "P2026-0001"
OK_TABLE = "group,n\nA,10\nB,12\n"
BAD_TABLE = "group,n\nA,3\nB,12\n"


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _submit(settings: Settings, paths: list[Path], actor: str = "rex",
            project: str = PROJECT) -> str:
    with session_scope(settings) as session:
        request = create_request(session, settings, actor=actor, project=project, paths=paths,
                                 purpose="Table 1 of the diabetes paper")
        return request.code


def _status(settings: Settings, code: str) -> str:
    with session_scope(settings) as session:
        return get_request(session, code).status


def _actions(settings: Settings, code: str) -> list[str]:
    with session_scope(settings) as session:
        return list(session.execute(
            select(AuditEntry.action).where(AuditEntry.object == code).order_by(AuditEntry.seq)
        ).scalars())


# -- the tables -------------------------------------------------------------------------------
def test_every_status_has_an_owner_and_an_audit_event() -> None:
    assert set(STATUS_OWNERS) == set(Status)
    assert set(STATUS_AUDIT_EVENT) == set(Status)
    for frm, _to in TRANSITIONS:
        assert STATUS_OWNERS[frm] is not None, f"{frm} has moves but no owner"
    terminal = {s for s, owner in STATUS_OWNERS.items() if owner is None}
    assert terminal == {Status.REJECTED, Status.WITHDRAWN, Status.RECALLED}
    assert not [pair for pair in TRANSITIONS if pair[0] in terminal]


def test_moves_outside_the_table_are_refused(enclave_project: Settings) -> None:
    """Transition matrix: every (from, to) not in the table fails with the specific error."""
    from disclosure_review.requests import set_status

    with session_scope(enclave_project) as session:
        for frm in Status:
            request = ExportRequest(code=f"EXP-{frm.value}", project_code=PROJECT, author="rex",
                                    purpose="p", status=frm.value, folder="",
                                    created_at=_now(), status_changed_at=_now())
            for to in Status:
                if (frm, to) in TRANSITIONS:
                    continue
                with pytest.raises(InvalidTransitionError, match=f"is {frm.value}"):
                    set_status(session, enclave_project, request, to, actor="system")
            assert request.status == frm.value


def _now():
    from enclave import clock

    return clock.now()


# -- submission -------------------------------------------------------------------------------
def test_pass_is_queued_with_frozen_files_and_report(enclave_project: Settings,
                                                     tmp_path: Path) -> None:
    source = _write(tmp_path / "work", "table1.csv", OK_TABLE)
    code = _submit(enclave_project, [source])
    assert code == "EXP-000001"
    folder = enclave_project.home / "exports" / code
    copy = folder / "files" / "table1.csv"
    assert copy.read_text() == OK_TABLE
    assert stat.S_IMODE(copy.stat().st_mode) == 0o444
    assert not os.access(folder, os.W_OK) or os.geteuid() == 0
    report = json.loads((folder / "check_report.json").read_text())
    assert report["verdict"] == "pass"
    with session_scope(enclave_project) as session:
        request = get_request(session, code)
        assert request.status == Status.QUEUED
        assert request.files[0].sha256 == sha256_file(source)
        assert request.check_verdict == "pass"
    assert _actions(enclave_project, code) == ["export.draft", "export.submit", "export.queue"]
    # Changing the researcher's working copy afterwards does not touch the request.
    source.write_text(BAD_TABLE)
    assert copy.read_text() == OK_TABLE


def test_fail_blocks_submission_and_cannot_be_approved(enclave_project: Settings,
                                                       tmp_path: Path) -> None:
    code = _submit(enclave_project, [_write(tmp_path, "t.csv", BAD_TABLE)])
    assert _status(enclave_project, code) == Status.BLOCKED
    with session_scope(enclave_project) as session:
        report = json.loads(get_request(session, code).check_report)
    assert report["verdict"] == "fail"
    assert report["findings"][0]["file"] == "t.csv"
    assert report["findings"][0]["location"] == "row[group=A] column 'n'"
    with pytest.raises(InvalidTransitionError, match="blocked"), \
            session_scope(enclave_project) as session:
        decide(session, enclave_project, actor="vera", code=code, decision=Decision.APPROVE,
               reason="looks fine")
    # Only the author withdraws it.
    with pytest.raises(PermissionDenied, match="not the author"), \
            session_scope(enclave_project) as session:
        withdraw(session, enclave_project, actor="pia", code=code)
    with session_scope(enclave_project) as session:
        withdraw(session, enclave_project, actor="rex", code=code, reason="will collapse A")
    assert _status(enclave_project, code) == Status.WITHDRAWN
    assert _actions(enclave_project, code)[-2:] == ["export.block", "export.withdraw"]


def test_submission_refusals(enclave_project: Settings, tmp_path: Path) -> None:
    from disclosure_review.requests import get_project

    table = _write(tmp_path, "t.csv", OK_TABLE)
    with pytest.raises(PermissionDenied, match="not a member of project P2026-0001"):
        _submit(enclave_project, [table], actor="oscar")
    with pytest.raises(PermissionDenied, match="not a researcher"):
        _submit(enclave_project, [table], actor="vera")
    with pytest.raises(UnknownProjectError, match="P1999"):
        _submit(enclave_project, [table], project="P1999-0001")
    with session_scope(enclave_project) as session:
        get_project(session, PROJECT).status = "marked_for_deletion"
    with pytest.raises(ProjectNotActiveError, match="marked_for_deletion"):
        _submit(enclave_project, [table])
    with session_scope(enclave_project) as session:
        get_project(session, PROJECT).status = "active"
    other = _write(tmp_path / "b", "t.csv", OK_TABLE)
    with pytest.raises(InputError, match=r"also named 't\.csv'"):
        _submit(enclave_project, [table, other])
    with pytest.raises(InputError, match="purpose"), session_scope(enclave_project) as session:
        create_request(session, enclave_project, actor="rex", project=PROJECT, paths=[table],
                       purpose="  ")
    # Nothing was left behind by the refused submissions.
    exports = enclave_project.home / "exports"
    assert not exports.exists() or not list(exports.iterdir())
    with session_scope(enclave_project) as session:
        assert session.execute(select(ExportRequest)).first() is None


# -- review -----------------------------------------------------------------------------------
def test_reviewer_in_project_is_refused(enclave_project: Settings, tmp_path: Path) -> None:
    code = _submit(enclave_project, [_write(tmp_path, "t.csv", OK_TABLE)])
    with pytest.raises(SeparationOfDutiesError, match="rita is a member of this project"), \
            session_scope(enclave_project) as session:
        decide(session, enclave_project, actor="rita", code=code, decision=Decision.APPROVE,
               reason="fine")
    with pytest.raises(PermissionDenied, match="rex is not a reviewer"), \
            session_scope(enclave_project) as session:
        decide(session, enclave_project, actor="rex", code=code, decision=Decision.APPROVE,
               reason="mine")
    assert _status(enclave_project, code) == Status.QUEUED
    with session_scope(enclave_project) as session:
        assert get_request(session, code).decisions == []


def test_reason_is_mandatory_and_reject_and_changes(enclave_project: Settings,
                                                    tmp_path: Path) -> None:
    first = _submit(enclave_project, [_write(tmp_path, "a.csv", OK_TABLE)])
    second = _submit(enclave_project, [_write(tmp_path, "b.csv", OK_TABLE)])
    with pytest.raises(InputError, match="reason"), session_scope(enclave_project) as session:
        decide(session, enclave_project, actor="vera", code=first, decision=Decision.REJECT,
               reason=" ")
    with session_scope(enclave_project) as session:
        decide(session, enclave_project, actor="vera", code=first, decision=Decision.REJECT,
               reason="outside the approved purpose")
        decide(session, enclave_project, actor="walt", code=second,
               decision=Decision.REQUEST_CHANGES, reason="label the age groups")
    assert _status(enclave_project, first) == Status.REJECTED
    assert _status(enclave_project, second) == Status.CHANGES_REQUESTED
    assert _actions(enclave_project, first)[-2:] == ["export.review.reject", "export.reject"]
    with session_scope(enclave_project) as session:
        withdraw(session, enclave_project, actor="rex", code=second)
    assert _status(enclave_project, second) == Status.WITHDRAWN


def test_two_reviewer_policy(enclave_project: Settings, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for path in enclave_project.policies_dir.iterdir():
        if path.is_file():
            (policies / path.name).write_bytes(path.read_bytes())
    data = yaml.safe_load((policies / "disclosure.yaml").read_text())
    data["two_reviewers"] = True
    (policies / "disclosure.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    settings = dataclasses.replace(enclave_project, policies_dir=policies)

    code = _submit(settings, [_write(tmp_path, "t.csv", OK_TABLE)])
    with session_scope(settings) as session:
        decide(session, settings, actor="vera", code=code, decision=Decision.APPROVE,
               reason="counts all above 5")
    assert _status(settings, code) == Status.QUEUED  # one approval is not enough
    with pytest.raises(SeparationOfDutiesError, match="vera cannot do both"), \
            session_scope(settings) as session:
        decide(session, settings, actor="vera", code=code, decision=Decision.APPROVE,
               reason="again")
    with session_scope(settings) as session:
        decide(session, settings, actor="walt", code=code, decision=Decision.APPROVE,
               reason="agree")
        request = get_request(session, code)
        assert request.status == Status.RELEASED
        assert [d.reviewer for d in request.decisions] == ["vera", "walt"]
    manifest = json.loads((settings.projects_dir / PROJECT / "outbox" / code /
                           "manifest.json").read_text())
    assert [r["reviewer"] for r in manifest["reviewers"]] == ["vera", "walt"]
