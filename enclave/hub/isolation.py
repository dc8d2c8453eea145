"""Host-side isolation for researcher servers: Unix users and groups, project permissions,
the scratch quota, network namespaces, cgroups and the launch script of the mount view.

Everything here runs as root in the hub's process and calls the system tools (``useradd``,
``ip``, ``mount``, ``losetup``) rather than reimplementing them. Each step is idempotent so a
restart of the hub, or a second server of the same project, finds things as they should be.
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


def unix_user_name(username: str) -> str:
    """``enc-<username>``: the Unix account a researcher's server runs as."""
    return f"enc-{username}"[:32]


def project_group_name(code: str) -> str:
    """``enclave-<code lower>``: the Unix group of a project's members."""
    return f"enclave-{code.lower()}"[:32]


def ensure_group(name: str) -> int:
    """Create the system group ``name`` if missing; return its gid."""
    with contextlib.suppress(KeyError):
        return grp.getgrnam(name).gr_gid
    _run(["groupadd", "--system", name], f"create the group {name}")
    return grp.getgrnam(name).gr_gid


def ensure_user(username: str, project_group: str) -> pwd.struct_passwd:
    """Create ``enc-<username>`` (no login shell, no home) and add it to ``project_group``."""
    name = unix_user_name(username)
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
    (dirs 0550, files 0440), scratch a loop-mounted ext4 image of ``quota_mb`` (group 2770),
    so writes beyond the quota fail with ENOSPC for every member together.
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
    os.chmod(scratch, 0o2770)
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
    lost = scratch / "lost+found"
    if lost.is_dir():
        os.chmod(lost, 0o700)


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


def socket_dir(settings: Settings, name: str) -> Path:
    """A short folder for one server's Unix sockets (``/run/enclave-hub/<hash>``).

    A Unix socket path may not exceed 107 bytes, which a path under a deep enclave home can;
    the hash keeps homes apart. The root is 0711 (enter, not list); each folder is the
    researcher's own, 0700, so no other server can reach it.
    """
    SOCKET_ROOT.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(SOCKET_ROOT, 0o711)
    digest = hashlib.sha256(f"{settings.home}\0{name}".encode()).hexdigest()[:16]
    return SOCKET_ROOT / digest


# ---------------------------------------------------------------- network namespaces


def netns_name(username: str, code: str) -> str:
    return f"enc-{username}-{code.lower()}"


def create_netns(name: str, *, ip: str = "ip") -> None:
    """Create network namespace ``name`` with only ``lo`` up (no other interface, no route)."""
    delete_netns(name, ip=ip)
    _run([ip, "netns", "add", name], f"create the network namespace {name}")
    _run([ip, "-n", name, "link", "set", "lo", "up"], f"bring up lo in {name}")


def delete_netns(name: str, *, ip: str = "ip") -> None:
    with contextlib.suppress(OSError):
        subprocess.run([ip, "netns", "delete", name], check=False, capture_output=True)


# ---------------------------------------------------------------- cgroups


@dataclass(frozen=True)
class Cgroup:
    """The cgroup(s) holding one server: every path's ``cgroup.procs`` gets the server."""

    paths: tuple[Path, ...]

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
            return Cgroup((mem, cpu))
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
            return Cgroup((path,))
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


# ---------------------------------------------------------------- the launch script


@dataclass(frozen=True)
class View:
    """What a server sees of the enclave home (same absolute paths as on the host)."""

    home: Path
    code: str
    extract: Path
    scratch: Path
    sockets: Path
    run_dir: Path
    # Host folders the server needs (the Python installation) that sit below a folder others
    # may not enter (e.g. /root/.pyenv): that folder is hidden and they alone are bound back.
    passthrough: tuple[Path, ...] = ()


_COVERED = (Path("/tmp"), Path("/run"))


def code_folders(settings) -> tuple[Path, ...]:
    """What a server must see of the host to run: the Python installation(s), the enclave's own
    packages (an editable checkout lives outside site-packages) and the policy folder.

    The checkout root itself is never passed (the enclave home may live inside it); only the
    package folders are.
    """
    import sys

    import catalog
    import disclosure_review
    import enclave
    import pipelines

    folders = {Path(sys.base_prefix), Path(sys.prefix), settings.policies_dir}
    for package in (enclave, catalog, pipelines, disclosure_review):
        folders.add(Path(package.__file__).resolve().parent)
    return tuple(sorted(p.resolve() for p in folders))


def _passthrough_plan(view: View) -> list[tuple[Path, Path | None]]:
    """Which passthrough folders must be bound back, and which hidden ancestor to cover.

    A folder is bound back when something would hide it: a parent others may not enter (the
    parent is then covered by an empty tmpfs), or the script's own fresh /tmp, /run or home.
    Nested folders are bound once, through their outermost ancestor in the list.
    """
    plan: list[tuple[Path, Path | None]] = []
    resolved = sorted({p.resolve() for p in view.passthrough}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for real in resolved:
        if any(real.is_relative_to(k) for k in kept):
            continue
        cover = hidden_parent(real)
        covered = any(real.is_relative_to(c) for c in (*_COVERED, view.home))
        if cover is None and not covered:
            continue
        if view.home.is_relative_to(real):
            raise ValueError(f"{real} contains the enclave home; it cannot be shown to a researcher")
        if covered:
            # The script's own fresh /tmp, /run or home already hides everything around it.
            cover = None
        kept.append(real)
        plan.append((real, cover))
    return plan


def hidden_parent(path: Path) -> Path | None:
    """The first ancestor of ``path`` that others may not traverse (no ``o+x``), if any."""
    for parent in reversed(path.resolve().parents):
        if parent != Path("/") and not parent.stat().st_mode & 0o001:
            return parent
    return None


def launch_script(
    view: View,
    *,
    cgroup: Cgroup,
    uid: int,
    gid: int,
    group_gid: int,
    command: list[str],
    relay: list[str] | None,
) -> str:
    """The root shell script run inside the new mount (and network) namespace.

    (The process joins the cgroup before entering the namespaces: see :func:`join_cgroup`.)
    It stages the real home on a private tmpfs, hides the whole enclave
    home and ``/tmp`` under fresh tmpfs mounts, binds back only this project's extract
    (read-only), its scratch, the server's socket folder and the export-service folder, then
    drops to the researcher's Unix user with no capabilities and no new privileges.
    """
    q = shlex.quote
    home = str(view.home)
    stage = "/mnt/.enclave-stage"
    rel = lambda p: str(Path(p).relative_to(view.home))  # noqa: E731
    lines = ["#!/bin/sh", "set -eu"]
    passthrough = _passthrough_plan(view)
    lines += [
        "mount --make-rprivate /",
        f"mkdir -p {stage}",
        f"mount -t tmpfs -o size=1m,mode=0700 enclave-stage {stage}",
        f"mkdir {stage}/h",
        f"mount --rbind {q(home)} {stage}/h",
    ]
    # Code and interpreter folders are staged first: /tmp, /run and the home are covered next,
    # and a checkout under /tmp (or a Python under /root) must still be reachable.
    for n, (real, _cover) in enumerate(passthrough):
        lines += [f"mkdir {stage}/p{n}", f"mount --rbind {q(str(real))} {stage}/p{n}"]
    lines += [
        # A private /tmp: nothing of the host's (or of a home kept under /tmp) shows through.
        "mount -t tmpfs -o mode=1777,nosuid,nodev,size=512m enclave-tmp /tmp",
        f"mkdir -p {q(home)}",
        f"mount -t tmpfs -o mode=0755,size=1m enclave-view {q(home)}",
    ]
    # Folders outside the home (the short socket folder under /run) stay visible as they are.
    binds = [
        (p, ro)
        for p, ro in ((view.extract, True), (view.scratch, False), (view.sockets, False))
        if p.is_relative_to(view.home)
    ]
    for path, _ in binds:
        lines.append(f"mkdir -p {q(str(path))}")
    lines.append(f"mkdir -p {q(str(view.run_dir))}")
    for path, read_only in binds:
        lines.append(f"mount --rbind {stage}/h/{q(rel(path))} {q(str(path))}")
        if read_only:
            lines.append(f"mount -o remount,bind,ro,nosuid,nodev {q(str(path))}")
    lines.append(
        f"if [ -d {stage}/h/{q(rel(view.run_dir))} ]; then "
        f"mount --bind {stage}/h/{q(rel(view.run_dir))} {q(str(view.run_dir))}; fi"
    )
    if not view.sockets.is_relative_to(view.home):
        # Host services listen on Unix sockets under /run (no network namespace stops those):
        # /run is hidden and only this server's socket folder is bound back.
        sock = q(str(view.sockets))
        lines += [
            f"mkdir {stage}/s",
            f"mount --bind {sock} {stage}/s",
            "mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev enclave-run /run",
            f"mkdir -p {sock}",
            f"mount --bind {stage}/s {sock}",
            f"umount -l {stage}/s",
        ]
    for cover in sorted({c for _r, c in passthrough if c is not None}, key=lambda c: len(c.parts)):
        lines.append(f"mount -t tmpfs -o mode=0755,size=1m enclave-hidden {q(str(cover))}")
    for n, (real, _cover) in enumerate(passthrough):
        lines += [
            f"mkdir -p {q(str(real))}",
            f"mount --rbind {stage}/p{n} {q(str(real))}",
            f"mount -o remount,bind,ro {q(str(real))}",
            f"umount -l {stage}/p{n}",
        ]
    lines += [
        f"umount -l {stage}/h",
        f"umount -l {stage}",
        f"mount -o remount,ro,bind {q(home)}",
    ]
    inner = ""
    if relay:
        inner += shlex.join(relay) + " & "
    inner += "exec " + shlex.join(command)
    setpriv = [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        f"--groups={group_gid}",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        "/bin/sh",
        "-c",
        inner,
    ]
    lines.append("exec " + shlex.join(setpriv))
    return "\n".join(lines) + "\n"


def join_cgroup(cgroup: Cgroup, command: list[str]) -> list[str]:
    """Wrap ``command`` so it runs inside ``cgroup`` (joined before ``ip netns exec``, which
    remounts ``/sys`` and so hides the cgroup tree)."""
    joins = "; ".join(f"echo $$ > {shlex.quote(str(p / 'cgroup.procs'))}" for p in cgroup.paths)
    return ["/bin/sh", "-c", f'{joins}; exec "$@"', "enclave-launch", *command]


def tool_available(name: str) -> bool:
    return shutil.which(name) is not None
