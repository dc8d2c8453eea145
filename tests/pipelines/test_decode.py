"""The reader's cheap clean-block test must never hide a malformed line.

A block passes the fast path only when its separator total is exactly right and the strict
parser accepts it; these blocks are built so that the separator total *is* right while some
lines are still wrong (faults that compensate each other), and every such line must still be
reported with its physical line number.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pipelines.ingest.decode import read_chunks

COLUMNS = ["A", "B", "C"]


def _read(path: Path, body: bytes, chunk_bytes: int = 1 << 20):
    path.write_bytes(b"A,B,C\n" + body)
    chunks = list(read_chunks(path, expected_columns=COLUMNS, encoding="utf-8", chunk_bytes=chunk_bytes))
    faults = sorted((f.line, f.rule) for c in chunks for f in c.faults)
    lines = [n for c in chunks for n in c.frame.get_column("_line").to_list()]
    rows = [r for c in chunks for r in c.frame.drop("_line").rows()]
    return faults, lines, rows


@pytest.mark.parametrize(
    ("body", "expected_faults", "good_lines"),
    [
        # one line short, one line long: the separator total matches a clean block
        (b"1,2,3\n4,5\n6,7,8,9\n1,2,3\n", [(3, "truncated_row"), (4, "extra_fields")], [2, 5]),
        # the long line first (the parser's schema comes from the first line)
        (b"1,2,3,4\n5,6\n1,2,3\n", [(2, "extra_fields"), (3, "truncated_row")], [4]),
        # a blank line paid for by a line with two extra fields
        (b"1,2,3\n\n1,2,3,4,5\n7,8,9\n", [(3, "blank_line"), (4, "extra_fields")], [2, 5]),
        # CRLF with a blank CRLF line and a compensating long line
        (b"1,2,3\r\n\r\n1,2,3,4,5\r\n", [(3, "blank_line"), (4, "extra_fields")], [2]),
    ],
)
def test_compensating_faults_are_still_found(tmp_path: Path, body: bytes, expected_faults, good_lines) -> None:
    faults, lines, _ = _read(tmp_path / "f.csv", body)
    assert faults == expected_faults
    assert lines == good_lines


def test_clean_blocks_keep_exact_line_numbers_and_nulls(tmp_path: Path) -> None:
    body = b"".join(f"{i},,x{i}\r\n".encode() for i in range(1000)) + b"a,b,\r\n"
    faults, lines, rows = _read(tmp_path / "f.csv", body, chunk_bytes=4096)
    assert faults == []
    assert lines == list(range(2, 1003))
    assert rows[0] == ("0", None, "x0")
    # an empty last field is null, and the CR of a CRLF line is not part of it
    assert rows[-1] == ("a", "b", None)


def test_a_faulty_line_in_one_block_does_not_disturb_the_next(tmp_path: Path) -> None:
    good = b"1,2,3\n" * 500
    body = good + b"1,2\n" + good
    faults, lines, _ = _read(tmp_path / "f.csv", body, chunk_bytes=1024)
    assert faults == [(502, "truncated_row")]
    assert lines == list(range(2, 502)) + list(range(503, 1003))


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_spans_cover_every_line_once_with_exact_numbers(tmp_path: Path, ending: bytes, trailing_newline: bool) -> None:
    from pipelines.ingest.decode import split_spans

    lines = [f"{i},{'x' * (i % 7)},{i * 3}".encode() for i in range(5000)]
    lines[1234] = b"1,2"  # a faulty line somewhere in the middle keeps its number
    body = ending.join(lines) + (ending if trailing_newline else b"")
    path = tmp_path / "f.csv"
    path.write_bytes(b"A,B,C" + ending + body)
    whole = list(read_chunks(path, expected_columns=COLUMNS, encoding="utf-8", chunk_bytes=4096))
    spans = split_spans(path, expected_columns=COLUMNS, encoding="utf-8", parts=4, min_bytes=1000)
    assert len(spans) == 4
    assert spans[0].start == len(b"A,B,C" + ending) and spans[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    parts = [
        c
        for s in spans
        for c in read_chunks(path, expected_columns=COLUMNS, encoding="utf-8", chunk_bytes=4096, span=s)
    ]

    def summary(chunks):
        lines = [n for c in chunks for n in c.frame.get_column("_line").to_list()]
        rows = [r for c in chunks for r in c.frame.drop("_line").rows()]
        faults = [(f.line, f.rule) for c in chunks for f in c.faults]
        return lines, rows, faults, sum(c.lines_read for c in chunks)

    assert summary(parts) == summary(whole)
    assert summary(whole)[2] == [(1236, "truncated_row")]
    assert summary(whole)[3] == 5000


def test_small_files_stay_one_span(tmp_path: Path) -> None:
    from pipelines.ingest.decode import split_spans

    path = tmp_path / "f.csv"
    path.write_bytes(b"A,B,C\n" + b"1,2,3\n" * 10)
    spans = split_spans(path, expected_columns=COLUMNS, encoding="utf-8", parts=2, min_bytes=1 << 20)
    assert [(s.start, s.end, s.first_line) for s in spans] == [(6, 66, 2)]
