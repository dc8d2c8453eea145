"""The representativeness report: how excluding the opted-out people shifts the population.

For the people of the project's approved files (before exclusion) the report counts, by age
group, sex and region, everyone ("all") and those left after the opt-outs ("kept"), and the
visits by ICD-10 chapter of the principal diagnosis with and without the opted-out people's;
it gives each category's share in both, the absolute shift in percentage points and the
relative shift. A category whose shift exceeds the policy
threshold (``policies/provisioning.yaml``) is flagged. Output: ``summary.json``, one PNG per
dimension (:mod:`pipelines.provision.bar_chart`) and ``report.html`` (jinja2). All counts come from DuckDB
aggregates over the vault; no row-level data leaves this module.
"""

from __future__ import annotations

import json
from datetime import date
from itertools import pairwise
from pathlib import Path

import duckdb
import polars as pl
from jinja2 import Environment, select_autoescape

from catalog import Catalog
from pipelines.person_summary import person_column
from pipelines.provision import people
from pipelines.provision.bar_chart import grouped_bar_chart
from pipelines.provision.extract import PathsFor
from pipelines.provision.policy import RepresentativenessPolicy
from pipelines.provision.select import FilePlan
from pipelines.vault import parquet_source, quote

DIMENSIONS = ("age_group", "sex", "region", "icd10_chapter")
DIAGNOSIS_COLUMN = "ICD9CM_1"

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Representativeness {{ project }}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}
td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}
td.l{text-align:left}.warn{background:#fdd}</style></head><body>
<h1>Representativeness of the extract, project {{ project }}</h1>
<p>People in the approved files: {{ s.people_all }}; opted out and excluded:
{{ s.people_excluded }} ({{ "%.3f"|format(s.excluded_share * 100) }} %).
Thresholds: {{ s.thresholds.max_abs_shift_pp }} percentage points or
{{ (s.thresholds.max_rel_shift * 100)|round(1) }} % relative, for categories of at least
{{ s.thresholds.min_category_people }} people.</p>
{% if s.warnings %}<p class="warn"><b>Warning:</b> {{ s.warnings|length }} categories shift
beyond the threshold: {% for w in s.warnings %}{{ w.dimension }} {{ w.category }}
{{- ", " if not loop.last }}{% endfor %}.</p>
{% else %}<p>No shift exceeds the thresholds.</p>{% endif %}
{% for dim, rows in s.dimensions.items() %}<h2>{{ dim }}</h2><img src="{{ dim }}.png" alt="{{ dim }}">
<table><tr><th>category</th><th>all</th><th>kept</th><th>share all %</th><th>share kept %</th>
<th>shift (pp)</th><th>relative %</th></tr>
{% for r in rows %}<tr{% if r.warning %} class="warn"{% endif %}>
<td class="l">{{ r.category }}</td><td>{{ r.n_all }}</td>
<td>{{ r.n_kept }}</td><td>{{ "%.3f"|format(r.share_all * 100) }}</td><td>{{ "%.3f"|format(r.share_kept * 100) }}</td>
<td>{{ "%.3f"|format(r.abs_shift_pp) }}</td><td>{{ "%.2f"|format(r.rel_shift * 100) }}</td></tr>
{% endfor %}</table>{% endfor %}</body></html>
"""


def shifts(counts: pl.DataFrame, policy: RepresentativenessPolicy) -> pl.DataFrame:
    """Shares and shifts per (dimension, category) from counts ``n_all`` and ``n_kept``.

    A share is over the dimension's total (people for age group, sex and region, where each
    person is in one category; visits for the ICD-10 chapter of the principal diagnosis).
    ``warning`` is true where the category is large enough and the absolute (percentage
    points) or relative shift exceeds the policy.
    """
    share_all = pl.col("n_all") / pl.col("n_all").sum().over("dimension").clip(lower_bound=1)
    share_kept = pl.col("n_kept") / pl.col("n_kept").sum().over("dimension").clip(lower_bound=1)
    out = counts.with_columns(share_all.alias("share_all"), share_kept.alias("share_kept"))
    out = out.with_columns(
        ((pl.col("share_kept") - pl.col("share_all")) * 100).alias("abs_shift_pp"),
        pl.when(pl.col("share_all") > 0)
        .then(pl.col("share_kept") / pl.col("share_all") - 1)
        .otherwise(0.0)
        .alias("rel_shift"),
    )
    big = pl.col("n_all") >= policy.min_category_people
    over = (pl.col("abs_shift_pp").abs() > policy.max_abs_shift_pp) | (
        pl.col("rel_shift").abs() > policy.max_rel_shift
    )
    return out.with_columns((big & over).alias("warning")).sort("dimension", "category")


def _age_sql(birth: str, edges: list[int], on: date) -> str:
    age = f"date_diff('year', {birth}, DATE '{on.isoformat()}')"
    parts = ["CASE"]
    for low, high in pairwise(edges):
        parts.append(f"WHEN {age} < {high} THEN '{low:02d}-{high - 1:02d}'")
    parts.append(f"WHEN {age} >= {edges[-1]} THEN '{edges[-1]:02d}+'")
    parts.append("ELSE 'unknown' END")
    return " ".join(parts)


def compute_counts(
    con: duckdb.DuckDBPyConnection, *, plans: list[FilePlan], catalog: Catalog, paths_for: PathsFor,
    policy: RepresentativenessPolicy,
) -> tuple[pl.DataFrame, int, int]:
    """Counts per (dimension, category) for all people and for those kept, from the people table
    (:func:`pipelines.provision.people.gather`, then :func:`~pipelines.provision.people.flag_opted_out`)
    on ``con``, and from the rows and ``optout`` for the visits."""
    years = sorted({y for p in plans for y in p.years})
    people_all, people_kept = con.sql(
        f"SELECT count(*), count(*) FILTER (WHERE NOT opted_out) FROM {people.TABLE}").fetchall()[0]
    if not people_all:
        return pl.DataFrame(schema={"dimension": pl.String, "category": pl.String,
                                    "n_all": pl.Int64, "n_kept": pl.Int64}), 0, 0
    on = date(years[-1], 12, 31)
    rep = (f"(SELECT opted_out, {_age_sql('birth', policy.age_edges, on)} AS age_group, "
           f"coalesce(sex, 'unknown') AS sex, coalesce(region, 'unknown') AS region FROM {people.TABLE})")
    chapters = catalog.codesets["icd10cm_chapters"].chapters or []
    # Chapter ranges are contiguous 3-character categories. Visits are first counted per
    # diagnosis code (a few thousand groups), then per category, and only those groups are
    # classed into chapters: the string work runs on thousands of rows instead of once per
    # visit (10 M visits: 0.17 CPU-s against 0.47 cutting every code).
    chapter_sql = "CASE " + " ".join(
        f"WHEN category3 BETWEEN '{c.range[0]}' AND '{c.range[1]}' "
        f"THEN '{c.chapter:02d} {c.en.replace(chr(39), chr(39) * 2)}'" for c in chapters
    ) + " ELSE 'unknown' END"
    dx_sources = []
    for fd in catalog.files:
        person = person_column(fd)
        if person is None or DIAGNOSIS_COLUMN not in fd.column_names or not chapters:
            continue
        paths = [p for y in years for p in paths_for(fd.name, y)]
        if paths:
            dx_sources.append(
                f"SELECT t.{DIAGNOSIS_COLUMN} AS code, count(*) AS n_all, "
                f"count(*) FILTER (WHERE o.token IS NULL) AS n_kept "
                f"FROM {parquet_source(paths)} t LEFT JOIN optout o ON t.{quote(person)} = o.token GROUP BY ALL")
    queries = [
        f"SELECT '{dim}' AS dimension, {dim} AS category, count(*) AS n_all, "
        f"count(*) FILTER (WHERE NOT opted_out) AS n_kept FROM {rep} GROUP BY ALL"
        for dim in ("age_group", "sex", "region")
    ]
    if dx_sources:
        # Diagnoses are counted per visit (claim): every claim has one principal diagnosis.
        queries.append(
            f"SELECT 'icd10_chapter' AS dimension, {chapter_sql} AS category, sum(n_all)::BIGINT AS n_all, "
            "sum(n_kept)::BIGINT AS n_kept FROM ("
            "SELECT left(code, 3) AS category3, sum(n_all) AS n_all, sum(n_kept) AS n_kept FROM ("
            + " UNION ALL ".join(dx_sources) + ") GROUP BY category3) GROUP BY ALL"
        )
    counts = pl.DataFrame(con.sql(" UNION ALL ".join(queries)).to_arrow_table())
    return counts.with_columns(pl.col("n_all").cast(pl.Int64), pl.col("n_kept").cast(pl.Int64)), \
        int(people_all), int(people_kept)


_AXIS_LABELS = {"icd10_chapter": "share of visits (%)"}


def _plot(rows: pl.DataFrame, dimension: str, path: Path) -> None:
    grouped_bar_chart(
        path, title=dimension, categories=rows.get_column("category").to_list(),
        series=[("all people", (rows["share_all"] * 100).to_list()),
                ("without opt-outs", (rows["share_kept"] * 100).to_list())],
        axis_label=_AXIS_LABELS.get(dimension, "share of people (%)"))


def write_report(
    folder: Path, *, project: str, counts: pl.DataFrame, people_all: int, people_kept: int,
    policy: RepresentativenessPolicy,
) -> dict:
    """Write ``summary.json``, ``<dimension>.png`` and ``report.html``; return the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    table = shifts(counts, policy)
    dims: dict[str, list[dict]] = {}
    for dim in DIMENSIONS:
        rows = table.filter(pl.col("dimension") == dim)
        if rows.height:
            dims[dim] = rows.drop("dimension").to_dicts()
            _plot(rows, dim, folder / f"{dim}.png")
    warnings = [
        {"dimension": r["dimension"], "category": r["category"],
         "abs_shift_pp": r["abs_shift_pp"], "rel_shift": r["rel_shift"]}
        for r in table.filter(pl.col("warning")).to_dicts()
    ]
    summary = {
        "project": project,
        "people_all": people_all,
        "people_kept": people_kept,
        "people_excluded": people_all - people_kept,
        "excluded_share": (people_all - people_kept) / people_all if people_all else 0.0,
        "thresholds": policy.model_dump(),
        "warnings": warnings,
        "dimensions": dims,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    env = Environment(autoescape=select_autoescape(default=True))
    (folder / "report.html").write_text(env.from_string(_HTML).render(project=project, s=summary),
                                        encoding="utf-8")
    return summary
