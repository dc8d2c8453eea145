"""Host-side isolation for researcher servers: Unix users and groups, project permissions,
the scratch quota, socket folders, cgroups, and what of the host a server runs from.

Everything here runs as root in the hub's process and calls the system tools (``useradd``,
``mount``, ``mkfs.ext4``) rather than reimplementing them. Each step is idempotent so a
restart of the hub, or a second server of the same project, finds things as they should be.
Every host-wide name carries the home's tag (:func:`host_tag`). The sandbox itself is
:mod:`enclave.hub.sandbox`.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from enclave.config import Settings
from enclave.hub.policy import SpawnRefused

CGROUP_V1 = Path("/sys/fs/cgroup")
CGROUP_PARENT = "enclave"


class IsolationError(SpawnRefused):
    """A host-side isolation step failed (a tool missing or refusing)."""


def _run(cmd: list[str], what: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise IsolationError(
            f"cannot {what}: {cmd[0]} is not installed (scripts/install-system-deps.sh)", reason="host_tool_missing"
        ) from None
    if done.returncode != 0:
        raise IsolationError(
            f"cannot {what}",
            reason="host_tool_failed",
            log_message=f"{shlex.join(cmd)} -> {done.returncode}: {done.stderr.strip()}",
        )
    return done.stdout


def host_tag(settings: Settings) -> str:
    """Six hex digits naming this enclave home in host-wide names (Unix users and groups,
    cgroups, socket folders), so two homes on one host never touch each other's objects."""
    return hashlib.sha256(str(settings.home).encode()).hexdigest()[:6]


def _host_name(settings: Settings, name: str) -> str:
    # Unix names have at most 32 characters; a longer one keeps a digest of the whole.
    full = f"e{host_tag(settings)}-{name}"
    if len(full) <= 32:
        return full
    return f"{full[:23]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def unix_user_name(settings: Settings, username: str) -> str:
    """``e<tag>-<username>``: the Unix account a researcher's servers of this home run as."""
    return _host_name(settings, username)


def project_group_name(settings: Settings, code: str) -> str:
    """``e<tag>-<code lower>``: the Unix group of a project's members in this home."""
    return _host_name(settings, code.lower())


def server_name(settings: Settings, username: str, code: str) -> str:
    """The name of one server's cgroup and socket folder: home tag, user and project."""
    return f"{host_tag(settings)}-{username}-{code.lower()}"


def ensure_group(name: str) -> int:
    """Create the system group ``name`` if missing; return its gid."""
    with contextlib.suppress(KeyError):
        return grp.getgrnam(name).gr_gid
    _run(["groupadd", "--system", name], f"create the group {name}")
    return grp.getgrnam(name).gr_gid


def ensure_user(settings: Settings, username: str, project_group: str) -> pwd.struct_passwd:
    """Create the researcher's Unix account (no login shell, no home) and add it to ``project_group``."""
    name = unix_user_name(settings, username)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                "--comment",
                f"enclave {settings.home} user {username}",
                name,
            ],
            f"create the Unix user {name}",
        )
        entry = pwd.getpwnam(name)
    if name not in grp.getgrnam(project_group).gr_mem:
        _run(["usermod", "--append", "--groups", project_group, name], f"add {name} to {project_group}")
    return entry


def prepare_project(settings: Settings, code: str, group: str, *, quota_mb: int) -> Path:
    """Give the project area to its group and mount its scratch with the quota.

    ``<home>/projects/<CODE>`` becomes root:group 0750, the extract root:group read-only
    (dirs 0550, files 0440), scratch a loop-mounted ext4 image of ``quota_mb`` (root:group
    0750: only the hub creates the members' own folders in it, so no member can plant a name,
    a link say, where another member's workspace will be), so writes beyond the quota fail
    with ENOSPC for every member together.
    """
    gid = grp.getgrnam(group).gr_gid
    root = settings.projects_dir / code
    extract = root / "extract"
    if not extract.is_dir():
        raise SpawnRefused(
            f"{code} has no extract yet; the data custodian provisions it first",
            reason="not_provisioned",
            log_message=f"missing {extract}",
        )
    os.chown(root, 0, gid)
    os.chmod(root, 0o750)
    for dirpath, _dirnames, filenames in os.walk(extract):
        os.chown(dirpath, 0, gid)
        os.chmod(dirpath, 0o550)
        for f in filenames:
            os.chown(os.path.join(dirpath, f), 0, gid)
            os.chmod(os.path.join(dirpath, f), 0o440)
    scratch = root / "scratch"
    scratch.mkdir(exist_ok=True)
    mount_scratch(settings, code, scratch, quota_mb=quota_mb)
    os.chown(scratch, 0, gid)
    os.chmod(scratch, 0o750)
    return root


def _is_mountpoint(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0


def mount_scratch(settings: Settings, code: str, scratch: Path, *, quota_mb: int) -> None:
    """Loop-mount ``<home>/hub/scratch/<CODE>.ext4`` (created at ``quota_mb``) on ``scratch``."""
    if _is_mountpoint(scratch):
        return
    images = settings.home / "hub" / "scratch"
    images.mkdir(mode=0o700, parents=True, exist_ok=True)
    image = images / f"{code}.ext4"
    if not image.exists():
        with open(image, "wb") as fh:
            fh.truncate(quota_mb * 1024 * 1024)
        # -m 0: no blocks reserved for root, the whole quota is the project's.
        _run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "root_owner=0:0", str(image)],
            f"format the scratch image of {code}",
        )
    _run(["mount", "-o", "loop,nosuid,nodev", str(image), str(scratch)], f"mount the scratch of {code}")
    # Opened without following links: the folder is root's alone, but never trust a name in
    # a file system that researchers write.
    with contextlib.suppress(FileNotFoundError, NotADirectoryError, OSError):
        fd = os.open(scratch / "lost+found", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


def release_project(settings: Settings, code: str) -> None:
    """Unmount a project's scratch (the loop device is freed with it)."""
    scratch = settings.projects_dir / code / "scratch"
    if scratch.exists() and _is_mountpoint(scratch):
        subprocess.run(["umount", "-l", str(scratch)], check=False, capture_output=True)


def release_all(settings: Settings) -> None:
    """Unmount every project's scratch (hub shutdown, tests)."""
    if settings.projects_dir.is_dir():
        for child in settings.projects_dir.iterdir():
            release_project(settings, child.name)


# ---------------------------------------------------------------- socket folders

SOCKET_ROOT = Path("/run/enclave-hub")


@dataclass(frozen=True)
class SocketFolders:
    """The Unix-socket folders of one server.

    ``shared`` (root, 0755, shown in the sandbox) holds the hub-API socket that the hub
    listens on; ``server`` inside it (the researcher's, 0700) is where the server binds its
    own socket; ``gate`` (root, 0700, never shown in the sandbox) is where the hub moves that
    socket once it has checked who listens, and the only place the gateway connects to.
    """

    shared: Path
    server: Path
    gate: Path

    def remove(self) -> None:
        for path in (self.gate, self.shared):
            shutil.rmtree(path, ignore_errors=True)


def socket_folders(settings: Settings, name: str, *, uid: int, gid: int) -> SocketFolders:
    """Fresh socket folders for server ``name`` (``/run/enclave-hub/<hash>``).

    A Unix socket path may not exceed 107 bytes, which a path under a deep enclave home can;
    the hash keeps homes apart. The root is 0711 (enter, not list).
    """
    SOCKET_ROOT.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(SOCKET_ROOT, 0o711)
    digest = hashlib.sha256(f"{settings.home}\0{name}".encode()).hexdigest()[:16]
    folders = SocketFolders(SOCKET_ROOT / digest, SOCKET_ROOT / digest / "server", SOCKET_ROOT / f"{digest}.gate")
    folders.remove()
    folders.shared.mkdir(mode=0o755)
    os.chmod(folders.shared, 0o755)
    folders.server.mkdir(mode=0o700)
    os.chown(folders.server, uid, gid)
    folders.gate.mkdir(mode=0o700)
    return folders


# ---------------------------------------------------------------- cgroups


def process_in_cgroup(pid: int, kernel_path: str) -> bool:
    """Whether host process ``pid`` is in the cgroup ``kernel_path`` (``/enclave/<name>``), in
    any hierarchy, as ``/proc/<pid>/cgroup`` says: the kernel's word, which only root can change
    by moving the process."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[2] == kernel_path:
            return True
    return False


@dataclass(frozen=True)
class Cgroup:
    """The cgroup(s) holding one server: every path's ``cgroup.procs`` gets the server.

    ``kernel_path`` is the cgroup as ``/proc/<pid>/cgroup`` names it (``/enclave/<name>``),
    the same in every hierarchy.
    """

    paths: tuple[Path, ...]
    kernel_path: str = ""

    def holds(self, pid: int) -> bool:
        """Whether host process ``pid`` is in this cgroup."""
        return process_in_cgroup(pid, self.kernel_path)

    def procs(self) -> set[int]:
        pids: set[int] = set()
        for path in self.paths:
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (path / "cgroup.procs").read_text().split()}
        return pids

    def kill(self) -> None:
        """SIGKILL everything in the cgroup (kernels, relays, the server)."""
        for _ in range(20):
            pids = self.procs()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                os.waitpid(-1, os.WNOHANG)

    def remove(self) -> None:
        for path in self.paths:
            with contextlib.suppress(OSError):
                path.rmdir()

    def oom_kills(self) -> int:
        """How many processes the memory limit killed (cgroup v1 ``memory.oom_control``)."""
        for path in self.paths:
            control = path / "memory.oom_control"
            if control.exists():
                for line in control.read_text().splitlines():
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        return 0


def create_cgroup(name: str, *, memory_mb: int, cpus: float, root: Path = CGROUP_V1) -> Cgroup:
    """Create the cgroup of one server with its memory and CPU limits.

    cgroup v1 (``memory`` and ``cpu`` controllers) or v2 (``memory.max``, ``cpu.max``).

    Raises
    ------
    SpawnRefused
        Neither hierarchy is writable: a declared limit could not be enforced (fail closed).
    """
    limit = memory_mb * 1024 * 1024
    period = 100_000
    quota = max(1000, int(cpus * period))
    try:
        if (root / "memory" / "memory.limit_in_bytes").exists() and (root / "cpu").is_dir():
            mem = root / "memory" / CGROUP_PARENT / name
            cpu = root / "cpu" / CGROUP_PARENT / name
            for path in (mem, cpu):
                path.mkdir(parents=True, exist_ok=True)
            (mem / "memory.limit_in_bytes").write_text(str(limit))
            with contextlib.suppress(OSError):  # only when swap accounting is on
                (mem / "memory.memsw.limit_in_bytes").write_text(str(limit))
            with contextlib.suppress(OSError):
                (mem / "memory.swappiness").write_text("0")
            (cpu / "cpu.cfs_period_us").write_text(str(period))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))
            return Cgroup((mem, cpu), f"/{CGROUP_PARENT}/{name}")
        if (root / "cgroup.controllers").exists():
            path = root / CGROUP_PARENT / name
            parent = path.parent
            parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                (root / "cgroup.subtree_control").write_text("+memory +cpu")
                (parent / "cgroup.subtree_control").write_text("+memory +cpu")
            path.mkdir(exist_ok=True)
            (path / "memory.max").write_text(str(limit))
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
            (path / "cpu.max").write_text(f"{quota} {period}")
            return Cgroup((path,), f"/{CGROUP_PARENT}/{name}")
    except OSError as exc:
        raise SpawnRefused(
            "the memory and CPU limits cannot be enforced on this host; the server is not started",
            reason="limits_unenforceable",
            log_message=str(exc),
        ) from None
    raise SpawnRefused(
        "the memory and CPU limits cannot be enforced on this host (no cgroup "
        "memory/cpu controller); the server is not started",
        reason="limits_unenforceable",
    )


# ---------------------------------------------------------------- what a server runs from


def code_folders(settings: Settings) -> tuple[Path, ...]:
    """What a server must see of the host to run, read-only: the Python installation(s), the
    enclave's own packages (an editable checkout lives outside site-packages) and the policies.

    The checkout root itself is never shown (the enclave home may live inside it); only the
    package folders are.

    Raises
    ------
    ValueError
        A folder contains the enclave home: showing it would show the vault and the keys.
    """
    import catalog
    import disclosure_review
    import enclave
    import pipelines

    folders = {Path(sys.base_prefix), Path(sys.prefix), settings.policies_dir}
    for package in (enclave, catalog, pipelines, disclosure_review):
        folders.add(Path(package.__file__).resolve().parent)
    resolved = sorted({p.resolve() for p in folders}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in resolved:
        if settings.home.resolve().is_relative_to(path):
            raise ValueError(f"{path} contains the enclave home; it cannot be shown to a researcher")
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return tuple(kept)


def join_cgroup(cgroup: Cgroup, command: list[str]) -> list[str]:
    """Wrap ``command`` so it runs inside ``cgroup`` (joined on the host, before the sandbox
    hides the cgroup tree): every process it starts stays there, and only root moves them."""
    joins = "; ".join(f"echo $$ > {shlex.quote(str(p / 'cgroup.procs'))}" for p in cgroup.paths)
    return ["/bin/sh", "-c", f'{joins}; exec "$@"', "enclave-launch", *command]
