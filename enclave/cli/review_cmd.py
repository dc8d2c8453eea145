"""Export requests, the review queue, release verification, recall and notifications.

Commands: ``enclave export request/withdraw/status/recall/verify-release``,
``enclave review list/show/approve/reject/request-changes`` and
``enclave notifications list``. Logic lives in :mod:`disclosure_review.requests`.

``export request`` exits 0 when the request is queued for review, 1 when the automatic
check blocked it (the findings are printed), 2 on input errors.
``export verify-release`` exits 0 when the folder matches its signed manifest, 5 when it
does not, 1 when it verifies but the release was recalled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from enclave.cli._app import AS_OPTION, JSON_OPTION, actor_name, app, print_json
from enclave.cli.export_cmd import export_app
from enclave.config import load_settings
from enclave.state.db import session_scope

review_app = typer.Typer(help="Review queue of export requests.", no_args_is_help=True)
app.add_typer(review_app, name="review")
notifications_app = typer.Typer(help="Messages for you from the system.", no_args_is_help=True)
app.add_typer(notifications_app, name="notifications")

REASON_OPTION = typer.Option(..., "--reason", help="Why (mandatory; recorded in the audit log).")


def _findings_table(report: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    for header in ("severity", "rule", "file", "location", "detail"):
        table.add_column(header, overflow="fold")
    for f in report.get("findings", []):
        # Text(): locations such as row[sex=F] are not Rich markup.
        table.add_row(*(Text(str(f[k])) for k in ("severity", "rule", "file", "location",
                                                  "detail")))
    return table


def _print_summary(summary: dict[str, Any]) -> None:
    out = Console()
    out.print(Text(f"{summary['code']}  project {summary['project']}  status "
                   f"{summary['status']}  verdict {summary['verdict']}  "
                   f"author {summary['author']}"))
    out.print(Text(f"purpose: {summary['purpose']}"))
    for f in summary["files"]:
        out.print(Text(f"  {f['name']}  sha256 {f['sha256']}"
                       + (f"  cells {f['cells']}" if f["cells"] else "")))
    for d in summary["decisions"]:
        out.print(Text(f"  {d['at']}  {d['reviewer']}: {d['decision']} ({d['reason']})"))
    if summary.get("outbox"):
        out.print(Text(f"outbox: {summary['outbox']}"))
    if summary.get("recalled_at"):
        out.print(Text(f"RECALLED {summary['recalled_at']}: {summary['recall_reason']}"))
    report = summary.get("check_report")
    if report and report.get("findings"):
        out.print(_findings_table(report, f"automated check: {report['verdict']}"))


@export_app.command("request")
def request_cmd(
    paths: list[Path] = typer.Argument(..., help="Output files to export."),
    project: str = typer.Option(..., "--project", help="Project code."),
    purpose: str = typer.Option(..., "--purpose", help="What is exported and why."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="JSON/YAML manifest declaring each file's kind and columns."
    ),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Submit outputs for export: freeze them, run the automatic check, queue or block."""
    from disclosure_review.requests import Status, create_request, request_summary

    settings = load_settings()
    actor = actor_name(as_user)
    with session_scope(settings) as session:
        if as_json or len(paths) < 2:
            request = create_request(session, settings, actor=actor, project=project,
                                     paths=paths, purpose=purpose, manifest=manifest)
        else:
            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("checking outputs", total=len(paths))
                request = create_request(session, settings, actor=actor, project=project,
                                         paths=paths, purpose=purpose, manifest=manifest,
                                         progress=lambda _p: bar.advance(task))
        summary = request_summary(request, with_report=True)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
        if summary["status"] == Status.BLOCKED:
            typer.echo(f"{summary['code']} is BLOCKED by the automatic check: fix the outputs, "
                       f"then `enclave export withdraw {summary['code']}` and submit again",
                       err=True)
        else:
            typer.echo(f"{summary['code']} queued for review")
    raise SystemExit(1 if summary["status"] == Status.BLOCKED else 0)


@export_app.command("withdraw")
def withdraw_cmd(
    code: str = typer.Argument(..., help="Export request code, e.g. EXP-000001."),
    reason: str | None = typer.Option(None, "--reason"),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Withdraw your blocked, queued or returned request."""
    from disclosure_review.requests import request_summary, withdraw

    settings = load_settings()
    with session_scope(settings) as session:
        summary = request_summary(withdraw(session, settings, actor=actor_name(as_user),
                                           code=code, reason=reason))
    if as_json:
        print_json(summary)
    else:
        typer.echo(f"{code} withdrawn")


@export_app.command("status")
def status_cmd(
    code: str = typer.Argument(..., help="Export request code."),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a request's status, files, decisions and automated findings."""
    _show(code, as_user, as_json)


def _show(code: str, as_user: str | None, as_json: bool) -> None:
    from disclosure_review.requests import check_may_view, get_request, request_summary

    settings = load_settings()
    with session_scope(settings) as session:
        request = get_request(session, code)
        check_may_view(session, actor_name(as_user), request)
        summary = request_summary(request, with_report=True)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)


@export_app.command("recall")
def recall_cmd(
    code: str = typer.Argument(..., help="Code of the released request."),
    reason: str = REASON_OPTION,
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Recall a released output found disclosive; the project's PI is notified."""
    from disclosure_review.requests import recall

    settings = load_settings()
    with session_scope(settings) as session:
        notes = recall(session, settings, actor=actor_name(as_user), code=code, reason=reason)
        notified = [n.username for n in notes]
    if as_json:
        print_json({"code": code, "status": "recalled", "notified": notified})
    else:
        typer.echo(f"{code} recalled; notified {', '.join(notified)}")


@export_app.command("verify-release")
def verify_release_cmd(
    folder: Path = typer.Argument(..., help="Outbox folder of one release."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a release folder against its signed manifest (exit 0 ok, 5 tampered, 1 recalled)."""
    from sqlalchemy import select

    from disclosure_review.release import verify_release
    from enclave.keys import KeyStore
    from enclave.state.models import ExportRequest

    settings = load_settings()
    manifest = verify_release(folder, KeyStore.for_home(settings.keys_dir).audit_verify_key())
    with session_scope(settings) as session:
        status = session.execute(
            select(ExportRequest.status).where(ExportRequest.code == manifest["request"])
        ).scalar_one_or_none()
    result = {"folder": str(folder), "request": manifest["request"], "verified": True,
              "files": len(manifest["files"]), "status": status or "unknown"}
    if as_json:
        print_json(result)
    else:
        typer.echo(f"{folder}: signature and {result['files']} file checksum(s) verified "
                   f"(request {manifest['request']}, status {result['status']})")
    if status == "recalled":
        typer.echo(f"request {manifest['request']} was RECALLED: destroy these files", err=True)
        raise SystemExit(1)


@review_app.command("list")
def list_cmd(
    status: str = typer.Option("queued", "--status", help="A status, or 'all'."),
    project: str | None = typer.Option(None, "--project"),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List export requests (default: those waiting for review)."""
    from disclosure_review.requests import (
        OVERSIGHT_ROLES,
        Status,
        get_project,
        list_requests,
        project_members,
        request_summary,
    )
    from enclave.roles import may_review_output
    from enclave.users import require

    wanted = None if status == "all" else Status(status)
    settings = load_settings()
    actor = actor_name(as_user)
    rows = []
    with session_scope(settings) as session:
        require(session, actor, OVERSIGHT_ROLES)
        members: dict[str, set[str]] = {}
        for request in list_requests(session, status=wanted, project=project):
            if request.project_code not in members:
                members[request.project_code] = project_members(
                    get_project(session, request.project_code))
            summary = request_summary(request)
            summary["you_may_review"] = may_review_output(actor, members[request.project_code])
            rows.append(summary)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"export requests ({status})")
    for header in ("code", "project", "author", "status", "verdict", "files", "approvals",
                   "you may review"):
        table.add_column(header)
    for r in rows:
        approvals = sum(d["decision"] == "approve" for d in r["decisions"])
        table.add_row(r["code"], r["project"], r["author"], r["status"], str(r["verdict"]),
                      str(len(r["files"])),
                      f"{approvals}/{2 if r['two_reviewers'] else 1}",
                      "yes" if r["you_may_review"] else "no (project member)")
    Console().print(table)


@review_app.command("show")
def show_cmd(
    code: str = typer.Argument(..., help="Export request code."),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a request with its automated report."""
    _show(code, as_user, as_json)


def _decide(code: str, decision: str, reason: str, as_user: str | None, as_json: bool) -> None:
    from disclosure_review.requests import Decision, decide, request_summary

    settings = load_settings()
    with session_scope(settings) as session:
        summary = request_summary(decide(session, settings, actor=actor_name(as_user),
                                         code=code, decision=Decision(decision), reason=reason))
    if as_json:
        print_json(summary)
    else:
        typer.echo(f"{code}: {decision} recorded; status {summary['status']}"
                   + (f"; released to {summary['outbox']}" if summary["outbox"] else ""))


@review_app.command("approve")
def approve_cmd(code: str = typer.Argument(...), reason: str = REASON_OPTION,
                as_user: str = AS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Approve a queued request (released once the policy's approvals are in)."""
    _decide(code, "approve", reason, as_user, as_json)


@review_app.command("reject")
def reject_cmd(code: str = typer.Argument(...), reason: str = REASON_OPTION,
               as_user: str = AS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Reject a queued request."""
    _decide(code, "reject", reason, as_user, as_json)


@review_app.command("request-changes")
def request_changes_cmd(code: str = typer.Argument(...), reason: str = REASON_OPTION,
                        as_user: str = AS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Return a queued request to its author for changes."""
    _decide(code, "request_changes", reason, as_user, as_json)


@notifications_app.command("list")
def notifications_list_cmd(
    unread: bool = typer.Option(False, "--unread", help="Only unread messages."),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Your notifications, newest first."""
    from disclosure_review.requests import list_notifications, notification_summary

    settings = load_settings()
    with session_scope(settings) as session:
        rows = [notification_summary(n) for n in
                list_notifications(session, username=actor_name(as_user), unread_only=unread)]
    if as_json:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"[{r['created_at']}] {r['subject']}\n    {r['body']}")
    if not rows:
        typer.echo("no notifications")
