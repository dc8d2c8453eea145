"""Account hygiene: grants due, idle accounts, ended access, departures, duty conflicts."""

from __future__ import annotations

from datetime import date

import pytest

from enclave.accounts_review import FindingKind, confirm_grant, depart, run_review
from enclave.errors import InputError, PermissionDenied
from enclave.projects import service
from enclave.state.db import session_scope
from enclave.users import add_user, get_user, grant_role

from .conftest import PASSWORD, World, set_day


def _findings(world: World, *, actor: str = "audrey", apply: bool = False):
    with session_scope(world.settings) as s:
        return run_review(s, world.settings, actor=actor, apply=apply)


def _kinds(findings, username: str) -> set[FindingKind]:
    return {f.kind for f in findings if f.username == username}


def test_grant_review_due_after_six_months_and_confirm(world: World) -> None:
    set_day(date(2026, 9, 1))
    assert FindingKind.GRANT_REVIEW_DUE not in _kinds(_findings(world), "steve")
    set_day(date(2026, 9, 2))  # granted 2 Mar 2026 + 6 months
    assert FindingKind.GRANT_REVIEW_DUE in _kinds(_findings(world), "steve")
    with session_scope(world.settings) as s:
        confirm_grant(s, world.settings, actor="alice", username="steve", role="steward",
                      supervisor="Director Lee")
    assert FindingKind.GRANT_REVIEW_DUE not in _kinds(_findings(world), "steve")


def test_idle_accounts_disabled_on_apply(world: World) -> None:
    with session_scope(world.settings) as s:
        add_user(s, world.settings, actor="alice", username="carl", full_name="Carl Wu",
                 unit="NHIA", roles=["custodian"], password=PASSWORD)
    set_day(date(2026, 6, 1))  # 91 days after creation on 2 Mar; limit 90 (accounts.yaml)
    findings = _findings(world)
    idle = {f.username for f in findings if f.kind is FindingKind.IDLE}
    assert {"rita", "steve", "carl"} <= idle
    with pytest.raises(PermissionDenied, match="not a custodian"):
        _findings(world, actor="audrey", apply=True)
    _findings(world, actor="alice", apply=True)
    with session_scope(world.settings) as s:
        assert get_user(s, "rita").status == "disabled"
        assert get_user(s, "carl").status == "active"  # custodians are never auto-disabled


def test_projects_ended_and_sod_conflicts(world: World) -> None:
    code = world.activate()
    with session_scope(world.settings) as s:
        grant_role(s, world.settings, actor="alice", username="lin.mei", role="reviewer")
    findings = _findings(world)
    conflicts = [f.detail for f in findings if f.kind is FindingKind.SOD_CONFLICT]
    assert any(f"output reviewer is a member of {code}" in d for d in conflicts)
    with session_scope(world.settings) as s:
        service.record_day_use(s, world.settings, actor="system", code=code, half_days=1)
    set_day(date(2027, 6, 2))
    with session_scope(world.settings) as s:
        service.run_due_jobs(s, world.settings)
        # someone re-enabled by mistake is caught by the review
        get_user(s, "wang.hao").status = "active"
    findings = _findings(world, actor="alice", apply=True)
    assert FindingKind.PROJECTS_ENDED in _kinds(findings, "wang.hao")
    with session_scope(world.settings) as s:
        assert get_user(s, "wang.hao").status == "disabled"


def test_departure_removes_from_projects(world: World) -> None:
    code = world.activate()
    with session_scope(world.settings) as s:
        assert depart(s, world.settings, actor="alice", username="wang.hao",
                      reason="left TMU") == [code]
        assert "wang.hao" not in service.member_names(service.get_project(s, code))
        assert get_user(s, "wang.hao").status == "disabled"
    with session_scope(world.settings) as s, pytest.raises(InputError, match="applicant"):
        depart(s, world.settings, actor="alice", username="chen.wei", reason="retired")
