"""The export service: the kernels' only door to the export queue, run as root by the hub.

Kernels cannot reach the state database. They connect to the Unix socket
``<home>/run/export.sock`` and send one JSON line; the service answers one JSON line:

* ``{"op": "whoami"}`` → ``{"ok": true, "username", "uid", "project"}``
* ``{"op": "preview", "paths"}`` → the automated check of files in the project's scratch
  (``disclosure_review.check_paths`` plus differencing against released outputs);
* ``{"op": "request", "paths", "purpose"}`` → ``disclosure_review.requests.create_request``
  with the caller as actor.

**Who is calling** comes from the kernel, never from the request: the peer's pid and uid
(``SO_PEERCRED``) name a server in the hub's registry (:func:`enclave.hub.sessions.caller_session`,
which also checks that the process runs inside that server's cgroup). The username and the
project are the session's; a request naming another ``project`` is refused, and the user
must still be a current member of it in the state database.

**Which files**: absolute paths lexically under ``projects/<CODE>/scratch`` of the session's
project, owned by the caller. The scratch folder (root-controlled) is opened once; every file is
then reached by a component-by-component ``O_NOFOLLOW`` walk from that descriptor
(:mod:`enclave.workspace.safe_files`), so a symlink anywhere, ``..``, a FIFO, a hard link or
another user's file is refused however the researcher rearranges their folders meanwhile. The
bytes are copied, bounded in size and time, into a root-private staging folder, and only
those copies are checked or queued.

**No caller can wedge it**: calls run on a small worker pool, at most one call per uid at a
time (a second gets a "busy" refusal), each with a deadline (:data:`CALL_DEADLINE_SECONDS`)
after which copying and checking stop and the reply says so. No lock is held while a
researcher's file is read. Refusals are ``{"ok": false, "error", "kind"}``.

Run: ``python -m enclave.workspace.export_service --home HOME`` (or with ``ENCLAVE_HOME``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from enclave.audit import RefusalRecorder
from enclave.config import Settings, load_settings
from enclave.errors import EnclaveError, InputError, PermissionDenied
from enclave.hub.sessions import WorkspaceSession, caller_session
from enclave.workspace import safe_files
from enclave.workspace.safe_files import DeadlinePassed, UnsafePath
from enclave.workspace.singleuser import export_socket, project_dir, scratch_dir

log = logging.getLogger("enclave.export_service")

MAX_REQUEST_BYTES = 64 * 1024
MAX_FILES = 50
MAX_FILE_BYTES = 64 * 1024 * 1024
# All files of one call together (staged in the home's tmp/ before anything reads them).
MAX_CALL_BYTES = 256 * 1024 * 1024
# After the reply, what a client still sends is read and dropped, up to this much.
DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0
#: Each call (queueing, copying, checking) must finish within this; then it is stopped.
CALL_DEADLINE_SECONDS = 120.0
#: A call stuck past its deadline inside one step still gets a reply this much later.
REPLY_GRACE_SECONDS = 5.0
#: Calls served at the same time (one per uid): a few, so one user cannot starve the others.
WORKERS = 4

SessionResolver = Callable[[int, int], WorkspaceSession]


class PathRefused(UnsafePath):
    """A named file is not an absolute path in the caller's project scratch, or is named twice."""


class ProjectMismatch(PermissionDenied):
    """The request names a project other than the one the caller's server was started for."""


class ServiceBusy(PermissionDenied):
    """The caller already has a call in flight, or the export queue stayed busy too long."""


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid


def _refusal(exc: EnclaveError) -> dict[str, Any]:
    return {"ok": False, "error": str(exc), "kind": type(exc).__name__}


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise DeadlinePassed(f"the call reached its time limit {what}; export fewer or smaller "
                             "files per call")


class ExportService:
    """Serves preview and export requests for researchers' kernels.

    Parameters
    ----------
    settings : Settings
        The enclave home (state database, policies, projects, the hub's server registry).
    socket_path : Path, optional
        Default ``<home>/run/export.sock``.
    session_for : callable ``(uid, pid) -> WorkspaceSession``, optional
        **Test only**: replaces :func:`enclave.hub.sessions.caller_session` (so a test running
        as root can act as a researcher). It must raise ``NoWorkspaceSession`` for a caller
        it does not know. Never set in production.
    call_deadline : float, optional
        Seconds each call may take (default :data:`CALL_DEADLINE_SECONDS`).
    """

    def __init__(self, settings: Settings, *, socket_path: Path | None = None,
                 session_for: SessionResolver | None = None,
                 call_deadline: float = CALL_DEADLINE_SECONDS) -> None:
        self.settings = settings
        self.socket_path = socket_path or export_socket(settings)
        self._session_for: SessionResolver = session_for or (
            lambda uid, pid: caller_session(settings, uid=uid, pid=pid))
        self.call_deadline = call_deadline
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="export-call")
        # Guards only the set of uids with a call in flight (no I/O under it).
        self._in_flight: set[int] = set()
        self._in_flight_lock = threading.Lock()
        # create_request writes the state DB (SQLite's BEGIN IMMEDIATE serialises writers
        # anyway) and keeps its write transaction open while it checks the files. Waiting here,
        # bounded by the call's deadline, gives a clear "busy" answer instead of SQLite's
        # busy timeout. It is taken only around create_request on already-staged private
        # copies, never while a researcher's file is read.
        self._queue_lock = threading.Lock()
        self._refusals = RefusalRecorder(settings)

    # -- files ----------------------------------------------------------------------------
    def stage(self, session: WorkspaceSession, paths: Sequence[Any], folder: Path, *,
              deadline: float) -> list[Path]:
        """Copy the named files (and their cell sidecars) from the project scratch to ``folder``.

        Parameters
        ----------
        session : WorkspaceSession
            The caller's server: its project's scratch is the root, its uid the required owner.
        paths : sequence of str
            Absolute paths lexically under ``projects/<CODE>/scratch``.
        folder : Path
            Root-private staging folder.
        deadline : float
            ``time.monotonic()`` value after which copying stops.

        Returns
        -------
        list of Path
            The copies of the named files (sidecars sit next to them).

        Raises
        ------
        UnsafePath
            A path is relative, outside the scratch, crosses a symlink or ``..``, names
            something that is not a regular file of the caller's with one link, too large, or
            two files share a name.
        NoSuchFile
            A named file does not exist.
        DeadlinePassed
            The call's time ran out while copying.
        """
        from disclosure_review.cells import SIDECAR_SUFFIXES

        if isinstance(paths, str) or not isinstance(paths, Sequence) or not paths:
            raise InputError("name at least one output file (a list of paths)")
        if len(paths) > MAX_FILES:
            raise InputError(f"{len(paths)} files; at most {MAX_FILES} per call")
        root = scratch_dir(self.settings, session.project)
        where = f"the project scratch ({root}); outputs are exported only from there"
        copies: list[Path] = []
        # The scratch folder and its parents are root's: opening it by path is safe.
        root_fd = safe_files.open_directory(root)
        try:
            for raw in paths:
                if not isinstance(raw, str) or not raw.startswith("/"):
                    raise PathRefused(f"{raw!r}: give an absolute path in the project scratch")
                *dirs, name = safe_files.split_beneath(raw, root, root_name=where)
                parent_fd = safe_files.open_dir_beneath(root_fd, dirs, label=raw)
                try:
                    target = folder / name
                    self._copy_at(parent_fd, name, target, label=raw, owner=session.uid,
                                  deadline=deadline)
                    copies.append(target)
                    staged = sum(p.stat().st_size for p in folder.iterdir())
                    if staged > MAX_CALL_BYTES:
                        raise InputError(f"the files of this call exceed {MAX_CALL_BYTES // (1024 * 1024)} MiB "
                                         "together; export them in several requests")
                    for suffix in SIDECAR_SUFFIXES:
                        # Same folder descriptor: the sidecar belongs to the file just copied.
                        with contextlib.suppress(safe_files.NoSuchFile):
                            self._copy_at(parent_fd, name + suffix, folder / (name + suffix),
                                          label=raw + suffix, owner=session.uid, deadline=deadline)
                finally:
                    os.close(parent_fd)
        finally:
            os.close(root_fd)
        return copies

    @staticmethod
    def _copy_at(dir_fd: int, name: str, target: Path, *, label: str, owner: int,
                 deadline: float) -> None:
        fd, _info = safe_files.open_file_at(dir_fd, name, label=label, max_bytes=MAX_FILE_BYTES,
                                            owner=owner)
        try:
            # "x": the staging folder is ours; an existing name is another file of this call.
            with open(target, "xb") as out:
                safe_files.copy_bounded(fd, out, max_bytes=MAX_FILE_BYTES, label=label,
                                        deadline=deadline)
        except FileExistsError:
            raise PathRefused(f"{label}: another file of this call is also named {name!r}; "
                              "rename one") from None
        finally:
            os.close(fd)

    # -- operations -----------------------------------------------------------------------
    def _project_of(self, session: WorkspaceSession, payload: Mapping[str, Any]) -> str:
        named = payload.get("project", session.project)
        if named != session.project:
            raise ProjectMismatch(
                f"this workspace server was started for project {session.project}, not "
                f"{named!r}; start a server for {named!r} from the hub to export from it")
        return session.project

    def _member_project(self, db: Any, username: str, code: str) -> Any:
        from disclosure_review.requests import get_project, project_members

        project_dir(self.settings, code)  # validates the code as a path component
        project = get_project(db, code)
        if username not in project_members(project):
            raise PermissionDenied(f"{username} is not a current member of project {code}")
        return project

    def preview(self, session: WorkspaceSession, payload: Mapping[str, Any], *,
                deadline: float) -> dict[str, Any]:
        """The automated check of the named files, as ``export check`` would report it."""
        from disclosure_review.cells import read_cells, sidecar_for
        from disclosure_review.checker import check_paths
        from disclosure_review.context import StoreProjectContext
        from disclosure_review.differencing import DifferencingHistory
        from disclosure_review.model import CheckReport
        from disclosure_review.requests import request_policy
        from enclave.state.db import session_scope

        code = self._project_of(session, payload)
        with session_scope(self.settings) as db:
            project = self._member_project(db, session.username, code)
        policy = request_policy(self.settings)
        context = StoreProjectContext(project.code, self.settings.projects_dir / project.code)
        with self._staging() as folder:
            copies = self.stage(session, payload.get("paths") or [], folder, deadline=deadline)
            report = check_paths(copies, policy=policy, project=context,
                                 progress=lambda _p: _check_deadline(deadline, "while checking"))
            findings = [replace(f, file=Path(f.file).name) for f in report.findings]
            cells = []
            for copy in copies:
                side = sidecar_for(copy)
                if side is not None:
                    cells += [replace(c, output_id=f"{project.code}/preview/{copy.name}")
                              for c in read_cells(side)]
            if cells:
                _check_deadline(deadline, "before differencing")
                history = DifferencingHistory(context.differencing_store,
                                              threshold=policy.differencing_threshold)
                findings += history.check(cells)
        full = CheckReport(findings=tuple(findings), policy=report.policy,
                           files=tuple(c.name for c in copies))
        return {"report": full.to_dict()}

    def request(self, session: WorkspaceSession, payload: Mapping[str, Any], *,
                deadline: float) -> dict[str, Any]:
        """Create an export request for the named files with the caller as author."""
        from disclosure_review.requests import create_request
        from enclave.state.db import session_scope

        code = self._project_of(session, payload)
        purpose = payload.get("purpose")
        if not isinstance(purpose, str) or not purpose.strip():
            raise InputError("state the purpose: what is exported and why")
        with session_scope(self.settings) as db:
            self._member_project(db, session.username, code)
        with self._staging() as folder:
            copies = self.stage(session, payload.get("paths") or [], folder, deadline=deadline)
            if not self._queue_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise ServiceBusy("the export queue is busy with other requests; try again in "
                                  "a few minutes")
            try:
                with session_scope(self.settings) as db:
                    request = create_request(
                        db, self.settings, actor=session.username, project=code, paths=copies,
                        purpose=purpose,
                        progress=lambda _p: _check_deadline(deadline, "while checking"))
                    reply = {"request": request.code, "status": request.status,
                             "verdict": request.check_verdict,
                             "report": json.loads(request.check_report or "{}")}
            finally:
                self._queue_lock.release()
        log.info("export request %s by %s for %s: %s", reply["request"], session.username, code,
                 reply["status"])
        return reply

    def _staging(self) -> _StagingDir:
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return _StagingDir(self.settings.tmp_dir)

    # -- calls ----------------------------------------------------------------------------
    def _claim(self, uid: int) -> None:
        """Claim the one call ``uid`` may have in flight; :class:`ServiceBusy` if it is taken."""
        with self._in_flight_lock:
            if uid in self._in_flight:
                raise ServiceBusy(f"uid {uid} has another export call in progress; wait for its "
                                  "answer, then try again")
            self._in_flight.add(uid)

    def _release(self, uid: int) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(uid)

    def handle(self, uid: int, pid: int, payload: Any) -> dict[str, Any]:
        """Answer one decoded request from process ``pid`` of ``uid``, synchronously (errors
        become replies); at most one call per uid runs at a time, within the call deadline."""
        try:
            self._claim(uid)
        except ServiceBusy as exc:
            log.warning("refused uid %s: %s", uid, exc)
            return _refusal(exc)
        try:
            return self._answer(uid, pid, payload, time.monotonic() + self.call_deadline)
        finally:
            self._release(uid)

    def _answer(self, uid: int, pid: int, payload: Any, deadline: float) -> dict[str, Any]:
        try:
            _check_deadline(deadline, "waiting for a free worker (the service is busy)")
            if not isinstance(payload, dict):
                raise InputError("send one JSON object per line")
            session = self._session_for(uid, pid)
            op = payload.get("op")
            if op == "whoami":
                result: dict[str, Any] = {"username": session.username, "uid": uid,
                                          "project": session.project}
            elif op == "preview":
                result = self.preview(session, payload, deadline=deadline)
            elif op == "request":
                result = self.request(session, payload, deadline=deadline)
            else:
                raise InputError(f"unknown op {op!r}; use whoami, preview or request")
            return {"ok": True, **result}
        except EnclaveError as exc:
            log.warning("refused uid %s (pid %s): %s", uid, pid, exc)
            self._audit(uid, pid, payload, exc)
            return _refusal(exc)
        except Exception:
            log.exception("export service failed for uid %s", uid)
            return {"ok": False, "error": "internal error in the export service; "
                    "the custodian has the log", "kind": "InternalError"}

    def _audit(self, uid: int, pid: int, payload: Any, exc: EnclaveError) -> None:
        """Audit a refusal (throttled: a kernel can provoke them in a loop)."""
        try:
            session = self._session_for(uid, pid)
            actor, project = session.username, session.project
        except EnclaveError:
            actor, project = f"uid:{uid}", None
        op = payload.get("op") if isinstance(payload, dict) else None
        try:
            self._refusals.record(actor=actor, role="researcher", action="export.service", obj=str(op or ""),
                                  project=project, kind=type(exc).__name__,
                                  details={"kind": type(exc).__name__, "error": str(exc)[:500], "pid": pid})
        except Exception:  # an audit failure must not become the caller's error
            log.exception("could not audit a refusal of uid %s", uid)

    async def _dispatch(self, uid: int, pid: int, payload: Any) -> dict[str, Any]:
        deadline = time.monotonic() + self.call_deadline
        try:
            self._claim(uid)  # before queueing: one uid never fills the pool's queue
        except ServiceBusy as exc:
            log.warning("refused uid %s: %s", uid, exc)
            return _refusal(exc)
        future: Future[dict[str, Any]] = self._pool.submit(self._answer, uid, pid, payload, deadline)
        # Released when the worker really ends, even if the reply below stopped waiting for it:
        # a call stuck past its deadline keeps its own uid busy, nobody else's.
        future.add_done_callback(lambda _f: self._release(uid))
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)),
                                          timeout=self.call_deadline + REPLY_GRACE_SECONDS)
        except TimeoutError:
            log.warning("call of uid %s is still running past its deadline", uid)
            return _refusal(DeadlinePassed(
                "the call passed its time limit and was abandoned; export fewer or smaller "
                "files per call"))

    # -- serving --------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid, uid, _gid = peer_credentials(writer.get_extra_info("socket"))
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=READ_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("uid %s sent no request line", uid)
                reply = _refusal(InputError(f"no request line within {READ_TIMEOUT_SECONDS:.0f} s; "
                                            "send one JSON object and a newline"))
            except ValueError:  # asyncio's readline turns LimitOverrunError into ValueError
                log.warning("uid %s sent a request line over %s bytes", uid, MAX_REQUEST_BYTES)
                reply = _refusal(InputError(f"request longer than {MAX_REQUEST_BYTES} bytes; "
                                            "name fewer files per call"))
            else:
                try:
                    payload: Any = json.loads(line.decode("utf-8"))
                except ValueError as exc:
                    log.warning("uid %s sent malformed JSON: %s", uid, exc)
                    reply = _refusal(InputError(f"the request is not valid JSON ({exc}); send one "
                                                "JSON object per line"))
                else:
                    reply = await self._dispatch(uid, pid, payload)
            writer.write(json.dumps(reply, ensure_ascii=False, default=str).encode() + b"\n")
            await writer.drain()
            # Closing with unread input resets the connection and loses the reply: let the
            # client's rest (an oversized line) drain, bounded in bytes and time.
            writer.write_eof()
            await _discard(reader, limit=DRAIN_BYTES, seconds=DRAIN_SECONDS)
        except (ConnectionError, BrokenPipeError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()

    async def start(self) -> asyncio.AbstractServer:
        """Bind the socket (replacing a stale one) and start serving."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_path.parent, 0o755)
        if self.socket_path.is_socket() or self.socket_path.is_symlink():
            self.socket_path.unlink()
        server = await asyncio.start_unix_server(self._client, path=str(self.socket_path),
                                                 limit=MAX_REQUEST_BYTES)
        # Anyone may connect: the peer's credentials, not file permissions, decide who is served.
        os.chmod(self.socket_path, 0o666)
        log.info("export service listening on %s", self.socket_path)
        return server

    def close(self) -> None:
        """Stop the worker pool (calls in progress finish; queued ones are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _discard(reader: asyncio.StreamReader, *, limit: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    left = limit
    while left > 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            chunk = await asyncio.wait_for(reader.read(min(left, 65536)), timeout=remaining)
        except (TimeoutError, ValueError):
            return
        if not chunk:
            return
        left -= len(chunk)


class _StagingDir(tempfile.TemporaryDirectory):  # type: ignore[type-arg]
    def __init__(self, parent: Path) -> None:
        super().__init__(prefix="export-stage-", dir=parent)

    def __enter__(self) -> Path:  # type: ignore[override]
        return Path(self.name)


async def serve_forever(service: ExportService) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    service.socket_path.unlink(missing_ok=True)
    service.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m enclave.workspace.export_service [--home HOME]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="the enclave home (default: $ENCLAVE_HOME)")
    parser.add_argument("--socket", help="socket path (default <home>/run/export.sock)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings(args.home)
    settings.require_initialised()
    service = ExportService(settings, socket_path=Path(args.socket) if args.socket else None)
    asyncio.run(serve_forever(service))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
