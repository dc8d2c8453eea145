"""Worker processes of an ingest batch: the spans of large source files in parallel.

Each worker is a fresh (spawned, never forked: Polars' thread pool does not survive a fork)
Python process whose Polars pool has one thread. On a small machine two single-threaded
pipelines keep the cores busier than one multi-threaded pipeline whose every step is split
into tiny tasks (measured on 2 cores: a 10 M-row file in 17 s instead of 21 s). Workers open
the key store themselves, so key material never crosses a pipe; they write only into the
batch's staging folder and are killed by the kernel when the orchestrating process dies
(PR_SET_PDEATHSIG), so an interrupted batch never leaves a worker writing behind it.
Small batches run in the orchestrating process: spawning costs about a second.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from catalog import Catalog, load_catalog
from enclave.keys import KeyStore
from pipelines.ingest import stage
from pipelines.ingest.decode import Span
from pipelines.ingest.errors import IngestError
from pipelines.ingest.stage import Progress, SpanIngest, SpanResult, write_private_parquet
from pipelines.ingest.tokens import Tokenizer

_PR_SET_PDEATHSIG = 1
_PROGRESS = None  # a worker's queue back to the orchestrator


@dataclass(frozen=True)
class SpanTask:
    """Everything a worker needs to process one span (picklable; no key material)."""

    path: Path
    file_type: str
    order: int
    span_index: int
    span: Span | None
    encoding: str
    chunk_bytes: int
    staging: Path
    keys_dir: Path


def run_span(task: SpanTask, progress: Progress | None = None, catalog: Catalog | None = None) -> SpanResult:
    """Process one span into staging, including the escrow of the identifiers it hashed."""
    catalog = catalog or load_catalog()
    keys = KeyStore.for_home(task.keys_dir)
    tokenizer = Tokenizer(keys.stage1_key(), keys.escrow_key())
    job = SpanIngest(
        path=task.path,
        definition=catalog.file(task.file_type),
        order=task.order,
        span_index=task.span_index,
        span=task.span,
        catalog=catalog,
        tokenizer=tokenizer,
        staging=task.staging,
        encoding=task.encoding,
        chunk_bytes=task.chunk_bytes,
    )
    result = job.run(progress)
    escrow = tokenizer.escrow_frame()
    if escrow.height:
        name = f"{task.order:03d}-{task.span_index:02d}.parquet"
        write_private_parquet(escrow, task.staging / "escrow-parts" / name)
    return result


def _init_worker(parent_pid: int, progress) -> None:
    global _PROGRESS
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os.kill(os.getpid(), signal.SIGKILL)
    stage.PARENT_PID = parent_pid
    _PROGRESS = progress


def _warm_up() -> int:
    return pl.thread_pool_size()


def _run_in_worker(task: SpanTask) -> SpanResult:
    def report(source: str, lines: int) -> None:
        if _PROGRESS is not None:
            _PROGRESS.put((source, lines))

    return run_span(task, report)


@contextlib.contextmanager
def span_runner(workers: int, progress: Progress | None, catalog: Catalog | None = None) -> Iterator:
    """Yield a function that runs a list of span tasks and returns their results in order:
    in ``workers`` spawned processes (which load the shipped catalog), or here, with
    ``catalog``, when ``workers`` is 1."""
    if workers <= 1:
        yield lambda tasks: [run_span(t, progress, catalog) for t in tasks]
        return
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    saved = os.environ.get("POLARS_MAX_THREADS")
    # Read by Polars when a worker imports it, so it must be in the environment the
    # workers start with; the orchestrator's own pool was sized long before.
    os.environ["POLARS_MAX_THREADS"] = "1"
    try:
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(), queue))
        # Start every worker now, so their imports overlap the orchestrator's own work.
        warm = [pool.submit(_warm_up) for _ in range(workers)]
    finally:
        if saved is None:
            os.environ.pop("POLARS_MAX_THREADS", None)
        else:
            os.environ["POLARS_MAX_THREADS"] = saved

    def drain() -> None:
        while (item := queue.get()) is not None:
            if progress:
                progress(*item)

    reader = threading.Thread(target=drain, name="ingest-progress", daemon=True)
    reader.start()

    def run(tasks: list[SpanTask]) -> list[SpanResult]:
        futures: list[Future] = [pool.submit(_run_in_worker, t) for t in tasks]
        try:
            return [f.result() for f in futures]
        except Exception as exc:
            for f in futures:
                f.cancel()
            if isinstance(exc, IngestError):
                raise
            raise IngestError(f"an ingest worker failed: {exc!r}; nothing published") from exc

    try:
        for w in warm:
            w.result()
        yield run
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        queue.put(None)
        reader.join()
