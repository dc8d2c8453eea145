"""The full path on the command line: application, clarification, approval with refusals,
fee notice as HTML and PDF, declarations, payment, first use, a paid change, a usage charge,
expiry with the closure hook, closure, ledger, report, account review and audit verify."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

import enclave.cli.accounts_cmd
import enclave.cli.audit_cmd
import enclave.cli.billing_cmd
import enclave.cli.project_cmd  # noqa: F401
from enclave.cli._app import app
from enclave.errors import InputError
from enclave.projects import hooks
from enclave.state.db import session_scope
from enclave.state.models import AuditEntry

from .conftest import EXAMPLE_SPEC, World, set_day

runner = CliRunner()


def run(*args: str, user: str | None = None) -> str:
    argv = list(args) + (["--as", user] if user else [])
    res = runner.invoke(app, argv)
    assert res.exit_code == 0, f"{argv}: {res.output} {res.exception!r}"
    return res.output


def run_json(*args: str, user: str | None = None) -> object:
    return json.loads(run(*args, "--json", user=user))


def test_full_path_from_application_to_expiry(world: World, tmp_path: Path) -> None:
    deleted: list[str] = []
    hook = lambda session, settings, project: deleted.append(project.code)  # noqa: E731
    hooks.register_closure_hook(hook)
    try:
        _full_path(world, tmp_path, deleted)
    finally:
        hooks.unregister_closure_hook(hook)


def _full_path(world: World, tmp_path: Path, deleted: list[str]) -> None:
    applied = run_json("project", "apply", str(EXAMPLE_SPEC), user="chen.wei")
    code = applied["code"]
    assert applied == {"code": code, "status": "submitted"}
    queue = run_json("project", "list", "--queue")
    assert [q["code"] for q in queue] == [code] and queue[0]["due_on"] == "2026-03-30"

    run("project", "clarify", code, "--reason", "why ICD9CM_3?", user="steve")
    run("project", "respond", code, "--reason", "comorbidities", user="chen.wei")
    decided = run_json("project", "approve", code, "--reason", "minimum necessary met",
                       "--refuse-column", "H_NHI_OPDTE.ICD9CM_3=comorbidity not in the aims",
                       user="steve")
    # 13 x 250 x 2 + 3,000 x 2 + 3,000 x 2 + 3,200 + 16,000 = 6,500 + 12,000 + 19,200
    assert decided["total"] == 37_700 and decided["due_on"] == "2026-03-16"
    number = decided["notice"]

    out = tmp_path / "notices"
    shown = run_json("billing", "notice", number, "--out", str(out))
    html = Path(shown["html"]).read_text(encoding="utf-8")
    assert "繳費通知" in html and "37,700" in html and code in html
    assert Path(shown["pdf"]).read_bytes().startswith(b"%PDF")

    for person in ("chen.wei", "lin.mei", "wang.hao"):
        run("project", "declare", code, person, user="alice")
    assert run_json("project", "show", code)["status"] == "approved"
    set_day(date(2026, 3, 10))
    run("billing", "pay", number, "--reference", "POST-0001", user="alice")
    shown = run_json("project", "show", code)
    assert shown["status"] == "active"
    run("project", "first-use", code, "--date", "2026-03-12", user="alice")
    assert run_json("project", "show", code)["period"]["end"] == "2027-03-11"

    change = tmp_path / "more_days.yaml"
    change.write_text("kind: working_days\nreason: cohort larger than planned\n"
                      "half_days: 2\nfull_days: 0\n", encoding="utf-8")
    requested = run_json("project", "change", code, str(change), user="chen.wei")
    decided = run_json("project", "decide-change", str(requested["id"]), "--approve",
                       "--reason", "justified", user="steve")
    assert decided["total"] == 1_600  # 2 half days x 800
    run("billing", "pay", decided["notice"], "--reference", "POST-0002", user="alice")
    assert run_json("project", "show", code)["half_days"]["approved"] == 26
    set_day(date(2026, 4, 1))
    run("billing", "charge", code, "overnight_run", "--quantity", "1", "--reference", "RUN-1",
        user="alice")

    set_day(date(2027, 3, 12))
    jobs = run_json("project", "jobs")
    assert jobs["expired"] == [code] and deleted == [code]
    assert sorted(jobs["disabled_accounts"]) == ["chen.wei", "lin.mei", "wang.hao"]
    run("project", "close", code, "--reason", "extract deleted, key destroyed", user="alice")
    assert run_json("project", "show", code)["status"] == "closed"

    rows = list(csv.DictReader(io.StringIO(run("billing", "ledger", "--project", code))))
    assert sum(int(r["amount"]) for r in rows) == 37_700 + 1_600 + 1_600
    march = run_json("billing", "report", "--month", "2026-03")
    assert march["total"] == 37_700 + 1_600 and march["notices_paid"] == 2
    assert run_json("billing", "report", "--month", "2026-04")["by_kind"]["overnight_run"] == 1600

    findings = run_json("accounts", "review", user="audrey")
    # a year on, every grant made at the start is due for its 6-monthly re-review
    assert any(f["kind"] == "grant_review_due" and f["username"] == "steve" for f in findings)

    verified = run_json("audit", "verify")
    assert verified["ok"] is True
    with session_scope(world.settings) as s:
        actions = set(s.execute(select(AuditEntry.action).where(AuditEntry.project == code))
                      .scalars())
    assert {"project.apply", "project.clarify", "project.submit", "project.approve",
            "billing.notice", "billing.charge", "project.declaration", "billing.payment",
            "project.activate", "project.first_use", "project.change_request",
            "project.change_approve", "project.change_apply", "project.expire",
            "project.closure_hooks", "project.close"} <= actions


def test_cli_refusal_message(world: World, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    text = EXAMPLE_SPEC.read_text(encoding="utf-8").replace(
        "document: documents/", f"document: {EXAMPLE_SPEC.parent}/documents/").replace(
        "proof: documents/", f"proof: {EXAMPLE_SPEC.parent}/documents/").replace(
        "      ID_S: sex as a stratification variable\n", "      ID_S:\n", 1)
    spec.write_text(text, encoding="utf-8")
    res = runner.invoke(app, ["project", "apply", str(spec), "--as", "chen.wei"])
    assert isinstance(res.exception, InputError)
    assert "column ID_S has no reason" in str(res.exception)
    # the refusal rolled back, but it is in the audit log as denied
    with session_scope(world.settings) as s:
        row = s.execute(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).scalar_one()
        assert (row.action, row.actor, row.outcome) == ("project.apply", "chen.wei", "denied")
        assert "column ID_S has no reason" in (row.reason or "")
    res = runner.invoke(app, ["billing", "pay", "FN2026-00009", "--reference", "R",
                              "--as", "steve"])
    assert "steve is not a custodian" in str(res.exception)
    res = runner.invoke(app, ["project", "approve", "P2026-0001", "--reason", "x",
                              "--refuse-column", "H_NHI_OPDTE:ID", "--as", "steve"])
    assert "expected FILE.COLUMN=reason" in str(res.exception)
