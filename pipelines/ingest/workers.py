"""Worker processes of an ingest batch: the spans of large source files in parallel.

Each worker is a fresh (spawned, never forked: Polars' thread pool does not survive a fork)
Python process whose Polars pool has one thread. On a small machine two single-threaded
pipelines keep the cores busier than one multi-threaded pipeline whose every step is split
into tiny tasks (measured on 2 cores: the chunk loop of a 10 M-row file took 16.7 s in two
such workers against about 21 s in one threaded process). Workers open
the key store themselves, so key material never crosses a pipe; they write only into the
batch's staging folder and are killed by the kernel when the orchestrating process dies
(PR_SET_PDEATHSIG), so an interrupted batch never leaves a worker writing behind it.
Small batches run in the orchestrating process: starting workers costs a few tenths of a
second, and their spans would be tiny.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from catalog import Catalog, load_catalog
from enclave.errors import EnclaveError
from enclave.keys import KeyStore
from pipelines.ingest import stage
from pipelines.ingest.decode import Span
from pipelines.ingest.errors import IngestError
from pipelines.ingest.stage import Progress, SpanIngest, SpanResult, write_private_parquet
from pipelines.ingest.tokens import Tokenizer

_PR_SET_PDEATHSIG = 1

# A worker's process settings. One Polars thread each (see above). Each chunk allocates and
# frees the same large buffers again and again: by default jemalloc (Polars) hands freed pages
# back to the kernel within about ten seconds and glibc (NumPy, Python) maps and unmaps every
# block over 32 MiB-ish, so every chunk paid page faults and TLB shoot-downs again; measured on
# half of a 10 M-row file, system time fell from 3.7 s to 0.8 s (wall 16.6 s to 13.3 s) with
# freed memory kept for reuse, and peak memory stayed the same (the chunks bound it).
WORKER_ENVIRONMENT = {
    "POLARS_MAX_THREADS": "1",
    "_RJEM_MALLOC_CONF": "dirty_decay_ms:30000,muzzy_decay_ms:30000",
    "MALLOC_MMAP_THRESHOLD_": str(128 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(512 << 20),
}
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


def run_span(
    task: SpanTask, progress: Progress | None = None, catalog: Catalog | None = None, *, overlap: bool = True
) -> SpanResult:
    """Process one span into staging, including the escrow of the identifiers it hashed
    (``overlap``: see :class:`~pipelines.ingest.stage.SpanIngest`)."""
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
        overlap=overlap,
    )
    result = job.run(progress)
    escrow = tokenizer.escrow_frame()
    if escrow.height:
        name = f"{task.order:03d}-{task.span_index:02d}.parquet"
        write_private_parquet(escrow, task.staging / "escrow-parts" / name)
    return result


def _init_worker(parent_pid: int, progress, abort_event) -> None:
    global _PROGRESS
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os.kill(os.getpid(), signal.SIGKILL)
    stage.PARENT_PID = parent_pid
    stage.ABORT = abort_event
    _PROGRESS = progress


def _warm_up() -> int:
    return pl.thread_pool_size()


def _run_in_worker(task: SpanTask, run: int) -> SpanResult:
    def report(source: str, lines: int, nbytes: int) -> None:
        if _PROGRESS is not None:
            _PROGRESS.put((run, source, lines, nbytes))

    return run_span(task, report, overlap=False)


class Pending:
    """Span tasks under way: :meth:`results` waits for them (in order), :meth:`abort` stops them
    at their next chunk and waits until they have."""

    def __init__(self, futures: list[Future] | None = None, run_here=None, abort_event=None) -> None:
        self._futures = futures or []
        self._run_here = run_here
        self._abort_event = abort_event

    def results(self) -> list[SpanResult]:
        if self._run_here is not None:
            return self._run_here()
        try:
            return [f.result() for f in self._futures]
        except Exception as exc:
            self.abort()
            if isinstance(exc, EnclaveError):  # the pipeline's own errors keep their type and exit code
                raise
            raise IngestError(f"an ingest worker failed: {exc!r}; nothing published") from exc

    def abort(self) -> None:
        if self._abort_event is None:
            return
        self._abort_event.set()
        for f in self._futures:
            f.cancel()
        wait(self._futures)
        self._abort_event.clear()


class SpanRunner:
    """Runs span tasks in worker processes, or in this process when there are none."""

    def __init__(self, pool: ProcessPoolExecutor | None, progress: Progress | None, catalog, abort_event) -> None:
        self._pool = pool
        self._progress = progress
        self._catalog = catalog
        self._abort_event = abort_event
        # Each start() is numbered. Progress of worker spans is held back until the batch
        # confirms that start (its spans began before the checksums were known): reports of a
        # start that was stopped (files ingested before) are dropped, never counted twice.
        self.run = 0
        self._confirmed = 0
        self._held: list[tuple] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the worker processes (idempotent): their memory is freed before the batch's
        cross-row checks and validation begin."""
        if self._pool is not None:
            self._abort_event.set()  # spans of a batch that failed elsewhere stop at their next chunk
            self._pool.shutdown(wait=True, cancel_futures=True)

    def confirm(self) -> None:
        """Pass on the progress of the latest start, held so far, and all that follows."""
        with self._lock:
            self._confirmed = self.run
            held, self._held = self._held, []
            for run, report in held:
                if run == self._confirmed and self._progress:
                    self._progress(*report)

    def report(self, run: int, report: tuple) -> None:
        """A worker's progress report (from the queue-draining thread)."""
        with self._lock:
            if run == self._confirmed:
                if self._progress:
                    self._progress(*report)
            elif run == self.run:
                self._held.append((run, report))

    def start(self, tasks: list[SpanTask]) -> Pending:
        """Start the tasks (in this process they run only when their results are asked for)."""
        if self._pool is None:
            return Pending(run_here=lambda: [run_span(t, self._progress, self._catalog) for t in tasks])
        self.run += 1
        futures = [self._pool.submit(_run_in_worker, t, self.run) for t in tasks]
        return Pending(futures, abort_event=self._abort_event)


@contextlib.contextmanager
def span_runner(workers: int, progress: Progress | None, catalog: Catalog | None = None) -> Iterator[SpanRunner]:
    """Yield a :class:`SpanRunner` with ``workers`` spawned processes (which load the shipped
    catalog), or one that runs here, with ``catalog``, when ``workers`` is 1."""
    if workers <= 1:
        yield SpanRunner(None, progress, catalog, None)
        return
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    abort_event = ctx.Event()
    saved = {name: os.environ.get(name) for name in WORKER_ENVIRONMENT}
    # Read when a worker starts (Polars sizes its pool at import, the allocators at their first
    # call), so they must be in the environment the workers start with; the orchestrator's own
    # pool and allocators were set up long before.
    os.environ.update(WORKER_ENVIRONMENT)
    try:
        pool = ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(), queue, abort_event)
        )
        # Start every worker now, so their imports overlap the orchestrator's own work (a
        # worker that cannot start fails the first span it is given).
        for _ in range(workers):
            pool.submit(_warm_up)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    runner = SpanRunner(pool, progress, None, abort_event)

    def drain() -> None:
        while (item := queue.get()) is not None:
            run, *report = item
            runner.report(run, tuple(report))

    reader = threading.Thread(target=drain, name="ingest-progress", daemon=True)
    reader.start()
    try:
        yield runner
    finally:
        runner.close()
        queue.put(None)
        reader.join()
