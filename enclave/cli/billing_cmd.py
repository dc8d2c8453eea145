"""``enclave billing ...``: fee notices (HTML/PDF), payments, direct charges, ledger, report."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from enclave.cli._app import AS_OPTION, JSON_OPTION, actor_name, app, print_json
from enclave.config import load_settings
from enclave.state.db import session_scope

billing_app = typer.Typer(help="Fee notices, payments, the ledger and monthly reports.",
                          no_args_is_help=True)
app.add_typer(billing_app, name="billing")


@billing_app.command("notice")
def notice_cmd(
    number: str,
    out: Path = typer.Option(None, "--out", help="Folder to write NUMBER.html and NUMBER.pdf."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a fee notice; with --out render it as HTML and PDF."""
    from enclave.billing import invoice, notices

    settings = load_settings()
    with session_scope(settings) as session:
        notice = notices.get(session, number)
        doc = {"number": notice.number, "purpose": notice.purpose, "total": notice.total,
               "issued_on": notice.issued_on, "due_on": notice.due_on, "status": notice.status,
               "items": [line.as_dict() for line in notices.lines_of(notice)]}
        if out is not None:
            rendered = invoice.render(session, number, out)
            doc["html"], doc["pdf"] = str(rendered.html), str(rendered.pdf)
    if as_json:
        print_json(doc)
        return
    typer.echo(f"{doc['number']} ({doc['purpose']}) {doc['status']}, due {doc['due_on']}")
    for item in doc["items"]:
        typer.echo(f"  {item['description']}: {item['quantity']} x {item['unit_price']:,} = "
                   f"{item['amount']:,}")
    typer.echo(f"  total NT$ {doc['total']:,}")
    if out is not None:
        typer.echo(f"wrote {doc['html']} and {doc['pdf']}")


@billing_app.command("pay")
def pay_cmd(
    number: str,
    reference: str = typer.Option(..., "--reference", help="Receipt or transfer number."),
    paid_on: str = typer.Option(None, "--date", help="YYYY-MM-DD (default today)."),
    as_user: str = AS_OPTION,
) -> None:
    """Record the payment of a fee notice (custodian)."""
    from enclave.projects import service

    settings = load_settings()
    actor = actor_name(as_user)
    with service.audited_refusal(settings, actor=actor, action="billing.payment", obj=number), \
            session_scope(settings) as session:
        notice = service.record_payment(
            session, settings, actor=actor, notice_number=number,
            paid_on=date.fromisoformat(paid_on) if paid_on else service.today(),
            reference=reference)
        status = notice.status
    typer.echo(f"{number}: {status}")


@billing_app.command("charge")
def charge_cmd(
    project: str,
    kind: str,
    quantity: str = typer.Option(..., "--quantity",
                                 help="Units (person-days for analysis_on_behalf, may be 1.5)."),
    reference: str = typer.Option(..., "--reference", help="Booking, run or job id."),
    on: str = typer.Option(None, "--date", help="YYYY-MM-DD (default today)."),
    as_user: str = AS_OPTION,
) -> None:
    """Post a usage or service charge priced from the fee schedule (custodian)."""
    from enclave.billing import ledger
    from enclave.projects.service import audited_refusal, today
    from enclave.roles import Role
    from enclave.users import require

    settings = load_settings()
    actor = actor_name(as_user)
    with audited_refusal(settings, actor=actor, action="billing.charge", obj=kind,
                         project=project), session_scope(settings) as session:
        who = require(session, actor, Role.CUSTODIAN)
        entry = ledger.post_at_schedule(
            session, settings, project_id=project, kind=kind, quantity=quantity,
            occurred_on=date.fromisoformat(on) if on else today(), reference=reference,
            actor=who.username)
        amount = entry.amount
    typer.echo(f"{project}: {kind} NT$ {amount:,} posted")


@billing_app.command("ledger")
def ledger_cmd(
    project: str = typer.Option(None, "--project"),
    month: str = typer.Option(None, "--month", help="YYYY-MM"),
    out: Path = typer.Option(None, "--out", help="Write the CSV here instead of stdout."),
) -> None:
    """The billing ledger as CSV."""
    from enclave.billing import ledger
    from enclave.billing.report import month_bounds

    start, end = month_bounds(month) if month else (None, None)
    settings = load_settings()
    with session_scope(settings) as session:
        text = ledger.to_csv(ledger.entries(session, project=project, start=start, end=end))
    if out is not None:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text, nl=False)


@billing_app.command("report")
def report_cmd(
    month: str = typer.Option(..., "--month", help="YYYY-MM"), as_json: bool = JSON_OPTION
) -> None:
    """Monthly totals over all projects and charge kinds."""
    from enclave.billing.report import monthly_report

    settings = load_settings()
    with session_scope(settings) as session:
        report = monthly_report(session, month).as_dict()
    if as_json:
        print_json(report)
        return
    typer.echo(f"billing report {month}: {report['entries']} ledger entries")
    for kind, amount in report["by_kind"].items():
        if amount:
            typer.echo(f"  {kind:<22} NT$ {amount:>12,}")
    for code, amount in report["by_project"].items():
        typer.echo(f"  project {code:<14} NT$ {amount:>12,}")
    typer.echo(f"  total                  NT$ {report['total']:>12,}")
    typer.echo(f"notices issued {report['notices_issued']}, paid {report['notices_paid']} "
               f"(NT$ {report['paid_amount']:,}), void {report['notices_void']}")
