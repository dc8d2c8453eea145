"""The hub's Spawner: one researcher server per (user, project), sandboxed, within quota, and
reached only through a gateway that runs where the researcher cannot.

Each server runs as the researcher's Unix user of this home (``e<tag>-<username>``) with only
the project group, inside a bubblewrap sandbox (:mod:`enclave.hub.sandbox`: new mount, PID, IPC,
UTS, cgroup and network namespaces, a minimal read-only root, private tmpfs, a system-call
filter) and a cgroup with the memory and CPU limits of ``policies/quotas.yaml``. The server
listens on a Unix socket; once the hub has checked that its own server listens there, it moves
the socket out of the researcher's reach and serves it to the proxy through the gateway
(:mod:`enclave.hub.gateway`), which authenticates every request with the hub, allows only
JupyterLab's routes and inspects what flows either way. The server's calls to the Hub API go
through a second, allow-listing gate. The export service learns which uid, project and cgroup
belong together from the session registry (:mod:`enclave.hub.sessions`).

Start is refused (typed, no traceback) outside opening hours, when the project's days are used
up, when its computers are all in use, and when the sandbox cannot be made (fail closed; only
the development flag ``allow_without_netns`` starts a server without a network namespace).
"""

from __future__ import annotations

import asyncio
import html
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner, SpawnException
from jupyterhub.utils import random_port
from traitlets import Bool, Float, Unicode, default

from enclave import audit, clock
from enclave.config import Settings, load_settings
from enclave.hub import isolation, sandbox, sessions, usage
from enclave.hub.auth import usable_projects
from enclave.hub.gateway.hub_api import HubApiGate
from enclave.hub.gateway.server import WorkspaceGateway
from enclave.hub.gateway.upstream import UpstreamRefused, adopt_socket, check_listener
from enclave.hub.policy import SpawnRefused, opening_hours, quotas_policy
from enclave.projects import service
from enclave.state.db import session_scope
from enclave.workspace import singleuser, templates
from enclave.workspace.policy import load_workspace_policy

# Servers running in this hub, by project: the computers quota counts them.
_RUNNING: dict[str, set[str]] = {}


def running_servers(project: str) -> int:
    """How many servers of ``project`` this hub runs now."""
    return len(_RUNNING.get(project, ()))


def _venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class EnclaveSpawner(Spawner):
    """Start a researcher's single-user server in its own namespaces, cgroup and Unix user.

    Override points for tests are the traitlets below; ``start``/``poll``/``stop`` are the
    Spawner API and are not meant to be overridden further.
    """

    enclave_home = Unicode(
        "",
        help="The enclave home (projects, policies, state store). Empty: $ENCLAVE_HOME.",
    ).tag(config=True)

    allow_without_netns = Bool(
        False,
        help="Development only: when a network namespace cannot be created, start the server "
        "anyway in the host's network (default False: refuse, fail closed). Security: "
        "True lets kernels reach the network; never set it on a real enclave.",
    ).tag(config=True)

    python = Unicode(
        sys.executable,
        help="The Python interpreter of the enclave venv, used for the in-namespace Hub API "
        "relay (default: the hub's own interpreter). Must be readable by researchers.",
    ).tag(config=True)

    bwrap_command = Unicode(
        "bwrap",
        help="The bubblewrap program that makes each server's sandbox (default: `bwrap` on PATH, "
        "Debian package bubblewrap). If it is missing, or the kernel refuses a namespace it needs, "
        "starts are refused (fail closed); only a missing network namespace can be overridden, by "
        "allow_without_netns, for development.",
    ).tag(config=True)

    socket_wait = Float(
        0.02,
        help="Seconds between looks for the server's socket while it starts (default 0.02). "
        "The hub checks who listens on it before anything of the researcher's can run.",
    ).tag(config=True)

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return [_venv_bin("jupyterhub-singleuser")]

    @default("options_form")
    def _default_options_form(self) -> Any:
        return self._project_form

    @default("ip")
    def _default_ip(self) -> str:
        return "127.0.0.1"

    @default("disable_user_config")
    def _default_disable_user_config(self) -> bool:
        # A researcher's own ~/.jupyter must not load extensions or change the guard's settings.
        return True

    # ------------------------------------------------------------------ helpers

    def _settings(self) -> Settings:
        return load_settings(self.enclave_home or None)

    def _projects(self, settings: Settings) -> list[str]:
        with session_scope(settings) as session:
            return usable_projects(session, self.user.name)

    def _project_form(self, spawner: Spawner) -> str:
        projects = self._projects(self._settings())
        if len(projects) <= 1:
            return ""
        options = "".join(f'<option value="{html.escape(p)}">{html.escape(p)}</option>' for p in projects)
        return (
            '<label for="project">Project to work on (you will see only this one)</label>'
            f'<select class="form-control" name="project" id="project">{options}</select>'
        )

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, str]:
        value = (formdata.get("project") or [""])[0]
        return {"project": value} if value else {}

    def _chosen_project(self, settings: Settings) -> str:
        projects = self._projects(settings)
        wanted = (self.user_options or {}).get("project")
        if wanted:
            if wanted not in projects:
                raise SpawnRefused(
                    f"you may not work on {wanted} now (not an active project of yours)", reason="not_allowed"
                )
            return wanted
        if len(projects) == 1:
            return projects[0]
        if not projects:
            raise SpawnRefused("you have no active project to work on", reason="not_allowed")
        raise SpawnRefused("choose a project on the start page (you are in several)", reason="no_project")

    @property
    def server_key(self) -> str:
        return f"{self.user.name}/{self.name}"

    # ------------------------------------------------------------------ Spawner API

    def get_state(self) -> dict:
        state = super().get_state()
        if getattr(self, "project", None):
            state["project"] = self.project
        return state

    async def start(self) -> tuple[str, int]:
        try:
            return await self._start()
        except SpawnRefused as exc:
            await self._cleanup()
            settings = self._settings()
            with session_scope(settings) as session:
                audit.record(
                    session,
                    settings,
                    actor=self.user.name,
                    role="researcher",
                    action="hub.spawn",
                    obj=self.server_key,
                    project=getattr(self, "project", None),
                    outcome=audit.Outcome.DENIED,
                    details={"reason": exc.reason, "message": exc.user_message},
                )
            # JupyterHub shows the log message on the spawn form, so it leads with the user's.
            detail = (
                exc.user_message if exc.log_message == exc.user_message else f"{exc.user_message} [{exc.log_message}]"
            )
            raise SpawnException(exc.user_message, reason=exc.reason, log_message=detail) from None

    async def _start(self) -> tuple[str, int]:
        settings = self._settings()
        quotas = quotas_policy(settings)
        hours = opening_hours(settings)
        self.project = None
        self.proc = None
        self.bridges: list[asyncio.AbstractServer] = []
        project = self._chosen_project(settings)
        self.project = project
        # Kept with the server so the scheduler (a hub service) knows whose days it uses.
        self.user_options = {**(self.user_options or {}), "project": project}
        usage.check_member(settings, project=project, username=self.user.name)
        now = clock.now()
        slot = hours.slot_at(now)
        if slot is None:
            raise SpawnRefused(
                f"the workspace is closed now ({hours.local(now):%a %Y-%m-%d %H:%M}); it opens {hours.describe()}",
                reason="outside_hours",
            )
        day = hours.local(now).date()
        usage.check_days_left(settings, project=project, day=day, slot=slot)
        with session_scope(settings) as session:
            computers = service.get_project(session, project).computers
        if running_servers(project) >= computers:
            raise SpawnRefused(
                f"{project} already uses its {computers} computer(s); stop another member's server "
                "or apply for more computers",
                reason="computers_in_use",
            )
        # Claimed before the first await, so two starts at once cannot both take the last one.
        _RUNNING.setdefault(project, set()).add(self.server_key)

        account, group_gid = self._accounts(settings, project)
        network = self._check_sandbox()
        root = isolation.prepare_project(
            settings, project, isolation.project_group_name(settings, project), quota_mb=quotas.scratch_quota_mb
        )
        workdir = self._prepare_workspace(settings, project, uid=account.pw_uid, gid=group_gid)
        name = isolation.server_name(settings, self.user.name, project)
        self.cgroup = isolation.create_cgroup(name, memory_mb=quotas.memory_limit_mb, cpus=quotas.cpu_limit)
        self.sockets = isolation.socket_folders(settings, name, uid=account.pw_uid, gid=account.pw_gid)
        hub = urlparse(self.hub.api_url)
        hub_host, hub_port = hub.hostname or "127.0.0.1", hub.port or 8081
        hub_api_socket = self.sockets.shared / "hub-api.sock"
        self.hub_gate = HubApiGate(username=self.user.name, server_name=self.name, hub_host=hub_host, hub_port=hub_port)
        await self.hub_gate.start(hub_api_socket)

        cookie_secret = secrets.token_hex(32)
        env = self.get_env()
        env.update(self._workspace_env(settings, project, workdir))
        # The server listens on its Unix socket only; jupyter-server refuses --sock with any
        # port but its default, so the URL it is told names the default (it is never bound).
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:8888{self.server.base_url if self.server else '/'}"
        # Read (and removed from the environment) by the workspace's root-owned server config,
        # so the gateway can read the server's OAuth cookie and no kernel inherits either.
        env["ENCLAVE_COOKIE_SECRET"] = cookie_secret
        server_sock = self.sockets.server / "server.sock"
        args = [*self.cmd, *self.get_args(), *self._workspace_args(settings, project)]
        args.append(f"--ServerApp.sock={server_sock}")
        inner = "exec " + shlex.join(args)
        if network:
            relay = [
                self.python,
                "-m",
                "enclave.hub.bridge",
                "tcp-to-unix",
                "--listen",
                f"{hub_host}:{hub_port}",
                "--unix",
                str(hub_api_socket),
            ]
            inner = shlex.join(relay) + " & " + inner
        spec = sandbox.SandboxSpec(
            uid=account.pw_uid,
            gid=account.pw_gid,
            group_gid=group_gid,
            account=account.pw_name,
            group=isolation.project_group_name(settings, project),
            workdir=workdir,
            read_only=(*isolation.code_folders(settings), root / "extract", settings.home / "run"),
            read_write=(root / "scratch", self.sockets.shared),
            tmp_mb=quotas.tmp_mb,
            shm_mb=quotas.shm_mb,
            network=network,
        )
        prepared = sandbox.prepare(spec, ["/bin/sh", "-c", inner], bwrap=self.bwrap_command)
        servers = usage.hub_dir(settings) / "servers"
        servers.mkdir(mode=0o700, exist_ok=True)
        log = open(servers / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        try:
            self.proc = subprocess.Popen(
                isolation.join_cgroup(self.cgroup, prepared.argv),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=prepared.fds,
            )
        finally:
            log.close()
            prepared.close()
        self.pid = self.proc.pid
        upstream = await self._adopt_server_socket(server_sock, uid=account.pw_uid, log_path=servers / f"{name}.log")
        if not self.port:
            self.port = random_port()
        self.gateway = WorkspaceGateway.for_spawner(
            self,
            upstream=upstream,
            policy=load_workspace_policy(settings),
            cookie_secret=cookie_secret.encode(),
            on_refusal=self._audit_refusal,
        )
        await self.gateway.start("127.0.0.1", self.port)
        sessions.register(
            settings,
            sessions.WorkspaceSession(
                username=self.user.name,
                project=project,
                uid=account.pw_uid,
                gid=group_gid,
                cgroup=self.cgroup.kernel_path,
                cgroup_dirs=tuple(str(p) for p in self.cgroup.paths),
                started_at=clock.now().isoformat(),
            ),
        )
        self.session_uid = account.pw_uid
        try:
            usage.mark_slot(settings, project=project, day=day, slot=slot, servers=running_servers(project))
        except SpawnRefused:
            await self._cleanup()
            raise
        with session_scope(settings) as session:
            audit.record(
                session,
                settings,
                actor=self.user.name,
                role="researcher",
                action="hub.spawn",
                obj=self.server_key,
                project=project,
                details={
                    "sandbox": "bwrap",
                    "netns": network,
                    "slot": f"{day} {slot}",
                    "memory_mb": quotas.memory_limit_mb,
                    "cpus": quotas.cpu_limit,
                    "uid": account.pw_uid,
                },
            )
        return (self.ip or "127.0.0.1", self.port)

    def _accounts(self, settings: Settings, project: str):
        """The researcher's Unix account in this home and the project group's gid."""
        group = isolation.project_group_name(settings, project)
        group_gid = isolation.ensure_group(group)
        return isolation.ensure_user(settings, self.user.name, group), group_gid

    def _check_sandbox(self) -> bool:
        """Whether the sandbox gets a network namespace (always, unless development allows not).

        Raises
        ------
        SpawnRefused
            The sandbox cannot be made (fail closed), naming what is missing.
        """
        try:
            sandbox.probe(bwrap=self.bwrap_command, network=True)
            return True
        except sandbox.SandboxUnavailable as exc:
            if exc.reason != "no_netns" or not self.allow_without_netns:
                if exc.reason == "no_netns":
                    raise sandbox.SandboxUnavailable(
                        "the workspace cannot isolate your server from the network on this host, so it "
                        "is not started (fail closed); an operator may start the hub with --dev-no-netns "
                        "for development only",
                        reason="no_netns",
                        log_message=exc.log_message,
                    ) from None
                raise
        sandbox.probe(bwrap=self.bwrap_command, network=False)
        self.log.warning(
            "DEVELOPMENT: the server of %s runs without a network namespace (allow_without_netns)", self.user.name
        )
        return False

    async def _adopt_server_socket(self, path: Path, *, uid: int, log_path: Path) -> Path:
        """Wait for the server's socket, check who listens, and move it out of the sandbox.

        Nothing of the researcher's has run yet (kernels start only once the server is up),
        so the listener found here is the server itself; it must also be the sandbox's main
        process. From now on the gateway connects only to the moved socket.
        """
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
                raise SpawnRefused(
                    "your workspace server stopped while starting; the operator has its log",
                    reason="server_exited",
                    log_message=f"exit {self.proc.returncode}: {tail}",
                )
            if path.is_socket():
                try:
                    check_listener(path, uid=uid, in_sandbox=self.cgroup.holds)
                except UpstreamRefused as exc:
                    raise SpawnRefused(
                        "your workspace server could not be verified, so it is not used",
                        reason="socket_impostor",
                        log_message=str(exc),
                    ) from None
                except OSError:
                    pass  # bound but not listening yet
                else:
                    return adopt_socket(path, self.sockets.gate)
            await asyncio.sleep(self.socket_wait)
        raise SpawnRefused(
            "your workspace server did not start in time; try again, or ask the operator",
            reason="start_timeout",
            log_message=f"no listener on {path} after {self.start_timeout} s",
        )

    def _audit_refusal(self, kind: str, details: dict[str, Any]) -> None:
        """Record one refusal by the gateway (a blocked route, download, upload or message)."""
        recorder = getattr(self, "refusals", None)
        if recorder is None:
            recorder = self.refusals = audit.RefusalRecorder(self._settings())
        recorder.record(
            actor=self.user.name,
            role="researcher",
            action=f"workspace.{kind}",
            obj=self.server_key,
            project=getattr(self, "project", None),
            details=details,
        )

    def _prepare_workspace(self, settings: Settings, project: str, *, uid: int, gid: int) -> Path:
        """The researcher's folder in the project scratch, theirs, with the templates on first use."""
        return templates.prepare_workspace(settings, project, self.user.name, uid=uid, gid=gid)

    def _workspace_env(self, settings: Settings, project: str, workdir: Path) -> dict[str, str]:
        env = {
            "HOME": str(workdir),
            "USER": isolation.unix_user_name(settings, self.user.name),
            "SHELL": "/bin/sh",
            "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
            "IPYTHONDIR": "/tmp/ipython",
            "PYTHONNOUSERSITE": "1",
            "ENCLAVE_PROJECT": project,
            "ENCLAVE_EXTRACT": str(settings.projects_dir / project / "extract"),
            "ENCLAVE_SCRATCH": str(workdir),
        }
        env.update(singleuser.environment(settings, project, self.user.name))
        return env

    def _workspace_args(self, settings: Settings, project: str) -> list[str]:
        # The workspace's arguments: root folder, guard extension, terminals (same policy).
        return singleuser.server_args(settings, project, self.user.name)

    async def poll(self) -> int | None:
        proc = getattr(self, "proc", None)
        if proc is None:
            return 0
        return proc.poll()

    async def stop(self, now: bool = False) -> None:
        await self._cleanup()
        project = getattr(self, "project", None)
        if project:
            settings = self._settings()
            with session_scope(settings) as session:
                audit.record(
                    session,
                    settings,
                    actor="system",
                    role="system",
                    action="hub.stop",
                    obj=self.server_key,
                    project=project,
                )

    async def _cleanup(self) -> None:
        gateway = getattr(self, "gateway", None)
        if gateway is not None:
            gateway.stop()
            self.gateway = None
        hub_gate = getattr(self, "hub_gate", None)
        if hub_gate is not None:
            hub_gate.stop()
            self.hub_gate = None
        uid = getattr(self, "session_uid", None)
        if uid is not None:
            sessions.unregister(self._settings(), uid)
            self.session_uid = None
        cgroup = getattr(self, "cgroup", None)
        proc = getattr(self, "proc", None)
        if cgroup is not None:
            await asyncio.get_running_loop().run_in_executor(None, cgroup.kill)
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            await asyncio.get_running_loop().run_in_executor(None, proc.wait)
        if cgroup is not None:
            cgroup.remove()
            self.cgroup = None
        folders = getattr(self, "sockets", None)
        if folders is not None:
            folders.remove()
            self.sockets = None
        project = getattr(self, "project", None)
        if project:
            _RUNNING.get(project, set()).discard(self.server_key)
        self.proc = None
