"""The lifecycle: the transition matrix, payment window, activation, usage period, expiry
with closure hooks, and unused-day transfers."""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from enclave.billing import ledger
from enclave.errors import InputError, PermissionDenied
from enclave.projects import hooks, service
from enclave.projects.lifecycle import (
    STATUS_AUDIT_EVENT,
    STATUS_OWNERS,
    TRANSITIONS,
    InvalidTransition,
    Owner,
    Status,
    set_status,
)
from enclave.state.db import session_scope
from enclave.state.models import AuditEntry
from enclave.users import Actor, get_user

from .conftest import World, set_day

ACTORS = {
    Owner.APPLICANT: Actor("chen.wei", frozenset({"researcher"})),
    Owner.STEWARD: Actor("steve", frozenset({"steward"})),
    Owner.CUSTODIAN: Actor("alice", frozenset({"custodian"})),
    Owner.SYSTEM: Actor("system", frozenset({"system"})),
}


def test_every_status_has_an_owner_and_an_audit_event() -> None:
    assert set(STATUS_OWNERS) == set(Status)
    assert set(STATUS_AUDIT_EVENT) == set(Status)
    # a status with outgoing transitions has an owner; a final one has none
    for status in Status:
        has_exits = any(f == status for f, _ in TRANSITIONS)
        assert (STATUS_OWNERS[status] is not None) == has_exits, status


def test_transition_matrix(world: World) -> None:
    code = world.apply()
    with session_scope(world.settings) as s:
        project = service.get_project(s, code)
        for current, target, owner in itertools.product(Status, Status, Owner):
            project.status = current.value
            allowed = TRANSITIONS.get((current, target))

            def call(target: Status = target, owner: Owner = owner) -> None:
                set_status(s, world.settings, project, target, actor=ACTORS[owner],
                           reason="matrix")

            if allowed is None:
                with pytest.raises(InvalidTransition, match=f"cannot become {target.value}"):
                    call()
            elif allowed is not owner:
                with pytest.raises(PermissionDenied):
                    call()
            else:
                call()
                assert project.status == target.value
                row = s.execute(select(AuditEntry).order_by(AuditEntry.seq.desc())
                                .limit(1)).scalar_one()
                assert (row.action, row.actor, row.project) == (
                    STATUS_AUDIT_EVENT[target], ACTORS[owner].username, code)
                assert json.loads(row.details) == {"from": current.value, "to": target.value}
        s.rollback()


def test_applicant_transitions_need_the_applicant(world: World) -> None:
    code = world.apply()
    with session_scope(world.settings) as s, pytest.raises(PermissionDenied,
                                                             match="not the applicant"):
        service.withdraw(s, world.settings, actor="lin.mei", code=code, reason="x")


def test_unpaid_application_void_after_14_days(world: World) -> None:
    code = world.apply()
    number = world.approve(code)  # notice on Mon 2 Mar 2026, due 16 Mar (2 + 14)
    world.sign_all(code)
    set_day(date(2026, 3, 16))
    assert world.jobs()["voided"] == []  # the 14th day still counts
    assert world.status(code) == "approved"
    set_day(date(2026, 3, 17))
    assert world.jobs()["voided"] == [code]
    assert world.status(code) == "void"
    with session_scope(world.settings) as s:
        rows = ledger.entries(s, project=code)
        # every charge of the notice is reversed: the project owes nothing
        assert sum(r.amount for r in rows) == 0 and len(rows) % 2 == 0
        with pytest.raises(Exception, match="is void"):
            service.record_payment(s, world.settings, actor="alice", notice_number=number,
                                   paid_on=date(2026, 3, 17), reference="late")


def test_late_payment_refused(world: World) -> None:
    code = world.apply()
    number = world.approve(code)
    set_day(date(2026, 3, 17))
    with session_scope(world.settings) as s, pytest.raises(Exception, match="is late"):
        service.record_payment(s, world.settings, actor="alice", notice_number=number,
                               paid_on=date(2026, 3, 17), reference="R1")


def test_activation_needs_payment_and_every_declaration(world: World) -> None:
    code = world.apply()
    number = world.approve(code)
    world.pay(number)
    assert world.status(code) == "approved"  # paid but nobody signed yet
    with session_scope(world.settings) as s:
        for kind in ("contract", "confidentiality"):
            service.record_declaration(s, world.settings, actor="alice", code=code,
                                       username="chen.wei", kind=kind)
        service.record_declaration(s, world.settings, actor="alice", code=code,
                                   username="lin.mei", kind="contract")
        project = service.get_project(s, code)
        assert service.missing_declarations(project) == [
            "lin.mei: confidentiality", "wang.hao: contract", "wang.hao: confidentiality"]
        with pytest.raises(PermissionDenied, match="not a custodian"):
            service.record_declaration(s, world.settings, actor="steve", code=code,
                                       username="lin.mei", kind="confidentiality")
    with session_scope(world.settings) as s:
        service.record_declaration(s, world.settings, actor="alice", code=code,
                                   username="lin.mei", kind="confidentiality")
        for kind in ("contract", "confidentiality"):
            service.record_declaration(s, world.settings, actor="alice", code=code,
                                       username="wang.hao", kind=kind)
    assert world.status(code) == "active"
    with session_scope(world.settings) as s:
        entries = s.execute(select(AuditEntry.action).where(AuditEntry.project == code)
                            ).scalars().all()
        assert entries.count("project.declaration") == 6
        assert "billing.payment" in entries and entries[-1] == "project.activate"


def test_usage_period_from_first_use_or_three_months(world: World) -> None:
    first = world.activate()  # notice 2026-03-02
    second = world.activate()
    with session_scope(world.settings) as s:
        p1 = service.get_project(s, first)
        # not used yet: the period starts 3 months after the notice (2 Jun 2026), 1 year
        assert p1.period_end == date(2027, 6, 1)
        service.record_first_use(s, world.settings, actor="alice", code=first,
                                 day=date(2026, 4, 15))
        assert p1.period_end == date(2027, 4, 14)
        # first use after the 3-month deadline does not move the start
        service.record_first_use(s, world.settings, actor="system", code=second,
                                 day=date(2026, 7, 1))
        assert service.get_project(s, second).period_end == date(2027, 6, 1)


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, session, settings, project) -> None:
        self.calls.append(project.code)


def test_expiry_marks_for_deletion_disables_accounts_and_runs_hooks(world: World) -> None:
    recorder = _Recorder()
    hooks.register_closure_hook(recorder)
    try:
        code = world.activate()
        with session_scope(world.settings) as s:
            service.record_first_use(s, world.settings, actor="alice", code=code,
                                     day=date(2026, 3, 9))
        set_day(date(2027, 3, 8))  # the last day of the period
        assert world.jobs()["expired"] == []
        set_day(date(2027, 3, 9))
        report = world.jobs()
        assert report["expired"] == [code]
        assert sorted(report["disabled_accounts"]) == ["chen.wei", "lin.mei", "wang.hao"]
        assert recorder.calls == [code]
        assert world.status(code) == "marked_for_deletion"
        with session_scope(world.settings) as s:
            assert get_user(s, "chen.wei").status == "disabled"
            service.close(s, world.settings, actor="alice", code=code,
                          reason="extract deleted, key destroyed")
        assert world.status(code) == "closed"
    finally:
        hooks.unregister_closure_hook(recorder)


def test_failing_hook_keeps_the_project_active(world: World) -> None:
    def broken(session, settings, project) -> None:
        raise RuntimeError("key store offline")

    hooks.register_closure_hook(broken)
    try:
        code = world.activate()
        set_day(date(2027, 6, 2))
        with pytest.raises(RuntimeError, match="key store offline"):
            world.jobs()
        assert world.status(code) == "active"
    finally:
        hooks.unregister_closure_hook(broken)


def test_member_of_another_active_project_keeps_the_account(world: World) -> None:
    first = world.activate()
    set_day(date(2026, 6, 1))
    other = world.activate()
    set_day(date(2027, 6, 2))  # first ends (1 Jun 2027); other runs to 31 Aug 2027
    report = world.jobs()
    assert report["expired"] == [first] and report["disabled_accounts"] == []
    assert world.status(other) == "active"


def test_transfer_unused_days(world: World) -> None:
    first = world.activate()   # 4 half + 10 full days = 24 half days
    second = world.activate()
    with session_scope(world.settings) as s:
        service.record_day_use(s, world.settings, actor="system", code=first, half_days=20)
        with pytest.raises(InputError, match="has 4 unused half days; cannot move 5"):
            service.transfer_days(s, world.settings, actor="alice", from_code=first,
                                  to_code=second, half_days=5)
    with session_scope(world.settings) as s:
        service.transfer_days(s, world.settings, actor="alice", from_code=first,
                              to_code=second, half_days=4)
        assert service.get_project(s, first).approved_half_days == 20
        assert service.get_project(s, second).approved_half_days == 28
        with pytest.raises(InputError, match="apply for more working days"):
            service.record_day_use(s, world.settings, actor="system", code=first, half_days=1)
    spec = world.spec(applicant="lin.mei")
    spec["personnel"] = []
    spec["irb"]["co_principal_investigators"] = ["Lin Mei-Hua"]
    other = world.activate(spec)
    with session_scope(world.settings) as s, pytest.raises(InputError, match="same applicant"):
        service.transfer_days(s, world.settings, actor="alice", from_code=second,
                              to_code=other, half_days=1)


def test_notice_dates(world: World) -> None:
    code = world.apply()
    world.approve(code)
    with session_scope(world.settings) as s:
        notice = service.application_notice(s, service.get_project(s, code))
        assert notice is not None
        assert notice.due_on - notice.issued_on == timedelta(days=14)


def test_docs_state_diagram_is_generated_from_the_table() -> None:
    from pathlib import Path

    from enclave.projects.lifecycle import mermaid_diagram

    doc = Path(__file__).resolve().parents[2] / "docs" / "projects_lifecycle.md"
    assert mermaid_diagram() in doc.read_text(encoding="utf-8")
