"""The export service: the kernels' only door to the export queue, run as root by the hub.

Kernels cannot reach the state database. They connect to the Unix socket
``<home>/run/export.sock`` and send one JSON line; the service identifies the caller from the
socket itself (``SO_PEERCRED`` uid → Unix user ``enc-<username>`` → enclave username), never
from the request, and answers one JSON line:

* ``{"op": "whoami"}`` → ``{"ok": true, "username", "uid"}``
* ``{"op": "preview", "project", "paths"}`` → the automated check of files in the project's
  scratch (``disclosure_review.check_paths`` plus differencing against released outputs);
* ``{"op": "request", "project", "paths", "purpose"}`` →
  ``disclosure_review.requests.create_request`` with the caller as actor.

Files are taken only from ``projects/<CODE>/scratch`` (resolved, so ``..`` and symlinks out
are refused) and copied into a private staging folder before anything reads them, so a file
swapped after the check is not the one checked. Refusals are ``{"ok": false, "error"}``.

Run: ``python -m enclave.workspace.export_service --home HOME`` (or with ``ENCLAVE_HOME``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import struct
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from enclave.config import Settings, load_settings
from enclave.errors import EnclaveError, InputError, PermissionDenied
from enclave.workspace.singleuser import export_socket, project_dir, scratch_dir

log = logging.getLogger("enclave.export_service")

UNIX_USER_PREFIX = "enc-"
MAX_REQUEST_BYTES = 64 * 1024
MAX_FILES = 50
MAX_FILE_BYTES = 64 * 1024 * 1024


class CallerNotIdentified(PermissionDenied):
    """The connecting process's uid is not an enclave researcher's Unix user."""


class PathRefused(PermissionDenied):
    """A named file is outside the caller's project scratch, or not a regular file."""


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", data)
    return uid


class ExportService:
    """Serves preview and export requests for researchers' kernels.

    Parameters
    ----------
    settings : Settings
        The enclave home (state database, policies, projects).
    socket_path : Path, optional
        Default ``<home>/run/export.sock``.
    uid_map : mapping of int to str, optional
        **Test only**: uid → enclave username, replacing the Unix user lookup (so a test
        running as root can act as a researcher). Never set in production.
    """

    def __init__(self, settings: Settings, *, socket_path: Path | None = None,
                 uid_map: Mapping[int, str] | None = None) -> None:
        self.settings = settings
        self.socket_path = socket_path or export_socket(settings)
        self.uid_map = dict(uid_map) if uid_map is not None else None
        # SQLite and the request folders are not for concurrent writers: one call at a time.
        self._lock = threading.Lock()

    # -- identity and files ---------------------------------------------------------------
    def identify(self, uid: int) -> str:
        """Enclave username of Unix ``uid``; raise :class:`CallerNotIdentified` otherwise."""
        if self.uid_map is not None:
            if uid not in self.uid_map:
                raise CallerNotIdentified(f"uid {uid} is not mapped to an enclave user")
            return self.uid_map[uid]
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError as exc:
            raise CallerNotIdentified(f"uid {uid} has no Unix user") from exc
        if not name.startswith(UNIX_USER_PREFIX) or len(name) == len(UNIX_USER_PREFIX):
            raise CallerNotIdentified(
                f"Unix user {name!r} (uid {uid}) is not a researcher account "
                f"({UNIX_USER_PREFIX}<username>)")
        return name[len(UNIX_USER_PREFIX):]

    def stage(self, project: str, paths: Sequence[str], folder: Path) -> list[Path]:
        """Copy the named files (and their cell sidecars) from the project scratch to ``folder``.

        Raises
        ------
        PathRefused
            A path is relative, outside ``projects/<CODE>/scratch``, not a regular file,
            too large, or two files share a name.
        """
        from disclosure_review.cells import SIDECAR_SUFFIXES

        if not paths:
            raise InputError("name at least one output file")
        if len(paths) > MAX_FILES:
            raise InputError(f"{len(paths)} files; at most {MAX_FILES} per call")
        root = os.path.realpath(scratch_dir(self.settings, project))
        copies: list[Path] = []
        for raw in paths:
            if not isinstance(raw, str) or not os.path.isabs(raw):
                raise PathRefused(f"{raw!r}: give an absolute path in the project scratch")
            real = os.path.realpath(raw)
            if not real.startswith(root + os.sep):
                raise PathRefused(f"{raw}: outside the project scratch ({root}); outputs are "
                                  "exported only from there")
            target = folder / os.path.basename(real)
            if target.exists():
                raise PathRefused(f"{raw}: another file of this call is also named "
                                  f"{target.name!r}; rename one")
            self._copy(real, target, label=raw)
            copies.append(target)
            for suffix in SIDECAR_SUFFIXES:
                sidecar = real + suffix
                if os.path.lexists(sidecar):
                    real_side = os.path.realpath(sidecar)
                    if not real_side.startswith(root + os.sep):
                        raise PathRefused(f"{sidecar}: sidecar points outside the scratch")
                    self._copy(real_side, folder / (target.name + suffix), label=sidecar)
        return copies

    @staticmethod
    def _copy(real: str, target: Path, *, label: str) -> None:
        # O_NOFOLLOW: the checked path has no symlinks; if one appears now, refuse.
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise PathRefused(f"{label}: cannot be opened ({exc.strerror})") from exc
        with os.fdopen(fd, "rb") as source:
            info = os.fstat(source.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise PathRefused(f"{label}: not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise PathRefused(f"{label}: {info.st_size} bytes; outputs are at most "
                                  f"{MAX_FILE_BYTES // (1024 * 1024)} MiB")
            with open(target, "wb") as out:
                shutil.copyfileobj(source, out)

    # -- operations -----------------------------------------------------------------------
    def _member_project(self, session: Any, username: str, code: str) -> Any:
        from disclosure_review.requests import get_project, project_members

        if not isinstance(code, str) or not code:
            raise InputError("name the project (ENCLAVE_PROJECT)")
        project_dir(self.settings, code)  # validates the code as a path component
        project = get_project(session, code)
        if username not in project_members(project):
            raise PermissionDenied(f"{username} is not a current member of project {code}")
        return project

    def preview(self, username: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The automated check of the named files, as ``export check`` would report it."""
        from disclosure_review.cells import read_cells, sidecar_for
        from disclosure_review.checker import check_paths
        from disclosure_review.context import StoreProjectContext
        from disclosure_review.differencing import DifferencingHistory
        from disclosure_review.model import CheckReport
        from disclosure_review.requests import request_policy
        from enclave.state.db import session_scope

        code = payload.get("project")
        with session_scope(self.settings) as session:
            project = self._member_project(session, username, code)
        policy = request_policy(self.settings)
        context = StoreProjectContext(project.code, self.settings.projects_dir / project.code)
        with self._staging() as folder:
            copies = self.stage(project.code, payload.get("paths") or [], folder)
            report = check_paths(copies, policy=policy, project=context)
            findings = [replace(f, file=Path(f.file).name) for f in report.findings]
            cells = []
            for copy in copies:
                side = sidecar_for(copy)
                if side is not None:
                    cells += [replace(c, output_id=f"{project.code}/preview/{copy.name}")
                              for c in read_cells(side)]
            if cells:
                history = DifferencingHistory(context.differencing_store,
                                              threshold=policy.differencing_threshold)
                findings += history.check(cells)
        full = CheckReport(findings=tuple(findings), policy=report.policy,
                           files=tuple(c.name for c in copies))
        return {"report": full.to_dict()}

    def request(self, username: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Create an export request for the named files with the caller as author."""
        from disclosure_review.requests import create_request
        from enclave.state.db import session_scope

        code = payload.get("project")
        purpose = payload.get("purpose")
        if not isinstance(purpose, str) or not purpose.strip():
            raise InputError("state the purpose: what is exported and why")
        with self._staging() as folder, session_scope(self.settings) as session:
            self._member_project(session, username, code)
            copies = self.stage(code, payload.get("paths") or [], folder)
            request = create_request(session, self.settings, actor=username, project=code,
                                     paths=copies, purpose=purpose)
            reply = {"request": request.code, "status": request.status,
                     "verdict": request.check_verdict,
                     "report": json.loads(request.check_report or "{}")}
        log.info("export request %s by %s for %s: %s", reply["request"], username, code,
                 reply["status"])
        return reply

    def _staging(self) -> _StagingDir:
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return _StagingDir(self.settings.tmp_dir)

    def handle(self, uid: int, payload: Any) -> dict[str, Any]:
        """Answer one decoded request from ``uid`` (synchronous; errors become replies)."""
        try:
            if not isinstance(payload, dict):
                raise InputError("send one JSON object per line")
            username = self.identify(uid)
            op = payload.get("op")
            with self._lock:
                if op == "whoami":
                    result: dict[str, Any] = {"username": username, "uid": uid}
                elif op == "preview":
                    result = self.preview(username, payload)
                elif op == "request":
                    result = self.request(username, payload)
                else:
                    raise InputError(f"unknown op {op!r}; use whoami, preview or request")
            return {"ok": True, **result}
        except EnclaveError as exc:
            log.warning("refused uid %s: %s", uid, exc)
            return {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        except Exception:
            log.exception("export service failed for uid %s", uid)
            return {"ok": False, "error": "internal error in the export service; "
                    "the custodian has the log", "kind": "InternalError"}

    # -- serving --------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = peer_uid(writer.get_extra_info("socket"))
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=30)
                payload: Any = json.loads(line.decode("utf-8"))
            except (TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:
                payload = None
                log.warning("bad request from uid %s: %s", uid, exc)
            reply = await asyncio.to_thread(self.handle, uid, payload)
            writer.write(json.dumps(reply, ensure_ascii=False, default=str).encode() + b"\n")
            await writer.drain()
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
        # Anyone may connect: the peer uid, not file permissions, decides who is served.
        os.chmod(self.socket_path, 0o666)
        log.info("export service listening on %s", self.socket_path)
        return server


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
