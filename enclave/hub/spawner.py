"""The hub's Spawner: one researcher server per (user, project), isolated and within quota.

Each server runs as the Unix user ``enc-<username>`` with only the project group
``enclave-<code>``, in its own network namespace (only ``lo``, no route anywhere), in a private
mount namespace that hides the enclave home except this project's extract (read-only), its
scratch (loop-mounted, quota) and the server's socket folder, inside a cgroup with the memory
and CPU limits of ``policies/quotas.yaml``. The server listens on a Unix socket; the proxy
reaches it through a TCP↔Unix bridge in the hub. Start is refused (typed, no traceback) outside
opening hours, when the project's days are used up, when its computers are all in use, and
when isolation cannot be set up (fail closed, unless ``allow_without_netns``).
"""

from __future__ import annotations

import asyncio
import html
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner, SpawnException
from jupyterhub.utils import random_port
from traitlets import Bool, Unicode, default

from enclave import audit, clock
from enclave.config import Settings, load_settings
from enclave.hub import isolation, usage
from enclave.hub.auth import usable_projects
from enclave.hub.bridge import serve_tcp_to_unix, serve_unix_to_tcp
from enclave.hub.policy import SpawnRefused, opening_hours, quotas_policy
from enclave.projects import service
from enclave.state.db import session_scope
from enclave.workspace import singleuser, templates

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

    ip_command = Unicode(
        "ip",
        help="The iproute2 `ip` program that creates the network namespaces (default: `ip` on "
        "PATH). If it is missing or fails, starts are refused unless allow_without_netns.",
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

        group = isolation.project_group_name(project)
        isolation.ensure_group(group)
        account = isolation.ensure_user(self.user.name, group)
        group_gid = isolation.grp.getgrnam(group).gr_gid
        root = isolation.prepare_project(settings, project, group, quota_mb=quotas.scratch_quota_mb)
        scratch = root / "scratch"
        workdir = self._prepare_workspace(settings, project)
        for dirpath, dirs, files in os.walk(workdir):
            os.chown(dirpath, account.pw_uid, group_gid)
            for f in (*files, *dirs):
                # follow_symlinks=False: the extract link stays pointing at root-owned data.
                os.chown(os.path.join(dirpath, f), account.pw_uid, group_gid, follow_symlinks=False)
        os.chmod(workdir, 0o700)
        name = isolation.netns_name(self.user.name, project)
        self.netns = name
        netns_ok = True
        try:
            isolation.create_netns(name, ip=self.ip_command)
        except SpawnRefused as exc:
            if not self.allow_without_netns:
                raise SpawnRefused(
                    "the workspace cannot isolate your server from the network on this host, so it "
                    "is not started (fail closed); an operator may start the hub with --dev-no-netns "
                    "for development only",
                    reason="no_netns",
                    log_message=exc.log_message,
                ) from None
            self.log.warning("DEVELOPMENT: %s runs without a network namespace", name)
            netns_ok = False
        self.cgroup = isolation.create_cgroup(name, memory_mb=quotas.memory_limit_mb, cpus=quotas.cpu_limit)

        hub_dir = usage.hub_dir(settings)
        sockets = isolation.socket_dir(settings, name)
        sockets.mkdir(exist_ok=True)
        self.sockets = sockets
        os.chown(sockets, account.pw_uid, account.pw_gid)
        os.chmod(sockets, 0o700)
        server_sock = sockets / "server.sock"
        server_sock.unlink(missing_ok=True)
        if not self.port:
            self.port = random_port()
        hub = urlparse(self.hub.api_url)
        hub_host, hub_port = hub.hostname or "127.0.0.1", hub.port or 8081
        self.bridges.append(await serve_tcp_to_unix("127.0.0.1", self.port, server_sock))
        self.bridges.append(await serve_unix_to_tcp(sockets / "hub-api.sock", hub_host, hub_port))

        env = self.get_env()
        env.update(self._workspace_env(settings, project, workdir))
        # The server listens on its Unix socket only; jupyter-server refuses --sock with any
        # port but its default, so the URL it is told names the default (it is never bound).
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:8888{self.server.base_url if self.server else '/'}"
        args = [*self.cmd, *self.get_args(), *self._workspace_args(settings, project)]
        args.append(f"--ServerApp.sock={server_sock}")
        relay = None
        if netns_ok:
            relay = [
                self.python,
                "-m",
                "enclave.hub.bridge",
                "tcp-to-unix",
                "--listen",
                f"{hub_host}:{hub_port}",
                "--unix",
                str(sockets / "hub-api.sock"),
            ]
        view = isolation.View(
            home=settings.home,
            code=project,
            extract=root / "extract",
            scratch=scratch,
            sockets=sockets,
            run_dir=settings.home / "run",
            passthrough=isolation.code_folders(settings),
        )
        script = isolation.launch_script(
            view,
            cgroup=self.cgroup,
            uid=account.pw_uid,
            gid=account.pw_gid,
            group_gid=group_gid,
            command=args,
            relay=relay,
        )
        servers = hub_dir / "servers"
        servers.mkdir(mode=0o700, exist_ok=True)
        script_path = servers / f"{name}.sh"
        script_path.write_text(script, encoding="utf-8")
        os.chmod(script_path, 0o700)
        launcher = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", str(script_path)]
        if netns_ok:
            launcher = [self.ip_command, "netns", "exec", name, *launcher]
        launcher = isolation.join_cgroup(self.cgroup, launcher)
        log = open(servers / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            launcher, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True
        )
        log.close()
        self.pid = self.proc.pid
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
                    "netns": name if netns_ok else None,
                    "slot": f"{day} {slot}",
                    "memory_mb": quotas.memory_limit_mb,
                    "cpus": quotas.cpu_limit,
                },
            )
        return (self.ip or "127.0.0.1", self.port)

    def _prepare_workspace(self, settings: Settings, project: str) -> Path:
        """The researcher's folder in the project scratch, with the templates on first use."""
        return templates.prepare_workspace(settings, project, self.user.name)

    def _workspace_env(self, settings: Settings, project: str, workdir: Path) -> dict[str, str]:
        env = {
            "HOME": str(workdir),
            "USER": isolation.unix_user_name(self.user.name),
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
        cgroup = getattr(self, "cgroup", None)
        proc = getattr(self, "proc", None)
        if cgroup is not None:
            await asyncio.get_running_loop().run_in_executor(None, cgroup.kill)
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            await asyncio.get_running_loop().run_in_executor(None, proc.wait)
        for server in getattr(self, "bridges", []):
            server.close()
        self.bridges = []
        if cgroup is not None:
            cgroup.remove()
            self.cgroup = None
        sockets = getattr(self, "sockets", None)
        if sockets is not None:
            shutil.rmtree(sockets, ignore_errors=True)
            self.sockets = None
        netns = getattr(self, "netns", None)
        if netns:
            isolation.delete_netns(netns, ip=self.ip_command)
            self.netns = None
        project = getattr(self, "project", None)
        if project:
            _RUNNING.get(project, set()).discard(self.server_key)
        self.proc = None
