"""``enclave optout import/status/stats``: the citizens' opt-out registry."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from enclave.cli._app import AS_OPTION, JSON_OPTION, actor_name, app, print_json
from enclave.config import load_settings
from enclave.errors import InputError
from enclave.state.db import session_scope

optout_app = typer.Typer(help="The opt-out registry (stage-1 tokens only).", no_args_is_help=True)
app.add_typer(optout_app, name="optout")


@optout_app.command("import")
def import_cmd(
    files: list[Path] = typer.Argument(..., help="CSV lists with ID, EFFECTIVE_DATE, CHANNEL, ACTION."),
    channel: str = typer.Option(None, "--channel", help="Set the channel for every row (e.g. agency)."),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Merge opt-out lists (counter, web, app, other agencies) into the registry."""
    from enclave.optout import import_list

    settings = load_settings()
    results = []
    for path in files:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        with session_scope(settings) as session:
            results.append(import_list(session, settings, path, actor=actor_name(as_user), channel=channel).to_dict())
    if as_json:
        print_json(results)
        return
    for r in results:
        typer.echo(
            f"{r['file']}: read {r['rows_read']}, imported {r['imported']}, "
            f"already known {r['duplicates']}, rejected {r['rejected']}"
        )
        for bad in r["rejected_rows"]:
            typer.echo(f"  line {bad['line']}: {bad['problem']}")


@optout_app.command("status")
def status_cmd(
    national_id: str = typer.Argument(..., help="The person's national ID or resident number."),
    reason: str = typer.Option(..., "--reason", help="Why you look this person up (audited)."),
    on: str = typer.Option(None, "--on", help="Status on this date (YYYY-MM-DD; default today)."),
    as_user: str = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Whether one person is opted out (custodian, with a stated reason)."""
    from enclave.optout import person_status

    day = date.fromisoformat(on) if on else None
    settings = load_settings()
    with session_scope(settings) as session:
        status = person_status(session, settings, national_id, actor=actor_name(as_user), reason=reason, at=day)
    payload = {"opted_out": status.opted_out, "since": status.since, "channel": status.channel, "events": status.events}
    if as_json:
        print_json(payload)
    elif status.opted_out:
        typer.echo(f"opted out since {status.since} ({status.channel}) · 已申請停止使用")
    else:
        typer.echo("not opted out · 未申請停止使用")


@optout_app.command("stats")
def stats_cmd(as_user: str = AS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Opt-outs by channel and month; flags months that are abnormal spikes."""
    from enclave.optout import stats
    from enclave.roles import Role
    from enclave.users import require

    settings = load_settings()
    with session_scope(settings) as session:
        require(session, actor_name(as_user), [Role.CUSTODIAN, Role.AUDITOR, Role.STEWARD])
        result = stats(session, settings)
    if as_json:
        print_json(
            {
                "by_channel_month": result.by_channel_month,
                "by_month": result.by_month,
                "spikes": result.spikes,
                "currently_opted_out": result.currently_opted_out,
            }
        )
        return
    table = Table("month", "opt-outs", "trailing mean", "spike")
    spike_months = {s["month"] for s in result.spikes}
    for row in result.by_month:
        mean = row["trailing_mean"]
        table.add_row(
            row["month"],
            str(row["count"]),
            f"{mean:.1f}" if mean is not None else "-",
            "SPIKE 異常" if row["month"] in spike_months else "",
        )
    Console().print(table)
    typer.echo(f"currently opted out: {result.currently_opted_out}")
