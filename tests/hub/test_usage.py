"""Usage accounting and billing without a hub: slots, full days, extra computers, overnight
runs, the days quota, the Authenticator's stages, and the ``enclave hub overnight`` CLI."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from hub_helpers import MONDAY_10, PASSWORD, make_home
from sqlalchemy import select
from typer.testing import CliRunner

from enclave import clock
from enclave.errors import InputError, PermissionDenied
from enclave.hub import usage
from enclave.hub.auth import EnclaveAuthenticator
from enclave.hub.policy import SpawnRefused
from enclave.state.db import session_scope
from enclave.state.models import AuditEntry, LedgerEntry, Project


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    return make_home(tmp_path_factory.mktemp("usage"))


def _ledger(settings, code: str) -> list[tuple[str, int, int, date]]:
    with session_scope(settings) as s:
        return [
            tuple(r)
            for r in s.execute(
                select(LedgerEntry.kind, LedgerEntry.quantity, LedgerEntry.amount, LedgerEntry.occurred_on)
                .where(LedgerEntry.project_code == code, LedgerEntry.actor == "system")
                .order_by(LedgerEntry.id)
            ).all()
        ]


def _used(settings, code: str) -> int:
    with session_scope(settings) as s:
        return s.execute(select(Project.used_half_days).where(Project.code == code)).scalar_one()


def test_slots_count_days_and_close_into_charges(home) -> None:
    settings, codes = home
    code = codes["other"]
    day = date(2026, 3, 2)
    before = _used(settings, code)
    assert usage.mark_slot(settings, project=code, day=day, slot="am", servers=1) is True
    assert usage.mark_slot(settings, project=code, day=day, slot="am", servers=2) is False  # same slot
    assert usage.mark_slot(settings, project=code, day=day, slot="pm", servers=1) is True
    assert _used(settings, code) == before + 2
    # Nothing is billed before the day closes.
    noon = datetime(2026, 3, 2, 12, 0, tzinfo=clock.LOCAL_ZONE)
    assert usage.settle(settings, now=noon).days == []
    evening = datetime(2026, 3, 2, 17, 45, tzinfo=clock.LOCAL_ZONE)
    done = usage.settle(settings, now=evening)
    assert (code, "2026-03-02", "full_day") in done.days
    assert (code, "2026-03-02", 1) in done.extra_computers
    lines = _ledger(settings, code)
    assert ("full_day", 1, 1600, day) in lines
    assert any(kind == "extra_computer" and qty == 1 for kind, qty, _, _ in lines)
    # Idempotent: a second settlement posts nothing more.
    usage.settle(settings, now=evening)
    assert _ledger(settings, code) == lines


def test_days_quota_refuses_with_how_to_get_more(home) -> None:
    settings, codes = home
    code = codes["exhausted"]
    with pytest.raises(SpawnRefused, match="enclave project change") as info:
        usage.check_days_left(settings, project=code, day=date(2026, 3, 3), slot="am")
    assert info.value.reason == "days_used_up"
    with pytest.raises(SpawnRefused):
        usage.mark_slot(settings, project=code, day=date(2026, 3, 3), slot="am", servers=1)


def test_overnight_registration_rules_and_billing(home) -> None:
    settings, codes = home
    code = codes["other"]
    with clock.frozen(MONDAY_10):
        with pytest.raises(InputError, match="not a working day"):
            usage.register_overnight(
                settings, project=code, night=date(2026, 3, 7), username="lin.mei", actor="lin.mei"
            )
        with pytest.raises(InputError, match="in the past"):
            usage.register_overnight(
                settings, project=code, night=date(2026, 2, 26), username="lin.mei", actor="lin.mei"
            )
        with pytest.raises(PermissionDenied):  # another researcher may not register for her
            usage.register_overnight(
                settings, project=code, night=date(2026, 3, 4), username="lin.mei", actor="chen.wei"
            )
        run = usage.register_overnight(
            settings, project=code, night=date(2026, 3, 4), username="lin.mei", actor="lin.mei"
        )
        with pytest.raises(InputError, match="already has"):
            usage.register_overnight(settings, project=code, night=date(2026, 3, 4), username="lin.mei", actor="alice")
    assert usage.has_overnight(settings, project=code, night=date(2026, 3, 4), username="lin.mei")
    assert not usage.has_overnight(settings, project=code, night=date(2026, 3, 4), username="chen.wei")
    usage.settle(settings, now=datetime(2026, 3, 4, 17, 0, tzinfo=clock.LOCAL_ZONE))
    assert run.id not in [r.id for r in usage.overnight_runs(settings) if r.billed]
    done = usage.settle(settings, now=datetime(2026, 3, 4, 17, 30, tzinfo=clock.LOCAL_ZONE))
    assert done.overnight_runs == [run.id]
    assert ("overnight_run", 1, 1600, date(2026, 3, 4)) in _ledger(settings, code)


def test_authenticator_stages(home) -> None:
    settings, _codes = home
    auth = EnclaveAuthenticator(enclave_home=str(settings.home))
    assert auth._authenticate_sync("chen.wei", PASSWORD, "", "127.0.0.1") == {"name": "chen.wei"}
    # Off-site address: refused before the password is even checked, and audited.
    assert auth._authenticate_sync("chen.wei", PASSWORD, "", "192.0.2.7") is None
    assert auth._authenticate_sync("chen.wei", "wrong-password", "", "127.0.0.1") is None
    assert auth._allowed_sync("chen.wei") and not auth._allowed_sync("steve") and not auth._allowed_sync("huang.yu")
    assert not auth._allowed_sync("nobody")
    with session_scope(settings) as s:
        details = (
            s.execute(
                select(AuditEntry.details).where(AuditEntry.action == "hub.login", AuditEntry.outcome == "denied")
            )
            .scalars()
            .all()
        )
    assert any("192.0.2.7" in str(d) for d in details)


def test_cli_overnight_register_and_list(home, monkeypatch: pytest.MonkeyPatch) -> None:
    from enclave.cli import hub_cmd  # noqa: F401  (registers `enclave hub`)
    from enclave.cli._app import app

    settings, codes = home
    monkeypatch.setenv("ENCLAVE_HOME", str(settings.home))
    monkeypatch.setenv("ENCLAVE_NOW", MONDAY_10.isoformat())
    runner = CliRunner()
    out = runner.invoke(app, ["hub", "overnight", "register", codes["main"], "--as", "chen.wei", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["night"] == "2026-03-02"
    listed = runner.invoke(app, ["hub", "overnight", "list", "--project", codes["main"], "--json"])
    assert [r["username"] for r in json.loads(listed.output)] == ["chen.wei"]
    bad = runner.invoke(app, ["hub", "overnight", "register", codes["main"], "--night", "tomorrow", "--as", "chen.wei"])
    assert bad.exit_code != 0
    assert Path(settings.home / "hub" / "usage.db").exists()
