"""``enclave export``: the automated disclosure check of outputs (``export check``).

Exit codes (scripts and the portal rely on them): 0 pass, 1 fail, 3 needs human review,
2 usage or input error (unreadable file, empty table, bad manifest or policy).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from enclave.cli._app import JSON_OPTION, app, print_json

export_app = typer.Typer(help="Check and export research outputs.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("check")
def check(
    paths: list[Path] = typer.Argument(..., help="Output files of one export request."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="JSON/YAML manifest declaring each file's kind and columns."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="YAML/JSON file overriding keys of policies/disclosure.yaml."
    ),
    project: str | None = typer.Option(
        None, "--project", help="Project ID: enables the project-pseudonym rule."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the automated disclosure rules; exit 0 pass, 1 fail, 3 review, 2 input error."""
    from disclosure_review.checker import check_paths
    from disclosure_review.context import resolve_project_context
    from disclosure_review.policy import load_policy

    resolved_policy = load_policy(override=policy)
    context = resolve_project_context(project) if project else None
    console = Console(stderr=True)
    if as_json or len(paths) < 2:
        report = check_paths(paths, manifest=manifest, policy=resolved_policy, project=context)
    else:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("checking outputs", total=len(paths))
            report = check_paths(paths, manifest=manifest, policy=resolved_policy,
                                 project=context, progress=lambda _p: bar.advance(task))
    if as_json:
        print_json(report.to_dict())
    else:
        out = Console()
        if report.findings:
            table = Table(title=f"disclosure check: {report.verdict.value.upper()}")
            for header in ("severity", "rule", "file", "location", "detail"):
                table.add_column(header, overflow="fold")
            for f in report.findings:
                # Text(): locations such as row[sex=F] are not Rich markup.
                table.add_row(*(Text(x) for x in (f.severity.value, f.rule, f.file,
                                                  f.location, f.detail)))
            out.print(table)
        out.print(Text(f"verdict: {report.verdict.value} (policy: {report.policy})"))
    # SystemExit, not typer.Exit: the root runs click with standalone_mode=False, which would
    # turn typer.Exit into a return value and lose the exit code.
    raise SystemExit(report.exit_code)
