"""Test helpers for the workspace and toolkit tests (unique module name: no clash).

A demo project (active, members pia/rex, synthetic extract in the shared layout), an export
service running on a background event loop, and a real ``jupyter server`` process started
with the workspace's own arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from enclave.config import Settings
from enclave.hub.sessions import NoWorkspaceSession, WorkspaceSession
from enclave.workspace.demo import write_demo_extract
from enclave.workspace.export_service import ExportService
from enclave.workspace.singleuser import environment, server_args
from enclave.workspace.templates import prepare_workspace

PROJECT = "P2026-0001"
PASSWORD = "correct-horse-battery-staple"
TOKEN = "enclave-test-token"


def make_demo_project(settings: Settings, code: str = PROJECT) -> Path:
    """Researchers pia (PI), rex (processor), oscar (no member); active project ``code``
    with the demo extract; rex's workspace prepared. Returns the project folder."""
    from enclave import clock
    from enclave.state.db import session_scope
    from enclave.state.models import Project, ProjectMember
    from enclave.users import add_user

    with session_scope(settings) as session:
        for name in ("pia", "rex", "oscar"):
            add_user(session, settings, actor="alice", username=name, full_name=name.title(),
                     unit="NTU", roles=["researcher"], password=PASSWORD)
    moment = clock.now()
    with session_scope(settings) as session:
        project = Project(code=code, applicant="pia", institution="NTU",
                          project_type="academic", title="Diabetes outcomes", status="active",
                          spec_json="{}", spec_sha256="0" * 64, submitted_at=moment,
                          status_changed_at=moment)
        project.members = [ProjectMember(username=u, project_role=r, unit="NTU", added_at=moment)
                           for u, r in {"pia": "pi", "rex": "processor"}.items()]
        session.add(project)
    folder = settings.projects_dir / code
    write_demo_extract(folder)
    (folder / "scratch").mkdir(exist_ok=True)
    prepare_workspace(settings, code, "rex")
    return folder


def fake_session(username: str, *, uid: int | None = None, project: str = PROJECT) -> WorkspaceSession:
    """A registry record for ``username`` on ``project`` (default: this process's uid)."""
    uid = os.getuid() if uid is None else uid
    return WorkspaceSession(username=username, project=project, uid=uid, gid=uid,
                            cgroup="/enclave/test", cgroup_dirs=(), started_at="2026-01-01T00:00:00Z")


def sessions_by_uid(*sessions: WorkspaceSession) -> Callable[[int, int], WorkspaceSession]:
    """A test ``session_for`` resolver: uid → session, ``NoWorkspaceSession`` for others
    (stands in for the hub's registry and the cgroup check, tested on their own)."""
    table = {s.uid: s for s in sessions}

    def resolve(uid: int, pid: int) -> WorkspaceSession:
        if uid not in table:
            raise NoWorkspaceSession(f"uid {uid} has no running workspace server (test registry)")
        return table[uid]

    return resolve


class ServiceThread:
    """Runs an :class:`ExportService` on its own event loop in a daemon thread."""

    def __init__(self, service: ExportService) -> None:
        self.service = service
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await self.service.start()
        self._ready.set()
        async with server:
            await self._stop.wait()

    def __enter__(self) -> ServiceThread:
        self._thread.start()
        if not self._ready.wait(timeout=20):
            raise RuntimeError("export service did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=20)
        self.service.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterServer:
    """A real ``jupyter server`` with the workspace's arguments and environment."""

    def __init__(self, settings: Settings, code: str, username: str,
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **environment(settings, code, username), **(extra_env or {})}
        env.pop("ENCLAVE_HOME", None)
        cmd = [sys.executable, "-m", "jupyter_server", *server_args(settings, code, username),
               f"--ServerApp.port={self.port}", "--ServerApp.ip=127.0.0.1",
               f"--IdentityProvider.token={TOKEN}", "--ServerApp.open_browser=False",
               "--ServerApp.allow_root=True", "--ServerApp.port_retries=0"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self._wait_ready(timeout=60)

    def _wait_ready(self, timeout: float) -> None:
        # Block on the server's own log until it says it is serving (no fixed sleeps).
        assert self.proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            if "is running at" in line:
                threading.Thread(target=self._drain, daemon=True).start()
                # The log line can come before the socket listens: wait until it accepts.
                while time.monotonic() < deadline and self.proc.poll() is None:
                    try:
                        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                        return
                    except OSError:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            self.proc.wait(timeout=0.05)  # returns at once if the server died
                break
        self.stop()
        raise RuntimeError("jupyter server did not start:\n" + "".join(self.log[-40:]))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def valid_national_id(prefix: str = "A1234567") -> str:
    """A checksum-valid Taiwanese national ID starting with ``prefix`` (8 characters)."""
    from catalog.checks import tw_id_is_valid

    for last in range(10):
        for ninth in range(10):
            candidate = f"{prefix}{ninth}{last}"
            if tw_id_is_valid(candidate):
                return candidate
    raise AssertionError("no valid id")


# -- fixtures (imported by the workspace and toolkit conftests) ------------------------------


@pytest.fixture
def demo(settings):
    """An initialised home with the active demo project and rex's workspace."""
    make_demo_project(settings)
    return settings


@pytest.fixture
def toolkit_env(demo, monkeypatch):
    """The kernel environment of rex's server (what the hub gives the kernel)."""
    for key, value in environment(demo, PROJECT, "rex").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ENCLAVE_HOME", raising=False)
    return demo


@pytest.fixture
def export_service(demo):
    """The export service on ``<home>/run/export.sock``; this process's uid acts as rex, in a
    server started for the demo project."""
    service = ExportService(demo, session_for=sessions_by_uid(fake_session("rex")))
    with ServiceThread(service):
        yield service


@pytest.fixture
def extract_env(tmp_path, monkeypatch):
    """Only the demo extract and rex's workspace (no state store): the kernel's view."""
    from enclave.config import load_settings

    settings = load_settings(tmp_path / "light-home")
    write_demo_extract(settings.projects_dir / PROJECT)
    prepare_workspace(settings, PROJECT, "rex")
    for key, value in environment(settings, PROJECT, "rex").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ENCLAVE_HOME", raising=False)
    return settings
