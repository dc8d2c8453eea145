"""The project's people table: who is in it, in which approved files, whose demographics come
from files the project was not given, and the excluded people per file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from catalog import load_catalog
from pipelines import person_summary
from pipelines.provision import people
from pipelines.provision.extract import connect, register_optouts
from pipelines.provision.select import FilePlan

VISITS = [
    (b"p1", "1", date(1950, 3, 4)),
    (b"p1", "1", date(1950, 3, 4)),
    (b"p2", "2", date(2001, 7, 8)),
    (b"p3", "2", date(1988, 1, 2)),
]
ENROLLED = [
    (b"p1", "1", date(1950, 3, 4), "0100"),
    (b"p2", "2", date(2001, 7, 8), "6300"),
    (b"p9", "1", date(1970, 1, 1), "0200"),
]  # p9 has no visit


def _vault(tmp_path: Path, *, summarised: bool) -> Path:
    """One batch folder of the vault (``batch=x/file=F/year=2023/part-0.parquet``), with its
    person summaries written as ingest writes them, or without (a batch from before them)."""
    batch = tmp_path / "vault" / "batch=x"
    con = duckdb.connect()
    for name, rows, columns in [
        ("H_NHI_OPDTE", VISITS, "ID BLOB, ID_S VARCHAR, ID_BIRTHDAY DATE"),
        ("H_NHI_ENROL", ENROLLED, "ID BLOB, ID_S VARCHAR, ID_BIRTHDAY DATE, ID1_CITY VARCHAR"),
    ]:
        con.execute(f"CREATE TABLE t ({columns})")
        con.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(rows[0]))})", rows)
        path = batch / f"file={name}" / "year=2023" / "part-0.parquet"
        path.parent.mkdir(parents=True)
        con.execute(f"COPY t TO '{path}' (FORMAT parquet)")
        con.execute("DROP TABLE t")
    if summarised:
        written = person_summary.write_summaries(con, batch, load_catalog())
        assert sorted(p.relative_to(batch).as_posix() for p in written) == [
            "people/file=H_NHI_ENROL/year=2023.parquet",
            "people/file=H_NHI_OPDTE/year=2023.parquet",
        ]
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in written)
    return batch


def _plan(file: str, *, person_approved: bool) -> FilePlan:
    return FilePlan(
        file=file,
        years=(2023,),
        columns=("ID", "ID_S") if person_approved else ("ID_S",),
        identifiers={"ID": "person"} if person_approved else {},
        person_column="ID",
        person_required=True,
    )


@pytest.fixture(params=[True, False], ids=["summaries", "rows"])
def summarised(request) -> bool:
    return request.param


def _people(
    tmp_path: Path, plans: list[FilePlan], opted_out: set[bytes], summarised: bool = True
) -> dict[bytes, tuple]:
    batch = _vault(tmp_path, summarised=summarised)
    con = connect(memory_limit="1GB", threads=1, temp_dir=tmp_path / "tmp")
    register_optouts(con, opted_out)
    people.gather(con, plans=plans, catalog=load_catalog(), people_for=person_summary.people_in_batches([batch]))
    count = people.flag_opted_out(con)
    rows = con.sql(f"SELECT token, opted_out, files, sex, birth, region FROM {people.TABLE}").fetchall()
    assert count == len(rows)
    return {bytes(r[0]): r[1:] for r in rows}


def test_people_of_the_approved_file_with_region_from_enrollment_the_project_was_not_given(tmp_path, summarised):
    got = _people(tmp_path, [_plan("H_NHI_OPDTE", person_approved=True)], {b"p2"}, summarised)
    assert got == {
        b"p1": (False, 1, "1", date(1950, 3, 4), "0100"),
        b"p2": (True, 1, "2", date(2001, 7, 8), "6300"),
        b"p3": (False, 1, "2", date(1988, 1, 2), None),  # not enrolled: no region
    }  # p9 is only enrolled, and enrollment is not approved: not one of the project's people


def test_files_mask_says_which_approved_files_name_each_person(tmp_path):
    got = _people(
        tmp_path, [_plan("H_NHI_OPDTE", person_approved=True), _plan("H_NHI_ENROL", person_approved=False)], set()
    )
    assert {t: row[1] for t, row in got.items()} == {b"p1": 3, b"p2": 3, b"p3": 1, b"p9": 2}
    assert got[b"p9"][2:] == ("1", date(1970, 1, 1), "0200")


def test_without_a_person_file_the_table_is_empty(tmp_path):
    plan = FilePlan(file="H_NHI_OPDTE", years=(2022,), columns=("ID_S",), person_column="ID")
    assert _people(tmp_path, [plan], set()) == {}


@pytest.mark.parametrize("opted", [set(), {b"p1", b"p3", b"unknown"}])
def test_opt_out_flag_marks_exactly_the_registered_people(tmp_path, opted):
    got = _people(tmp_path, [_plan("H_NHI_OPDTE", person_approved=True)], opted)
    assert {t for t, row in got.items() if row[0]} == opted & {b"p1", b"p2", b"p3"}


@pytest.mark.parametrize(
    ("approved", "expected"),
    [(["H_NHI_OPDTE"], {"H_NHI_OPDTE": 2}), (["H_NHI_OPDTE", "H_NHI_ENROL"], {"H_NHI_OPDTE": 2, "H_NHI_ENROL": 2})],
)
def test_excluded_people_are_counted_per_approved_file(tmp_path, approved, expected, summarised):
    batch = _vault(tmp_path, summarised=summarised)
    con = connect(memory_limit="1GB", threads=1, temp_dir=tmp_path / "tmp")
    register_optouts(con, {b"p2", b"p3", b"p9"})
    plans = [_plan(file, person_approved=file == "H_NHI_OPDTE") for file in approved]
    people.gather(con, plans=plans, catalog=load_catalog(), people_for=person_summary.people_in_batches([batch]))
    people.flag_opted_out(con)
    # Opted out: p2 (visits and enrollment), p3 (visits only), p9 (enrollment only).
    assert people.excluded_people(con, plans) == expected
    assert people.excluded_people(con, []) == {}


def test_batches_with_and_without_summaries_read_together(tmp_path):
    old = _vault(tmp_path / "old", summarised=False)
    new = _vault(tmp_path / "new", summarised=True)
    con = connect(memory_limit="1GB", threads=1, temp_dir=tmp_path / "tmp")
    register_optouts(con, set())
    people_for = person_summary.people_in_batches([old, new])
    found = people_for("H_NHI_OPDTE", 2023)
    assert len(found.summaries) == 1 and len(found.rows) == 1
    plans = [_plan("H_NHI_OPDTE", person_approved=True)]
    people.gather(con, plans=plans, catalog=load_catalog(), people_for=people_for)
    assert people.flag_opted_out(con) == 3  # p1, p2, p3: the same people in both batches
    assert not people_for("H_NHI_OPDTE", 2022)
