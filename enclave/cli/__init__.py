"""The ``enclave`` command line (Typer). Each capability registers its own sub-app here.

Deliberate errors (:class:`enclave.errors.EnclaveError`) become one line on stderr and the
error's exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
from typing import NoReturn

import typer

from enclave.cli import _app
from enclave.errors import EnclaveError

app = _app.app


def _register() -> None:
    # Imported for their side effect of adding commands to ``app``; one module per capability.
    from enclave.cli import (  # noqa: F401
        accounts_cmd,
        audit_cmd,
        billing_cmd,
        catalog_cmd,
        export_cmd,
        home_cmd,
        hub_cmd,
        ingest_cmd,
        optout_cmd,
        project_cmd,
        provision_cmd,
        review_cmd,
        synth_cmd,
        user_cmd,
    )


def main() -> None:
    """Console-script entry point."""
    _tune_process()
    _register()
    try:
        # Standalone mode: usage errors print click's message and exit 2 by themselves.
        app()
    except EnclaveError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        _leave(exc.exit_code)
    except SystemExit as exc:
        _leave(exc.code)


def _tune_process() -> None:
    """The garbage collector's thresholds for a command process, set before the commands' imports.

    A command allocates its imports and results once and frees little, so the default
    garbage-collector thresholds spend their time re-scanning live objects: about 400
    collections and 0.17 s of one provisioning run, most of it during imports, against 5
    collections and 0.05 s with these (cycles are still collected, in larger steps).
    """
    gc.set_threshold(50_000, 20, 100)


def _leave(code: object) -> NoReturn:
    """Exit with ``code`` once the command's work is done, skipping the interpreter's teardown.

    With great-expectations, pandas and SQLAlchemy loaded, Python's final garbage collections
    over every module took about a second after an ingest had finished (measured: 1.0 s of a
    20 s batch). Everything a command writes is closed or published before it returns, so the
    teardown has nothing left to save: the exit handlers still run (multiprocessing's,
    logging's) and the standard streams are flushed. While another thread is still working the
    normal shutdown is used, which waits for it.
    """
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # A closed stream or a broken pipe: nothing more can be written anyway.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
