"""Rule 9: differencing across outputs with Roaring bitmaps and a persistent store."""

import duckdb
import polars as pl
import pytest
from pyroaring import BitMap

from disclosure_review.differencing import (
    CellMembership,
    DifferencingHistory,
    DifferencingStoreError,
    memberships_from_frame,
)


def cell(output: str, label: str, units, kind: str = "person") -> CellMembership:
    return CellMembership(output, label, kind, BitMap(units))


def test_two_safe_outputs_jointly_isolating_three_people_are_caught(tmp_path):
    history = DifferencingHistory(tmp_path / "diff")
    # Output 1: people aged 65+ (100 people, indexes 0..99): safe alone.
    first = [cell("T1", "age=65+", range(100)), cell("T1", "age<65", range(100, 400))]
    assert history.check(first) == []
    history.record_release("T1", first)
    # Output 2: people aged 66+ (97 of the same people): safe alone (97 > 5), but the
    # difference 100 - 97 isolates the 3 people aged exactly 65.
    second = [cell("T2", "age=66+", range(3, 100)), cell("T2", "age<66", range(0, 3))
              .__class__("T2", "age<66", "person", BitMap(list(range(3)) + list(range(100, 400))))]
    reloaded = DifferencingHistory(tmp_path / "diff")  # from disk, lazily
    findings = reloaded.check(second)
    assert {(f.file, f.location) for f in findings} == {
        ("T2", "cell [age=66+]"), ("T2", "cell [age<66]")
    }
    detail = next(f.detail for f in findings if f.location == "cell [age=66+]")
    assert "'T1' cell [age=65+]" in detail and "3 person(s)" in detail
    assert all(f.severity.value == "fail" for f in findings)


def test_safe_sequence_passes(tmp_path):
    history = DifferencingHistory(tmp_path)
    history.record_release("T1", [cell("T1", "age=65+", range(100))])
    # Differences of 20 and overlaps of 80, an identical re-release, and a disjoint cell.
    new = [
        cell("T2", "age=70+", range(20, 100)),
        cell("T2", "again 65+", range(100)),
        cell("T2", "young", range(1000, 1100)),
    ]
    assert history.check(new) == []


@pytest.mark.parametrize(("overlap", "fails"), [(0, False), (1, True), (5, True), (6, False)])
def test_small_overlap_edges(tmp_path, overlap, fails):
    history = DifferencingHistory(tmp_path)
    history.record_release("A", [cell("A", "x", range(100))])
    # New cell: `overlap` shared people and 94+ others, so both differences are large.
    new = [cell("B", "y", list(range(100 - overlap, 100)) + list(range(200, 300)))]
    assert bool(history.check(new)) is fails


def test_cells_of_the_same_request_are_compared(tmp_path):
    history = DifferencingHistory(tmp_path)
    same = [cell("T", "all", range(50)), cell("T", "all but a few", range(46))]
    findings = history.check(same)
    assert len(findings) == 1 and "in the same request" in findings[0].detail


def test_unit_kinds_are_separate(tmp_path):
    history = DifferencingHistory(tmp_path)
    history.record_release("A", [cell("A", "hosp", range(10), kind="institution")])
    assert history.check([cell("B", "people", range(8))]) == []
    assert len(history.check([cell("B", "hosp", range(8), kind="institution")])) == 1


def test_store_is_atomic_and_replaces_records(tmp_path):
    history = DifferencingHistory(tmp_path)
    history.record_release("out/1", [cell("out/1", "a", range(10))])
    history.record_release("out/1", [cell("out/1", "a", range(20))])
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and not files[0].name.startswith(".tmp")
    assert DifferencingHistory(tmp_path).released_outputs() == ["out/1"]
    with pytest.raises(ValueError):
        history.record_release("x", [cell("y", "a", range(3))])
    files[0].write_bytes(b"garbage")
    with pytest.raises(DifferencingStoreError):
        DifferencingHistory(tmp_path).check([cell("z", "a", range(3))])


def test_memberships_from_polars_and_duckdb():
    frame = pl.DataFrame({"pid": [0, 1, 2, 3, 3], "sex": ["F", "F", "M", "M", "M"],
                          "age": ["65+", "<65", "65+", "65+", "65+"]})
    cells = memberships_from_frame(frame, output_id="T", unit_column="pid",
                                   group_columns=["sex", "age"])
    assert [(c.cell, list(c.members)) for c in cells] == [
        ("sex=F, age=65+", [0]), ("sex=F, age=<65", [1]), ("sex=M, age=65+", [2, 3]),
    ]
    con = duckdb.connect()
    rel = con.sql("select * from frame")
    assert [list(c.members) for c in memberships_from_frame(
        rel, output_id="T", unit_column="pid", group_columns=["sex"])] == [[0, 1], [2, 3]]
