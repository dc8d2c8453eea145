"""The registry of running workspace servers: which Unix uid, enclave user, project and cgroup
belong together, written by the hub when it starts a server and read by root-run services.

The export service must not believe the project a kernel names, nor a Unix user's name: it
asks this registry which server the calling uid belongs to, and checks with the kernel (the
caller's cgroup in ``/proc/<pid>/cgroup``) that the calling process runs inside that server's
sandbox. One record per uid (a researcher has one server at a time) lives at
``<home>/hub/sessions/<uid>.json``, root-only (the folder is 0700 under ``<home>/hub``).
Records are written atomically (temporary file, then ``rename``) and removed at stop; a
record whose cgroup no longer exists is stale and treated as absent.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from enclave.config import Settings
from enclave.errors import PermissionDenied
from enclave.hub.isolation import process_in_cgroup

SESSIONS_FOLDER = "sessions"


class NoWorkspaceSession(PermissionDenied):
    """The calling uid has no running workspace server (or the caller is outside its sandbox)."""


@dataclass(frozen=True)
class WorkspaceSession:
    """One running server: who, which project, and where the kernel keeps its processes.

    Attributes
    ----------
    username : str
        The enclave user the server was started for (authenticated by the hub).
    project : str
        The project code the server was started for; every export call is bound to it.
    uid, gid : int
        The Unix account the server runs as, and the project group.
    cgroup : str
        The server's cgroup as the kernel names it in ``/proc/<pid>/cgroup``
        (``/enclave/<name>``): every process of the sandbox is in it, and only root can move
        a process out.
    cgroup_dirs : tuple of str
        Host folders of that cgroup (one per hierarchy); when none is left the record is stale.
    started_at : str
        ISO 8601 time of the start (UTC).
    """

    username: str
    project: str
    uid: int
    gid: int
    cgroup: str
    cgroup_dirs: tuple[str, ...]
    started_at: str

    def holds(self, pid: int) -> bool:
        """Whether process ``pid`` runs inside this server's cgroup (read from the kernel)."""
        return process_in_cgroup(pid, self.cgroup)


def sessions_dir(settings: Settings) -> Path:
    """``<home>/hub/sessions`` (0700, root only)."""
    path = settings.home / "hub" / SESSIONS_FOLDER
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def register(settings: Settings, session: WorkspaceSession) -> None:
    """Record ``session`` for its uid (replacing any earlier record), atomically."""
    folder = sessions_dir(settings)
    target = folder / f"{session.uid}.json"
    tmp = folder / f".{session.uid}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(asdict(session), fh)
    os.replace(tmp, target)


def unregister(settings: Settings, uid: int) -> None:
    """Remove the record of ``uid`` (server stopped); no error when there is none."""
    with contextlib.suppress(FileNotFoundError):
        (sessions_dir(settings) / f"{uid}.json").unlink()


def lookup(settings: Settings, uid: int) -> WorkspaceSession:
    """The running server of ``uid``.

    Raises
    ------
    NoWorkspaceSession
        No record, an unreadable one, or a stale one (its cgroup is gone).
    """
    path = sessions_dir(settings) / f"{uid}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        session = WorkspaceSession(**{**data, "cgroup_dirs": tuple(data["cgroup_dirs"])})
    except FileNotFoundError:
        raise NoWorkspaceSession(
            f"uid {uid} has no running workspace server; start one from the hub") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise NoWorkspaceSession(f"the workspace record of uid {uid} is unreadable ({exc})") from exc
    if not any(Path(p).is_dir() for p in session.cgroup_dirs):
        raise NoWorkspaceSession(f"the workspace server of uid {uid} is not running any more")
    return session


def caller_session(settings: Settings, *, uid: int, pid: int) -> WorkspaceSession:
    """The server that process ``pid`` (of Unix ``uid``) runs in, checked with the kernel.

    Raises
    ------
    NoWorkspaceSession
        ``uid`` has no server, or ``pid`` is not inside that server's sandbox (a process of the
        same uid elsewhere is not the workspace).
    """
    session = lookup(settings, uid)
    if not session.holds(pid):
        raise NoWorkspaceSession(
            f"process {pid} of uid {uid} is not inside the workspace server of "
            f"{session.username} ({session.project})")
    return session
