"""How failures of worker processes reach the batch: the pipeline's own errors keep their
type (and so their exit code), anything else becomes an IngestError; pending spans stop."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from pipelines.ingest.errors import IngestError, TokenCollisionError
from pipelines.ingest.workers import Pending


def _failed(exc: BaseException) -> Future:
    future: Future = Future()
    future.set_exception(exc)
    return future


def test_pipeline_errors_keep_their_type() -> None:
    event = threading.Event()
    with pytest.raises(TokenCollisionError, match="share a stage-1 token"):
        Pending(
            [_failed(TokenCollisionError("two person identifiers share a stage-1 token"))], abort_event=event
        ).results()
    assert not event.is_set()  # the stop signal is cleared once the spans have stopped


def test_other_failures_become_ingest_errors_and_stop_the_rest() -> None:
    event = threading.Event()
    running: Future = Future()
    running.set_running_or_notify_cancel()
    seen: list[bool] = []

    def finish_when_told() -> None:
        event.wait(timeout=30)
        seen.append(event.is_set())
        running.set_result(None)

    helper = threading.Thread(target=finish_when_told)
    helper.start()
    with pytest.raises(IngestError, match="an ingest worker failed: MemoryError"):
        Pending([_failed(MemoryError()), running], abort_event=event).results()
    helper.join()
    assert seen == [True], "the other span was not told to stop"
