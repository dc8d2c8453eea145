"""The toolkit on the demo extract: tables, SQL, read-only DuckDB, safe-output helpers whose
recorded cell membership matches the data, sidecars, and no path outside the project."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from pyroaring import BitMap

import enclave.toolkit as toolkit
from disclosure_review.cells import read_cells
from enclave.toolkit import (
    SafeOutputError,
    UnknownTableError,
    collapse_small,
    crosstab,
    open_project,
    round_to,
    save_output,
    summarise,
)
from enclave.toolkit._env import ToolkitEnvironmentError


@pytest.fixture
def project(extract_env):
    return open_project()


def _truth(project, frame: pl.DataFrame, groups: list[str]) -> dict[tuple, BitMap]:
    """Expected members computed independently: plain Python sets over a joined frame."""
    index = dict(project.person_index().collect().iter_rows())
    expected: dict[tuple, set[int]] = {}
    for row in frame.select(*groups, "ID").iter_rows():
        expected.setdefault(tuple(str(v) for v in row[:-1]), set()).add(index[row[-1]])
    return {k: BitMap(sorted(v)) for k, v in expected.items()}


def test_tables_lazy_sql_dictionary(project):
    assert project.tables == ["H_NHI_OPDTE", "H_NHI_OPDTO"]
    visits = project.lazy("H_NHI_OPDTE").collect()
    assert {"ID", "ID_S", "ICD9CM_1", "year"} <= set(visits.columns)
    counts = project.sql('SELECT year, COUNT(*) AS n FROM "H_NHI_OPDTE" GROUP BY year ORDER BY year')
    assert counts["n"].sum() == visits.height
    assert counts["year"].to_list() == [2020, 2021]
    assert "## H_NHI_OPDTE" in project.dictionary()
    assert project.sql("SELECT COUNT(*) AS n FROM person_index")["n"].item() == 400
    with pytest.raises(UnknownTableError, match="H_NHI_OPDTE"):
        project.lazy("H_NHI_IPDTE")


def test_duckdb_connection_is_read_only(project):
    con = project.duckdb()
    assert con.execute('SELECT COUNT(DISTINCT ID) FROM "H_NHI_OPDTE"').fetchone()[0] == 400
    with pytest.raises(duckdb.Error, match=r"(?i)read.only"):
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()


def test_view_database_goes_with_the_project(extract_env):
    import gc

    project = open_project()
    assert project.sql('SELECT COUNT(*) AS n FROM "H_NHI_OPDTE"')["n"].item() > 0
    folder = project._views_database.parent
    assert folder.is_dir()
    project.close()
    del project
    gc.collect()
    assert not folder.exists()


def test_crosstab_counts_and_membership_are_true(project):
    visits = project.lazy("H_NHI_OPDTE").filter(pl.col("year") == 2021).collect()
    table = crosstab(visits, rows="ICD9CM_1", cols="ID_S")
    truth = _truth(project, visits, ["ICD9CM_1", "ID_S"])
    assert table.table.columns == ["ICD9CM_1", "ID_S", "n"]
    assert table.table.height == len(truth)
    for row, bits in zip(table.table.iter_rows(), table.members, strict=True):
        assert bits == truth[(row[0], row[1])]
        assert row[2] == len(bits)
    # Distinct people, not visits.
    assert table.table["n"].sum() < visits.height


def test_save_output_writes_csv_and_sidecar(project, extract_env):
    visits = project.lazy("H_NHI_OPDTE").filter(pl.col("year") == 2020)
    table = crosstab(visits, rows="ID_S")
    path = save_output(table, "sex.csv")
    assert path == extract_env.projects_dir / "P2026-0001" / "scratch" / "rex" / "outputs" / "sex.csv"
    assert pl.read_csv(path).equals(table.table)
    cells = read_cells(path.with_name("sex.csv.cells.parquet"))
    assert [c.cell for c in cells] == ["ID_S=F", "ID_S=M"]
    assert [c.members for c in cells] == list(table.members)
    assert {c.output_id for c in cells} == {"sex.csv"}
    # A plain frame replaces the sidecar of an earlier table of the same name.
    save_output(pl.DataFrame({"term": ["a"], "coef": [1.0]}), "sex.csv")
    assert not path.with_name("sex.csv.cells.parquet").exists()
    with pytest.raises(SafeOutputError):
        save_output(table, "../escape.csv")


def test_collapse_small_merges_until_every_cell_is_large(project):
    # Age bands of people with a 2021 visit: the oldest bands are small in the demo data.
    people = (project.lazy("H_NHI_OPDTE").filter(pl.col("year") == 2021)
              .group_by("ID").agg(born=pl.col("ID_BIRTHDAY").first().dt.year(),
                                  sex=pl.col("ID_S").first())
              .with_columns(band=pl.when(pl.col("born") < 1940).then(pl.lit("80+"))
                            .when(pl.col("born") < 1945).then(pl.lit("75-79"))
                            .when(pl.col("born") < 1980).then(pl.lit("41-74"))
                            .otherwise(pl.lit("<41"))).collect())
    raw = crosstab(people, rows="band", cols="sex")
    safe = collapse_small(raw, "band", threshold=5)
    assert safe.smallest() > 5
    # Every merged cell is exactly the union of its parts; nobody is lost or counted twice.
    assert sum(len(b) for b in safe.members) == sum(len(b) for b in raw.members)
    union = BitMap()
    for bits in safe.members:
        assert not (union & bits)
        union |= bits
    assert safe.table["n"].to_list() == [len(b) for b in safe.members]


def test_collapse_small_with_forced_small_cell(project):
    frame = pl.DataFrame({"ID": project.person_index().collect()["pseudonym"][:40]}).with_columns(
        grp=pl.Series(["a"] * 30 + ["b"] * 7 + ["c"] * 3))
    raw = crosstab(frame, rows="grp")
    assert raw.table["n"].to_list() == [30, 7, 3]
    safe = collapse_small(raw, "grp", threshold=5)
    assert safe.table.rows() == [("a", 30), ("b/c", 10)]
    assert safe.notes and "b" in safe.notes[0]
    assert safe.members[1] == raw.members[1] | raw.members[2]
    with pytest.raises(SafeOutputError, match="not a dimension"):
        collapse_small(raw, "nope")


def test_round_to_and_summarise(project):
    visits = project.lazy("H_NHI_OPDTE").filter(pl.col("year") == 2020)
    table = crosstab(visits, rows="ID_S")
    rounded = round_to(table, 5)
    assert all(v % 5 == 0 for v in rounded.table["n"])
    assert rounded.members == table.members
    assert rounded.notes
    summary = summarise(visits, "ID_S", "T_DOT", stats=("mean", "sd"))
    assert summary.table.columns == ["ID_S", "n", "T_DOT_mean", "T_DOT_sd"]
    expected = visits.group_by("ID_S").agg(pl.col("T_DOT").mean()).sort("ID_S").collect()
    assert np.allclose(summary.table["T_DOT_mean"].to_numpy(), expected["T_DOT"].to_numpy())
    assert summary.table["n"].to_list() == table.table["n"].to_list()
    with pytest.raises(SafeOutputError, match="unknown statistic"):
        summarise(visits, "ID_S", "T_DOT", stats=("p99",))


def test_unit_column_must_hold_project_pseudonyms(project):
    frame = pl.DataFrame({"ID": ["not-a-pseudonym", "x"], "g": ["a", "b"]})
    with pytest.raises(SafeOutputError, match="not a pseudonym of this project"):
        crosstab(frame, rows="g")
    with pytest.raises(SafeOutputError, match="unit column"):
        crosstab(frame, rows="g", unit="PERSON")


def test_toolkit_knows_only_its_environment(monkeypatch):
    monkeypatch.delenv("ENCLAVE_EXTRACT", raising=False)
    with pytest.raises(ToolkitEnvironmentError, match="ENCLAVE_EXTRACT"):
        open_project()
    # No code path of the toolkit imports the home settings, the state store or the keys,
    # or names ENCLAVE_HOME (docstrings may mention them; code may not).
    imported: set[str] = set()
    literals: set[str] = set()
    for module in (toolkit, toolkit.project, toolkit.tables, toolkit.export, toolkit._env):
        tree = ast.parse(inspect.getsource(module))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef)
                      and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docstrings:
                literals.add(node.value)
    forbidden = {"enclave.config", "enclave.state", "enclave.state.db", "enclave.keys",
                 "enclave.audit", "pipelines.vault", "enclave.projects.service"}
    assert not (imported & forbidden)
    assert not [s for s in literals if "ENCLAVE_HOME" in s or "ENCLAVE_DATABASE_URL" in s]


def test_open_project_needs_a_real_folder(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        open_project(Path(tmp_path / "missing"))
