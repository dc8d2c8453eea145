"""The batch report: JSON for scripts, one HTML page for people (reconciliation per file,
quarantine counts by rule, great-expectations results per column, integrity warnings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, select_autoescape

if TYPE_CHECKING:
    from pipelines.ingest.batch import BatchResult

_TEMPLATE_FILE = Path(__file__).with_name("templates") / "report.html.j2"


def write_report(result: BatchResult, folder: Path) -> None:
    """Write ``report.json`` and ``report.html`` for a batch into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    (folder / "report.json").write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    env = Environment(autoescape=select_autoescape(default=True))
    html = env.from_string(_TEMPLATE_FILE.read_text(encoding="utf-8")).render(r=result, reconciled=result.reconciled)
    (folder / "report.html").write_text(html, encoding="utf-8")
