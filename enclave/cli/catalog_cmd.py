"""``enclave catalog``: list the source files, show a file's data dictionary, validate a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from enclave.cli._app import JSON_OPTION, app, print_json

catalog_app = typer.Typer(help="The NHI source-file catalog (files, columns, code sets).")
app.add_typer(catalog_app, name="catalog")


def _pick(label: Any, lang: str) -> str:
    if lang == "both":
        return f"{label.en} / {label.zh}"
    return getattr(label, lang)


@catalog_app.command("list")
def list_files(as_json: bool = JSON_OPTION) -> None:
    """List every source file: name, kind, label, number of columns, classification."""
    from catalog import load_catalog

    rows = [
        {
            "name": f.name,
            "kind": f.kind,
            "label_en": f.label.en,
            "label_zh": f.label.zh,
            "columns": len(f.columns),
            "classification": f.classification,
        }
        for f in load_catalog().files
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("name", "kind", "label", "columns", "class")
    for r in rows:
        table.add_row(
            r["name"], r["kind"], f"{r['label_en']} / {r['label_zh']}",
            str(r["columns"]), r["classification"],
        )  # fmt: skip
    Console().print(table)


def _rule(col: Any, codesets: Any) -> str:
    if col.codes:
        values = ", ".join(codesets[col.codes].codes)
        return f"codes {col.codes}: {values}"
    parts = []
    if col.pattern:
        parts.append(f"pattern {col.pattern}")
    if col.check:
        parts.append(f"check {col.check}")
    if col.range:
        lo = "" if col.range.min is None else f"{col.range.min:g} <= "
        hi = "" if col.range.max is None else f" <= {col.range.max:g}"
        parts.append(f"range {lo}x{hi}")
    return escape("; ".join(parts))


@catalog_app.command("show")
def show(
    name: str = typer.Argument(..., help="File name, e.g. H_NHI_OPDTE."),
    as_json: bool = JSON_OPTION,
    lang: str = typer.Option("both", "--lang", help="Label language: en, zh or both."),
) -> None:
    """Print the data dictionary of one file: every column, keys, parent, references."""
    from catalog import load_catalog
    from enclave.errors import InputError

    if lang not in ("en", "zh", "both"):
        raise InputError(f"--lang must be en, zh or both (got {lang!r})")
    cat = load_catalog()
    fd = cat.file(name)
    if as_json:
        doc = fd.model_dump(mode="json")
        for col in doc["columns"]:
            col["classification"] = col["classification"] or fd.classification
            if col["codes"]:
                col["allowed_values"] = list(cat.codeset(col["codes"]).codes)
        print_json(doc)
        return
    console = Console()
    console.print(
        f"[bold]{fd.name}[/bold]  {_pick(fd.label, lang)}  ({fd.kind}, class {fd.classification})"
    )
    console.print(_pick(fd.description, lang))
    console.print(
        f"grain: {fd.grain}; year column: {fd.year_column}; source: {escape(fd.source_pattern)}"
    )
    console.print(f"primary key: {', '.join(fd.primary_key)}")
    if fd.parent:
        console.print(f"parent: {fd.parent.file} on {', '.join(fd.parent.columns)} (hard rule)")
    for ref in fd.references:
        where = f" where {ref.where}" if ref.where else ""
        console.print(
            f"reference ({ref.severity}): {', '.join(ref.columns)} -> "
            f"{ref.file}.{', '.join(ref.file_columns)}{where}"
        )
    for inv in fd.invariants:
        console.print(f"invariant ({inv.severity}) {inv.name}: {_pick(inv.description, lang)}")
    table = Table("column", "type", "width", "req", "label", "role", "identifier", "coarsen",
                  "rule", "class")  # fmt: skip
    for col in fd.columns:
        table.add_row(
            col.name, col.type, str(col.width), "yes" if col.required else "",
            _pick(col.label, lang), col.role, col.identifier or "", col.coarsen or "",
            _rule(col, cat.codesets), col.classification or fd.classification,
        )  # fmt: skip
    console.print(table)


@catalog_app.command("validate")
def validate(
    path: Path = typer.Argument(None, help="Catalog folder (files/, codes/); default: packaged."),
) -> None:
    """Load a catalog folder and report OK or the first error (exit code 2 on error)."""
    from catalog import CatalogError, load_catalog

    try:
        cat = load_catalog(path)
    except CatalogError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    typer.echo(f"OK: {len(cat.files)} files, {len(cat.codesets)} code sets")
