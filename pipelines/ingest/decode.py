"""Bytes to string columns, in bounded chunks, with every malformed line kept as a fault.

A source file is read in blocks of ``chunk_bytes`` cut at a line end. Each block is decoded
with the file's encoding; a line that cannot be decoded is a ``bad_encoding`` fault (never a
crash, never silently replaced). A block whose separator total is exactly right and which the
strict parser accepts is clean (see :func:`_clean_block`); any other block has its field
counts checked line by line with NumPy (the format has no quoting, so a separator count is
exact), and lines with too few or too many fields are ``truncated_row`` / ``extra_fields``
faults. The remaining lines are parsed by
Polars into string columns, with their physical line numbers alongside.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.ingest.errors import IngestError

LINE_COLUMN = "_line"
_NL = 10
_CR = 13
_COMMA = 44


@dataclass(frozen=True)
class StructuralFault:
    """A line that never became a row: which line, which rule, and its raw bytes."""

    line: int
    rule: str
    detail: str
    raw: bytes


@dataclass
class Chunk:
    """Rows of one block: string columns plus ``_line`` (1-based physical line numbers)."""

    frame: pl.DataFrame
    faults: list[StructuralFault] = field(default_factory=list)
    lines_read: int = 0
    bytes_read: int = 0  # of the source file, for progress against its size


def _read_header(handle, path: Path, encoding: str) -> tuple[list[str], bytes]:
    first = handle.readline()
    if not first:
        raise IngestError(f"{path.name}: the file is empty (no header line)")
    raw = first.rstrip(b"\r\n")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path.name}: line 1 (header) is not valid {encoding}: {exc}") from exc
    return [name.strip() for name in text.split(",")], first


def check_header(path: Path, header: list[str], expected: list[str]) -> None:
    """The header must name exactly the catalog's columns in order, or the file is refused."""
    if header == expected:
        return
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unexpected {extra}")
    if not parts:
        parts.append("columns are in a different order than the catalog")
    raise IngestError(f"{path.name}: line 1 (header) does not match the catalog: {'; '.join(parts)}")


def _decode_block(block: bytes, encoding: str, first_line: int) -> tuple[bytes, list[StructuralFault]]:
    """Return the block as UTF-8 with undecodable lines removed, and those lines as faults."""
    try:
        text = block.decode(encoding)
    except UnicodeDecodeError:
        pass
    else:
        return (block if encoding == "utf-8" else text.encode("utf-8")), []
    faults: list[StructuralFault] = []
    good: list[str] = []
    pos = 0
    # Only blocks with a bad byte get here; decode line-run by line-run around each failure.
    while pos < len(block):
        try:
            good.append(block[pos:].decode(encoding))
            break
        except UnicodeDecodeError as exc:
            bad_at = pos + exc.start
            start = block.rfind(b"\n", 0, bad_at) + 1
            end = block.find(b"\n", bad_at)
            end = len(block) if end < 0 else end + 1
            if start > pos:
                good.append(block[pos:start].decode(encoding))
            line_no = first_line + block.count(b"\n", 0, start)
            raw = block[start:end].rstrip(b"\r\n")
            bad_bytes = raw[exc.start - (start - pos) : exc.end - (start - pos)]
            faults.append(
                StructuralFault(
                    line_no,
                    "bad_encoding",
                    f"bytes {bad_bytes.hex()} at column {bad_at - start + 1} are not valid {encoding}",
                    raw,
                )
            )
            pos = end
    return "".join(good).encode("utf-8"), faults


def _line_structure(
    data: bytes, n_fields: int, first_line: int, removed_lines: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[StructuralFault], bytes]:
    """Split ``data`` (UTF-8, ends with a newline) into lines and check their field counts.

    Returns line numbers of the good lines, their count, faults, and the good lines' bytes.
    ``removed_lines`` are line numbers already taken out of ``data`` (bad encoding), needed
    to keep physical line numbers exact.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(arr == _NL)
    starts = np.empty_like(ends)
    starts[0:1] = 0
    starts[1:] = ends[:-1] + 1
    # Separators per line: find every comma once, then count those before each line end.
    commas = np.flatnonzero(arr == _COMMA)
    counts = np.diff(np.searchsorted(commas, ends), prepend=0)
    lengths = ends - starts
    has_cr = np.zeros(len(ends), dtype=bool)
    nonempty = lengths > 0
    has_cr[nonempty] = arr[ends[nonempty] - 1] == _CR
    blank = (lengths - has_cr) == 0
    # Physical line numbers: consecutive, skipping lines removed for bad encoding.
    numbers = np.arange(first_line, first_line + len(ends) + len(removed_lines), dtype=np.int64)
    if len(removed_lines):
        numbers = numbers[~np.isin(numbers, removed_lines)]
    numbers = numbers[: len(ends)]
    ok = (counts == n_fields - 1) & ~blank
    faults = []
    for i in np.flatnonzero(~ok):
        raw = data[starts[i] : ends[i]].rstrip(b"\r")
        if blank[i]:
            rule, detail = "blank_line", "empty line"
        elif counts[i] < n_fields - 1:
            rule, detail = "truncated_row", f"{counts[i] + 1} fields, expected {n_fields}"
        else:
            rule, detail = "extra_fields", f"{counts[i] + 1} fields, expected {n_fields}"
        faults.append(StructuralFault(int(numbers[i]), rule, detail, raw))
    if ok.all():
        return numbers, ok, faults, data
    keep = np.repeat(ok, lengths + 1)
    return numbers[ok], ok, faults, arr[keep].tobytes()


@dataclass(frozen=True)
class Span:
    """A run of whole lines of a source file: bytes ``[start, end)``, its first line being
    physical line ``first_line`` (the header is line 1)."""

    start: int
    end: int
    first_line: int


def _count_lines(handle, start: int, end: int, block: int = 16 << 20) -> int:
    handle.seek(start)
    count = 0
    while start < end:
        data = handle.read(min(block, end - start))
        if not data:
            break
        count += int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == _NL))
        start += len(data)
    return count


def split_spans(path: Path, *, expected_columns: list[str], encoding: str, parts: int, min_bytes: int) -> list[Span]:
    """Check the header, then cut the rest of the file at line ends into at most ``parts``
    spans of at least ``min_bytes`` each, with the physical line number each span starts at.

    Raises
    ------
    IngestError
        The file is empty or its header does not match the catalog.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header, first = _read_header(handle, path, encoding)
        check_header(path, header, expected_columns)
        body = len(first)
        count = max(1, min(parts, (size - body) // max(min_bytes, 1)))
        cuts = [body]
        for k in range(1, count):
            handle.seek(body + (size - body) * k // count)
            handle.readline()  # move to the start of the next whole line
            cut = handle.tell()
            if cuts[-1] < cut < size:
                cuts.append(cut)
        cuts.append(size)
        spans = []
        line = 2
        for start, end in itertools.pairwise(cuts):
            spans.append(Span(start, end, line))
            if end < size:
                line += _count_lines(handle, start, end)
    return spans


def read_chunks(
    path: Path,
    *,
    expected_columns: list[str],
    encoding: str,
    chunk_bytes: int,
    span: Span | None = None,
) -> Iterator[Chunk]:
    """Yield :class:`Chunk` objects covering every line of ``path`` after the header, or, with
    ``span``, every line of that span (its header was checked by :func:`split_spans`)."""
    n_fields = len(expected_columns)
    with open(path, "rb") as handle:
        if span is None:
            header, _ = _read_header(handle, path, encoding)
            check_header(path, header, expected_columns)
            next_line = 2
            remaining = -1
        else:
            handle.seek(span.start)
            next_line = span.first_line
            remaining = span.end - span.start
        carry = b""
        while True:
            if remaining < 0:
                block = handle.read(chunk_bytes)
            else:
                block = handle.read(min(chunk_bytes, remaining)) if remaining else b""
                remaining -= len(block)
            eof = not block
            data = carry + block
            if not data:
                return
            if eof:
                consumed = len(data)
                if not data.endswith(b"\n"):
                    data += b"\n"
                cut = len(data)
            else:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one enormous line: keep reading
                    carry = data
                    continue
                consumed = cut
            body, carry = data[:cut], data[cut:]
            n_lines = int(np.count_nonzero(np.frombuffer(body, dtype=np.uint8) == _NL))
            utf8, faults = _decode_block(body, encoding, next_line)
            removed = np.array(sorted(f.line for f in faults), dtype=np.int64)
            frame = _clean_block(utf8, expected_columns, next_line, n_lines) if not faults else None
            if frame is None:
                if utf8:
                    numbers, _ok, more, good = _line_structure(utf8, n_fields, next_line, removed)
                    faults.extend(more)
                else:
                    numbers, good = np.empty(0, dtype=np.int64), b""
                frame = _parse(good, expected_columns, numbers)
            yield Chunk(frame=frame, faults=faults, lines_read=n_lines, bytes_read=consumed)
            next_line += n_lines
            if eof:
                return


def _clean_block(data: bytes, columns: list[str], first_line: int, n_lines: int) -> pl.DataFrame | None:
    """Parse a block that is structurally clean, or return None when it may not be.

    The exact per-line check (:func:`_line_structure`) costs as much as parsing, and nearly
    every block of a real file is clean, so this cheap test goes first: when the block's
    separators number exactly ``lines × (fields - 1)`` and the strict parser (which refuses any
    line with too many fields) succeeds, no line can have too few fields either, and blank
    lines (no separators) cannot occur. Anything else returns None and the caller takes the
    exact path, which names every faulty line. ``n_lines`` is the block's line count (decoding
    a block without faults keeps every line end).
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    if not n_lines or int(np.count_nonzero(arr == _COMMA)) != n_lines * (len(columns) - 1):
        return None
    try:
        frame = _read_csv(data, columns)
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, pl.exceptions.ShapeError):
        return None
    if frame.height != n_lines:
        return None
    numbers = np.arange(first_line, first_line + n_lines, dtype=np.int64)
    return frame.with_columns(pl.Series(LINE_COLUMN, numbers, dtype=pl.Int64))


def _read_csv(data: bytes, columns: list[str]) -> pl.DataFrame:
    frame = pl.read_csv(
        data,
        has_header=False,
        new_columns=columns,
        infer_schema=False,
        quote_char=None,
        separator=",",
        empty_string_is_null=True,
        truncate_ragged_lines=False,
    )
    # Trailing carriage returns (CRLF files) belong to the line end, not the last field.
    last = columns[-1]
    return frame.with_columns(
        pl.col(last).str.strip_suffix("\r").replace("", None).alias(last),
    )


def _parse(data: bytes, columns: list[str], numbers: np.ndarray) -> pl.DataFrame:
    if not data:
        frame = pl.DataFrame({c: pl.Series(c, [], dtype=pl.String) for c in columns})
    else:
        frame = _read_csv(data, columns)
    if frame.height != len(numbers):
        raise IngestError(f"internal: parsed {frame.height} rows but counted {len(numbers)} lines")
    return frame.with_columns(pl.Series(LINE_COLUMN, numbers, dtype=pl.Int64))


def prefetch(chunks: Iterator[Chunk], depth: int = 1) -> Iterator[Chunk]:
    """Decode and parse the next chunk in a background thread while the caller works on this one.

    NumPy, Polars and the file reads release the GIL, so reading overlaps validation and
    writing on a second core. At most ``depth`` chunks wait in memory. Errors of the reader
    are raised in the caller; a caller that stops early stops the reader.
    """
    pending: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        pending.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            pending.put(done)
        except BaseException as exc:  # handed to the caller, who re-raises it
            pending.put(exc)

    worker = threading.Thread(target=produce, name="ingest-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = pending.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                pending.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)
