"""``enclave project ...``: applications, steward review, declarations, changes, the daily job.

A thin layer over :mod:`enclave.projects.service` and :mod:`enclave.projects.changes`; no
rule lives here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from enclave.cli._app import AS_OPTION, JSON_OPTION, actor_name, app, print_json
from enclave.config import Settings, load_settings
from enclave.errors import InputError
from enclave.state.db import session_scope
from enclave.yaml_text import parse_yaml

project_app = typer.Typer(help="Research projects: apply, review, changes, lifecycle.",
                          no_args_is_help=True)
app.add_typer(project_app, name="project")

REASON_OPTION = typer.Option(..., "--reason", help="The reason, recorded in the audit log.")


@contextmanager
def _transaction(
    settings: Settings, as_user: str | None, action: str, obj: str, project: str | None = None
) -> Iterator[tuple[Session, str]]:
    """One transaction for a command; a refusal is audited (denied) after the rollback."""
    from enclave.projects.service import audited_refusal

    actor = actor_name(as_user)
    with audited_refusal(settings, actor=actor, action=action, obj=obj, project=project), \
            session_scope(settings) as session:
        yield session, actor


def _parse_refusals(values: list[str], *, years: bool) -> dict:
    """``FILE.COLUMN=reason`` or ``FILE/YEAR=reason`` -> {(file, column|year): reason}."""
    out: dict = {}
    for value in values:
        key, sep, reason = value.partition("=")
        splitter = "/" if years else "."
        file, sep2, item = key.partition(splitter)
        if not sep or not sep2 or not reason.strip():
            form = "FILE/YEAR=reason" if years else "FILE.COLUMN=reason"
            raise InputError(f"{value!r}: expected {form}")
        if years:
            if not item.isdigit():
                raise InputError(f"{value!r}: the year must be a number")
            out[(file, int(item))] = reason
        else:
            out[(file, item)] = reason
    return out


@project_app.command("apply")
def apply_cmd(spec: Path, as_user: str = AS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Submit an application from SPEC.yaml (see docs/examples/project_spec.yaml)."""
    from enclave.projects import service
    from enclave.projects.spec import load_spec

    settings = load_settings()
    form = load_spec(spec)
    with _transaction(settings, as_user, "project.apply", str(spec), None) as (session, actor):
        project = service.apply(session, settings, actor=actor, spec=form,
                                spec_dir=spec.resolve().parent)
        result = {"code": project.code, "status": project.status}
    if as_json:
        print_json(result)
    else:
        typer.echo(f"{result['code']}: {result['status']}")


@project_app.command("list")
def list_cmd(
    queue: bool = typer.Option(False, "--queue", help="The steward's review queue, in order."),
    status: str = typer.Option(None, "--status"),
    as_json: bool = JSON_OPTION,
) -> None:
    """List projects, or the review queue with its working-day clock."""
    from enclave.projects import review, service
    from enclave.projects.lifecycle import Status

    settings = load_settings()
    with session_scope(settings) as session:
        if queue:
            rows = [i.as_dict() for i in review.review_queue(session, settings)]
        else:
            try:
                wanted = Status(status) if status else None
            except ValueError:
                raise InputError(f"unknown status {status!r}; statuses are "
                                 f"{', '.join(s.value for s in Status)}") from None
            rows = [{"code": p.code, "title": p.title, "applicant": p.applicant,
                     "type": p.project_type, "status": p.status,
                     "period_end": p.period_end}
                    for p in service.list_projects(session, status=wanted)]
    if as_json:
        print_json(rows)
        return
    if queue:
        table = Table("#", "project", "type", "status", "started", "working days", "due",
                      "overdue")
        for n, r in enumerate(rows, 1):
            table.add_row(str(n), str(r["code"]), str(r["type"]), str(r["status"]),
                          str(r["started_on"]),
                          f"{r['elapsed_working_days']}/{r['target_working_days']}",
                          str(r["due_on"]), "OVERDUE" if r["overdue"] else "")
    else:
        table = Table("project", "applicant", "type", "status", "period end", "title")
        for r in rows:
            table.add_row(str(r["code"]), str(r["applicant"]), str(r["type"]), str(r["status"]),
                          str(r["period_end"] or "-"), str(r["title"]))
    Console(width=160).print(table)


@project_app.command("show")
def show_cmd(code: str, as_json: bool = JSON_OPTION) -> None:
    """Everything about one project: decisions, members, notices, period, review clock."""
    from enclave.projects import changes, service

    settings = load_settings()
    with session_scope(settings) as session:
        project = service.get_project(session, code)
        doc = service.summary(session, settings, project)
        doc["changes"] = [changes.change_summary(c) for c in changes.list_changes(session, project)]
    if as_json:
        print_json(doc)
        return
    typer.echo(f"{doc['code']}  {doc['status']}  {doc['title']}")
    typer.echo(f"applicant {doc['applicant']} ({doc['institution']}), type {doc['type']}")
    if doc["review"]:
        r = doc["review"]
        typer.echo(f"review: {r['elapsed_working_days']} of {r['target_working_days']} working "
                   f"days, due {r['due_on']}{' OVERDUE' if r['overdue'] else ''}")
    if doc["period"]:
        typer.echo(f"usage period {doc['period']['start']} .. {doc['period']['end']}")
    for c in doc["columns"]:
        typer.echo(f"  {c['file']}.{c['column']}: {c['decision']} — {c['reason']}")
    for n in doc["notices"]:
        typer.echo(f"  notice {n['number']} {n['purpose']}: NT$ {n['total']:,} {n['status']}")


@project_app.command("approve")
def approve_cmd(
    code: str,
    reason: str = REASON_OPTION,
    refuse_column: list[str] = typer.Option([], "--refuse-column",
                                            help="FILE.COLUMN=reason (repeatable)."),
    refuse_year: list[str] = typer.Option([], "--refuse-year",
                                          help="FILE/YEAR=reason (repeatable)."),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Approve an application (steward); the fee notice is issued at once."""
    from enclave.projects import service

    settings = load_settings()
    with _transaction(settings, as_user, "project.approve", code, code) as (session, actor):
        notice = service.approve(
            session, settings, actor=actor, code=code, reason=reason,
            refused_columns=_parse_refusals(refuse_column, years=False),
            refused_file_years=_parse_refusals(refuse_year, years=True))
        result = {"code": code, "notice": notice.number, "total": notice.total,
                  "due_on": notice.due_on, "status": notice.status}
    if as_json:
        print_json(result)
    else:
        typer.echo(f"{code} approved; fee notice {result['notice']}: NT$ {result['total']:,} "
                   f"due {result['due_on']}")


@project_app.command("reject")
def reject_cmd(code: str, reason: str = REASON_OPTION, as_user: str = AS_OPTION) -> None:
    """Reject the whole application (steward)."""
    from enclave.projects import service

    settings = load_settings()
    with _transaction(settings, as_user, "project.reject", code, code) as (session, actor):
        service.reject(session, settings, actor=actor, code=code, reason=reason)
    typer.echo(f"{code} rejected")


@project_app.command("clarify")
def clarify_cmd(code: str, reason: str = REASON_OPTION, as_user: str = AS_OPTION) -> None:
    """Return the application to the applicant with questions (steward)."""
    from enclave.projects import service

    settings = load_settings()
    with _transaction(settings, as_user, "project.clarify", code, code) as (session, actor):
        service.clarify(session, settings, actor=actor, code=code,
                        questions=reason)
    typer.echo(f"{code} returned for clarification")


@project_app.command("respond")
def respond_cmd(code: str, reason: str = REASON_OPTION, as_user: str = AS_OPTION) -> None:
    """Answer the steward's questions (applicant); the application returns to review."""
    from enclave.projects import service

    settings = load_settings()
    with _transaction(settings, as_user, "project.submit", code, code) as (session, actor):
        service.respond(session, settings, actor=actor, code=code, answer=reason)
    typer.echo(f"{code} back in review")


@project_app.command("withdraw")
def withdraw_cmd(code: str, reason: str = REASON_OPTION, as_user: str = AS_OPTION) -> None:
    """Withdraw a queued or pending application (applicant)."""
    from enclave.projects import service

    settings = load_settings()
    with _transaction(settings, as_user, "project.withdraw", code, code) as (session, actor):
        service.withdraw(session, settings, actor=actor, code=code, reason=reason)
    typer.echo(f"{code} withdrawn")


@project_app.command("declare")
def declare_cmd(
    code: str,
    username: str,
    kind: list[str] = typer.Option(["contract", "confidentiality"], "--kind",
                                   help="contract and/or confidentiality (default both)."),
    as_user: str = AS_OPTION,
) -> None:
    """Record signed declarations of one person (custodian)."""
    from enclave.projects import service

    settings = load_settings()
    with _transaction(settings, as_user, "project.declaration", username, code) as (session, actor):
        for k in kind:
            service.record_declaration(session, settings, actor=actor, code=code,
                                       username=username, kind=k)
        status = service.get_project(session, code).status
    typer.echo(f"{username}: {', '.join(kind)} recorded; {code} is {status}")


@project_app.command("first-use")
def first_use_cmd(
    code: str,
    day: str = typer.Option(None, "--date", help="YYYY-MM-DD (default today)."),
    as_user: str = AS_OPTION,
) -> None:
    """Record the first day of use; the usage period runs 1 year from it."""
    from enclave.projects import service

    settings = load_settings()
    with _transaction(settings, as_user, "project.first_use", code, code) as (session, actor):
        project = service.record_first_use(session, settings, actor=actor,
                                           code=code, day=date.fromisoformat(day) if day else None)
        end = project.period_end
    typer.echo(f"{code}: first use recorded; period ends {end}")


@project_app.command("change")
def change_cmd(
    code: str, request: Path, as_user: str = AS_OPTION, as_json: bool = JSON_OPTION
) -> None:
    """Request a change or extension from a YAML file (kind, reason, and the kind's fields)."""
    from enclave.projects import changes

    if not request.is_file():
        raise InputError(f"change request {request} does not exist")
    data = parse_yaml(request.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or "kind" not in data:
        raise InputError(f"{request}: needs 'kind' ({', '.join(k.value for k in changes.ChangeKind)})"
                         " and 'reason'")
    kind, reason = data.pop("kind"), str(data.pop("reason", ""))
    settings = load_settings()
    with _transaction(settings, as_user, "project.change_request", str(request), code) as (session, actor):
        change = changes.request_change(session, settings, actor=actor, code=code,
                                        kind=kind, payload=data, reason=reason,
                                        base_dir=request.resolve().parent)
        result = changes.change_summary(change)
    if as_json:
        print_json(result)
    else:
        typer.echo(f"change #{result['id']} ({result['kind']}) requested for {code}")


@project_app.command("decide-change")
def decide_change_cmd(
    change_id: int,
    approve: bool = typer.Option(..., "--approve/--reject"),
    reason: str = REASON_OPTION,
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Approve or reject a change request (steward); approval issues its fee notice."""
    from enclave.projects import changes

    settings = load_settings()
    with _transaction(settings, as_user, "project.change_decide", f"change:{change_id}", None) as (session, actor):
        notice = changes.decide_change(session, settings, actor=actor,
                                       change_id=change_id, approve=approve, reason=reason)
        result = {"change": change_id, "status": changes.get_change(session, change_id).status,
                  "notice": notice.number if notice else None,
                  "total": notice.total if notice else 0}
    if as_json:
        print_json(result)
    else:
        typer.echo(f"change #{change_id}: {result['status']}"
                   + (f"; fee notice {result['notice']} NT$ {result['total']:,}"
                      if result["notice"] else ""))


@project_app.command("transfer-days")
def transfer_days_cmd(
    from_code: str, to_code: str,
    half_days: int = typer.Option(..., "--half-days"),
    as_user: str = AS_OPTION,
) -> None:
    """Move unused working days to another project of the same applicant (custodian)."""
    from enclave.projects import service

    settings = load_settings()
    obj = f"{from_code}->{to_code}"
    with _transaction(settings, as_user, "project.transfer_days", obj, from_code) as (
        session, actor
    ):
        service.transfer_days(session, settings, actor=actor, from_code=from_code,
                              to_code=to_code, half_days=half_days)
    typer.echo(f"moved {half_days} half days from {from_code} to {to_code}")


@project_app.command("jobs")
def jobs_cmd(as_json: bool = JSON_OPTION) -> None:
    """Run the daily job: void unpaid notices, expire ended projects, promote queues."""
    from enclave.projects import service

    settings = load_settings()
    with session_scope(settings) as session:
        report = service.run_due_jobs(session, settings).as_dict()
    if as_json:
        print_json(report)
    else:
        for key, values in report.items():
            typer.echo(f"{key}: {', '.join(map(str, values)) or '-'}")


@project_app.command("close")
def close_cmd(code: str, reason: str = REASON_OPTION, as_user: str = AS_OPTION) -> None:
    """Close a project marked for deletion once its data and key are gone (custodian)."""
    from enclave.projects import service

    settings = load_settings()
    with _transaction(settings, as_user, "project.close", code, code) as (session, actor):
        service.close(session, settings, actor=actor, code=code, reason=reason)
    typer.echo(f"{code} closed")
