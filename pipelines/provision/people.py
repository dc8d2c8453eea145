"""The project's people: one DuckDB table, ``project_people``, from one GROUP BY over the
vault's person summaries (:mod:`pipelines.person_summary`).

One row per person in the person column of the approved files (in the approved years): the
stage-1 ``token``; ``opted_out`` on the registry now; ``files``, a bit per approved person
file the person appears in (for the excluded people per file); and ``sex``, ``birth`` and
``region`` from any vault file of those years that carries them (aggregate use only; region
from enrollment when the vault holds it). The representativeness report counts from it. It
is built beside the pseudonymization, off the path the copy waits for.
"""

from __future__ import annotations

import duckdb

from catalog import Catalog
from pipelines.person_summary import PeopleFor, has_demographics, has_region, person_column
from pipelines.provision.errors import ProvisionError
from pipelines.provision.select import FilePlan

TABLE = "project_people"
_GATHERED = "project_people_gathered"


def _file_bits(plans: list[FilePlan]) -> dict[str, int]:
    """One bit per approved file with a person column, for the ``files`` mask."""
    files = [p.file for p in plans if p.person_column]
    if len(files) > 62:
        raise ProvisionError(f"{len(files)} approved person files; the people table tracks at most 62")
    return {file: 1 << i for i, file in enumerate(files)}


def _literal(expression: str) -> bool:
    return expression.startswith("NULL") or expression in ("true", "false") or expression.split("::")[0].isdigit()


def gather(con: duckdb.DuckDBPyConnection, *, plans: list[FilePlan], catalog: Catalog, people_for: PeopleFor) -> None:
    """The GROUP BY: the people with their flags and demographics, before the opt-out flag.

    Reads the vault's person summaries (:mod:`pipelines.person_summary`), or the rows of
    batches without one. Needs only the plans and the vault, so it can run before the opt-out
    registry is read. Plain tables of the in-memory database, not temporary ones, so that
    cursors in other threads see them.
    """
    years = sorted({y for p in plans for y in p.years})
    in_plan = {(p.file, y) for p in plans if p.person_column for y in p.years}
    bits = _file_bits(plans)
    sources = []  # ({output column: expression}, query with columns token, sex, birth, region)
    for fd in catalog.files:
        if person_column(fd) is None:
            continue
        for year in years:
            planned = (fd.name, year) in in_plan
            found = people_for(fd.name, year) if (planned or has_demographics(fd)) else None
            if found:
                sources.append(({
                    "sex": "sex" if has_demographics(fd) else "NULL::VARCHAR",
                    "birth": "birth" if has_demographics(fd) else "NULL::DATE",
                    "region": "region" if has_region(fd) else "NULL::VARCHAR",
                    "files": f"{bits[fd.name] if planned else 0}::BIGINT",
                    "in_plan": str(planned).lower(),
                }, found.select(fd)))
    if not any(columns["in_plan"] == "true" for columns, _ in sources):
        con.execute(
            f"CREATE OR REPLACE TABLE {_GATHERED} (token BLOB, sex VARCHAR, birth DATE, region VARCHAR, files BIGINT)"
        )
        return
    # A column that is the same literal in every source is left out of the GROUP BY (in the
    # usual project every file read is approved and has no region: 0.21 instead of 0.30 CPU-s
    # for 10 M visits read from their rows).
    aggregate = {"sex": "any_value", "birth": "any_value", "region": "any_value", "files": "bit_or"}
    outer, carried = [], []
    for name, function in aggregate.items():
        values = {columns[name] for columns, _ in sources}
        constant = values.pop() if len(values) == 1 else None
        if constant is not None and _literal(constant):
            outer.append(f"{constant} AS {name}")
        else:
            carried.append(name)
            outer.append(f"{function}({name}) AS {name}")
    filtered = any(columns["in_plan"] == "false" for columns, _ in sources)
    if filtered:
        carried.append("in_plan")
    union = " UNION ALL ".join(
        "SELECT token" + "".join(f", {columns[name]} AS {name}" for name in carried) + f" FROM ({query})"
        for columns, query in sources
    )
    con.execute(
        f"CREATE OR REPLACE TABLE {_GATHERED} AS SELECT token, {', '.join(outer)} FROM ({union}) "
        "GROUP BY token" + (" HAVING bool_or(in_plan)" if filtered else "")
    )


def flag_opted_out(con: duckdb.DuckDBPyConnection) -> int:
    """Create ``project_people`` from :func:`gather`'s table and table ``optout``
    (:func:`pipelines.provision.extract.register_optouts`); return its number of rows."""
    con.execute(
        f"CREATE OR REPLACE TABLE {TABLE} AS SELECT token, token IN (SELECT token FROM optout) AS opted_out, "
        f"files, sex, birth, region FROM {_GATHERED}"
    )
    con.execute(f"DROP TABLE {_GATHERED}")
    return int(con.sql(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0])


def excluded_people(con: duckdb.DuckDBPyConnection, plans: list[FilePlan]) -> dict[str, int]:
    """Per approved file with a person column, the distinct opted-out people whose rows are
    excluded (over all approved years: a person excluded in two years counts once per file)."""
    bits = _file_bits(plans)
    if not bits:
        return {}
    counts = con.sql(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE opted_out AND files & {bit} <> 0)" for bit in bits.values())
        + f" FROM {TABLE}"
    ).fetchall()[0]
    return dict(zip(bits, (int(n) for n in counts), strict=True))
