"""The extract's data dictionary (Markdown and HTML), generated from the catalog.

Only the columns actually provided appear, each with its label (English and Chinese), its
form in the extract (pseudonym, coarsened, as stored), its role and code set; lineage and
unapproved columns never do.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, select_autoescape

from catalog import Catalog
from pipelines.provision.coarsen import describe
from pipelines.provision.select import FilePlan

MAX_LISTED_CODES = 40

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data dictionary {{ project }}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #bbb;padding:4px 8px;vertical-align:top}th{background:#eee}</style></head>
<body><h1>Data dictionary, project {{ project }}</h1>
<p>Identifiers are project pseudonyms (22-character text), valid in this project only.
Provisioned {{ provisioned_at }}.</p>
{% for f in files %}<h2>{{ f.name }}: {{ f.label_en }} ({{ f.label_zh }})</h2>
<p>{{ f.description }}<br>Grain: {{ f.grain }}. Years: {{ f.years|join(", ") }}.</p>
<table><tr><th>column</th><th>label</th><th>type in extract</th><th>role</th><th>codes</th></tr>
{% for c in f.columns %}<tr><td><code>{{ c.name }}</code></td><td>{{ c.label_en }}<br>{{ c.label_zh }}</td>
<td>{{ c.form }}</td><td>{{ c.role }}</td><td>{{ c.codes }}</td></tr>
{% endfor %}</table>{% endfor %}
</body></html>
"""


@dataclass
class _Col:
    name: str
    label_en: str
    label_zh: str
    form: str
    role: str
    codes: str


def _rows(plan: FilePlan, catalog: Catalog) -> list[_Col]:
    fd = catalog.file(plan.file)
    out = []
    for name in plan.columns:
        col = fd.column(name)
        if name in plan.identifiers:
            form = f"text: {plan.identifiers[name]} pseudonym of this project"
        elif name in plan.coarsen:
            form = describe(plan.coarsen[name])
        else:
            form = col.type
        codes = ""
        if col.codes:
            codeset = catalog.codesets[col.codes]
            listed = list(codeset.codes.items())
            codes = f"{col.codes}: " + "; ".join(f"{k} = {v.en}" for k, v in listed[:MAX_LISTED_CODES])
            if len(listed) > MAX_LISTED_CODES:
                codes += f"; ... ({len(listed)} codes)"
        elif col.check:
            codes = f"checked as {col.check}"
        out.append(_Col(name, col.label.en, col.label.zh, form, col.role, codes))
    return out


def _files(plans: list[FilePlan], catalog: Catalog) -> list[dict]:
    files = []
    for plan in plans:
        fd = catalog.file(plan.file)
        files.append({
            "name": plan.file, "label_en": fd.label.en, "label_zh": fd.label.zh,
            "description": fd.description.en, "grain": fd.grain, "years": list(plan.years),
            "columns": _rows(plan, catalog),
        })
    return files


def render_markdown(plans: list[FilePlan], catalog: Catalog, *, project: str, provisioned_at: str) -> str:
    """The dictionary as Markdown."""
    lines = [f"# Data dictionary, project {project}", "",
             "Identifiers are project pseudonyms (22-character text), valid in this project only. "
             f"Provisioned {provisioned_at}.", ""]
    for f in _files(plans, catalog):
        lines += [f"## {f['name']}: {f['label_en']} ({f['label_zh']})", "",
                  f"{f['description']}", "", f"Grain: {f['grain']}. Years: "
                  f"{', '.join(map(str, f['years']))}.", "",
                  "| column | label | type in extract | role | codes |", "|---|---|---|---|---|"]
        for c in f["columns"]:
            cells = [f"`{c.name}`", f"{c.label_en} / {c.label_zh}", c.form, c.role, c.codes]
            lines.append("| " + " | ".join(s.replace("|", "\\|") for s in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def render_html(plans: list[FilePlan], catalog: Catalog, *, project: str, provisioned_at: str) -> str:
    """The dictionary as a standalone HTML page."""
    env = Environment(autoescape=select_autoescape(default=True))
    return env.from_string(_HTML).render(project=project, provisioned_at=provisioned_at,
                                         files=_files(plans, catalog))
