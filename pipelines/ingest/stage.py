"""One span of a source file into the batch's staging area: decode → rules → tokens → Parquet.

A span (a run of whole lines, see :func:`pipelines.ingest.decode.split_spans`) is processed
the same way in the orchestrating process or in a worker process. Everything it produces is
a file under the batch's staging folder, named by file order and span index so spans never
collide: accepted rows (``vault/``), rejected rows (``quarantine/``), each column's distinct
values for great-expectations (``distinct/``) and the escrow of the identifiers it hashed
(``escrow-parts/``). Counts come back as a :class:`SpanResult`.
"""

from __future__ import annotations

import gc
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from catalog import Catalog
from catalog.model import FileDef
from pipelines.ingest import quarantine
from pipelines.ingest.decode import Span, prefetch, read_chunks
from pipelines.ingest.errors import SpanAborted
from pipelines.ingest.rules import compile_rules, data_year, distinct_values, evaluate, typed
from pipelines.ingest.tokens import Tokenizer

# Called after each chunk with (source file name, lines read, bytes of the file read).
Progress = Callable[[str, int, int], None]

# Set in worker processes: a crash test's fault point then takes the whole ingest down, and
# the orchestrator can stop a span it no longer needs (an event shared between processes).
PARENT_PID: int | None = None
ABORT = None


def fault_point(name: str) -> None:
    """Crash on purpose at a named point (tests of crash safety set ENCLAVE_FAULT_POINT)."""
    if os.environ.get("ENCLAVE_FAULT_POINT") == name:
        if PARENT_PID is not None:
            os.kill(PARENT_PID, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


# Null counts only: the vault is read in whole (file, year) folders, never pruned by value, so
# per-page min/max statistics bought nothing and cost 16 % of every write (their string
# comparisons), about 0.6 CPU-s per worker on a 10 M-row file. Extracts keep full statistics.
_STATISTICS = {"min": False, "max": False, "distinct_count": False, "null_count": True}


def write_private_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write a custodian-only (0600) Parquet file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # zstd level 1: the same size as the default level on claims data, measurably less CPU.
    frame.write_parquet(path, compression="zstd", compression_level=1, statistics=_STATISTICS)
    os.chmod(path, 0o600)


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while chunks stream through.

    The loop makes millions of short-lived objects (identifier strings, digests) but no
    reference cycles; each generation-2 collection would walk every object of the process
    (great-expectations alone brings about a million), which measured seconds per batch.
    Reference counting still frees everything; collection resumes afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Writer:
    """Writes staged Parquet files, on a second thread when ``background`` (Polars releases the
    GIL while it encodes and compresses), at most ``depth`` files in flight; a write error
    surfaces at the next submit or at :meth:`close`."""

    def __init__(self, background: bool, depth: int = 3) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") if background else None
        self._pending: deque = deque()
        self._depth = depth

    def submit(self, frame: pl.DataFrame, path: Path) -> None:
        if self._pool is None:
            write_private_parquet(frame, path)
            return
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(write_private_parquet, frame, path))

    def close(self) -> None:
        if self._pool is None:
            return
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)


@dataclass
class SpanResult:
    """What one span produced besides its staged files."""

    source_file: str
    rows_read: int = 0
    invariant_fail: dict[str, int] = field(default_factory=dict)


def staged_name(order: int, span: int, chunk: int) -> str:
    return f"{order:03d}-{span:02d}-{chunk:05d}"


class SpanIngest:
    """Streams one span of one source file through decode → rules → tokens → staging.

    With ``overlap``, the next chunk is read and the last ones written on helper threads while
    this one is validated: right for a process with a multi-threaded Polars pool. A worker
    process with one Polars thread on its own core does everything in order (measured faster:
    the helper threads only compete for that core).
    """

    def __init__(
        self,
        *,
        path: Path,
        definition: FileDef,
        order: int,
        span_index: int,
        span: Span | None,
        catalog: Catalog,
        tokenizer: Tokenizer,
        staging: Path,
        encoding: str,
        chunk_bytes: int,
        overlap: bool = True,
    ) -> None:
        self.overlap = overlap
        self.path = path
        self.fd = definition
        self.order = order
        self.span_index = span_index
        self.span = span
        self.catalog = catalog
        self.tokenizer = tokenizer
        self.staging = staging
        self.encoding = encoding
        self.chunk_bytes = chunk_bytes
        self.rules = compile_rules(definition, catalog)
        self.rule_details = {(r.name, r.column): r.description for r in self.rules}
        self.distinct: dict[str, list[pl.Series]] = {}
        self.result = SpanResult(path.name)

    def _track_distinct(self, distinct: dict[str, pl.Series]) -> None:
        for column, values in distinct.items():
            parts = self.distinct.setdefault(column, [])
            parts.append(values)
            if len(parts) >= 8:
                # Keep memory at one copy of each column's distinct values, not one per chunk.
                self.distinct[column] = [pl.concat(parts).unique()]

    def _name(self, chunk_no: int) -> str:
        return staged_name(self.order, self.span_index, chunk_no)

    def _write_accepted(self, accepted: pl.DataFrame, chunk_no: int) -> None:
        fd = self.fd
        frame = accepted.with_columns(
            data_year(fd).alias("_year"),
            pl.lit(self.path.name).alias("_source"),
            pl.lit(self.order, pl.Int32).alias("_order"),
        )
        frame = typed(frame, fd)
        for inv in fd.invariants:
            if inv.expr:
                bad = frame.select((~pl.sql_expr(inv.expr)).fill_null(False).sum()).item()
                if bad:
                    fails = self.result.invariant_fail
                    fails[inv.name] = fails.get(inv.name, 0) + int(bad)
        drop = [c.name for c in fd.drop_columns]
        if drop:
            frame = frame.drop(drop)
        frame = frame.with_columns(
            self.tokenizer.map_column(frame.get_column(c.name), c.identifier) for c in fd.identifier_columns
        )
        years = frame.get_column("_year").unique()
        if years.len() == 1:
            parts = {(years[0],): frame}  # the usual case: one data year per file
        else:
            parts = frame.partition_by("_year", as_dict=True, maintain_order=True)
        for (year,), part in parts.items():
            out = self.staging / "vault" / f"file={fd.name}" / f"year={year}" / f"part-{self._name(chunk_no)}.parquet"
            self.writer.submit(part.drop("_year"), out)

    def run(self, progress: Progress | None = None) -> SpanResult:
        self.writer = _Writer(background=self.overlap)
        try:
            with cyclic_gc_paused():
                self._run(progress)
        finally:
            self.writer.close()
        self._write_distinct()
        return self.result

    def _run(self, progress: Progress | None) -> None:
        fd = self.fd
        columns = [c.name for c in fd.columns]
        q_parts = []
        chunks = read_chunks(
            self.path, expected_columns=columns, encoding=self.encoding, chunk_bytes=self.chunk_bytes, span=self.span
        )
        for chunk_no, chunk in enumerate(prefetch(chunks) if self.overlap else chunks):
            self.result.rows_read += chunk.lines_read
            if chunk.faults:
                q_parts.append(quarantine.from_structural(chunk.faults, self.path.name, fd.name, self.encoding))
            if chunk.frame.height:
                distinct = distinct_values(chunk.frame, columns)
                self._track_distinct(distinct)
                accepted, rejected = evaluate(chunk.frame, self.rules, distinct)
                if rejected.height:
                    q_parts.append(
                        quarantine.from_rejected(rejected, columns, self.path.name, fd.name, self.rule_details)
                    )
                if accepted.height:
                    self._write_accepted(accepted, chunk_no)
            if q_parts and sum(p.height for p in q_parts) > 200_000:
                self._flush_quarantine(q_parts, chunk_no)
                q_parts = []
            fault_point("after_first_chunk")
            if ABORT is not None and ABORT.is_set():
                raise SpanAborted(f"{self.path.name}: span stopped by the orchestrator")
            if progress:
                progress(self.path.name, chunk.lines_read, chunk.bytes_read)
        if q_parts:
            self._flush_quarantine(q_parts, 99999)

    def _flush_quarantine(self, parts: list[pl.DataFrame], chunk_no: int) -> None:
        write_private_parquet(pl.concat(parts), self.staging / "quarantine" / f"{self._name(chunk_no)}.parquet")

    def _write_distinct(self) -> None:
        """Each column's distinct values of this span, as one long (column, value) table."""
        frames = [
            pl.DataFrame({"column": column, "value": pl.concat(parts).unique()})
            for column, parts in self.distinct.items()
        ]
        self.distinct.clear()
        if frames:
            write_private_parquet(
                pl.concat(frames), self.staging / "distinct" / f"{self.order:03d}-{self.span_index:02d}.parquet"
            )
