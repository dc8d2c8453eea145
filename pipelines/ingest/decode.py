"""Bytes to string columns, in bounded chunks, with every malformed line kept as a fault.

A source file is read in blocks of ``chunk_bytes`` cut at a line end. Each block is decoded
with the file's encoding; a line that cannot be decoded is a ``bad_encoding`` fault (never a
crash, never silently replaced). Field counts are checked for all lines at once with NumPy
(the format has no quoting, so a separator count is exact); lines with too few or too many
fields are ``truncated_row`` / ``extra_fields`` faults. The remaining lines are parsed by
Polars into string columns, with their physical line numbers alongside.
"""

from __future__ import annotations

import io
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
    commas = np.flatnonzero(arr == ord(","))
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


def read_chunks(
    path: Path,
    *,
    expected_columns: list[str],
    encoding: str,
    chunk_bytes: int,
) -> Iterator[Chunk]:
    """Yield :class:`Chunk` objects covering every line of ``path`` after the header."""
    n_fields = len(expected_columns)
    with open(path, "rb") as handle:
        header, _ = _read_header(handle, path, encoding)
        check_header(path, header, expected_columns)
        next_line = 2
        carry = b""
        while True:
            block = handle.read(chunk_bytes)
            eof = not block
            data = carry + block
            if not data:
                return
            if eof:
                cut = len(data)
                if not data.endswith(b"\n"):
                    data += b"\n"
                    cut = len(data)
            else:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one enormous line: keep reading
                    carry = data
                    continue
            body, carry = data[:cut], data[cut:]
            n_lines = body.count(b"\n")
            utf8, faults = _decode_block(body, encoding, next_line)
            removed = np.array(sorted(f.line for f in faults), dtype=np.int64)
            if utf8:
                numbers, _ok, more, good = _line_structure(utf8, n_fields, next_line, removed)
                faults.extend(more)
            else:
                numbers, good = np.empty(0, dtype=np.int64), b""
            frame = _parse(good, expected_columns, numbers)
            yield Chunk(frame=frame, faults=faults, lines_read=n_lines)
            next_line += n_lines
            if eof:
                return


def _parse(data: bytes, columns: list[str], numbers: np.ndarray) -> pl.DataFrame:
    if not data:
        frame = pl.DataFrame({c: pl.Series(c, [], dtype=pl.String) for c in columns})
    else:
        frame = pl.read_csv(
            io.BytesIO(data),
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
        frame = frame.with_columns(pl.col(last).str.strip_suffix("\r"))
        frame = frame.with_columns(pl.when(pl.col(last) == "").then(None).otherwise(pl.col(last)).alias(last))
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
