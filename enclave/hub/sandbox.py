"""The sandbox of one researcher's server, made by bubblewrap (``bwrap``, Debian's package).

:func:`prepare` builds the whole ``bwrap`` command line in one place; every namespace and every
mount is there for a stated reason. The server sees a minimal read-only root (the system's
``/usr``, a handful of ``/etc`` files, the Python installation and the enclave's own
packages), its own ``/proc`` (no other process of the host is visible), ``/dev`` with the
harmless devices only, private size-limited tmpfs mounts for ``/tmp`` (``/var/tmp`` is the
same) and ``/dev/shm`` that vanish with the sandbox, and of the enclave home exactly: the
project's extract (read-only), the project scratch, its server-socket folder and the export
service's socket. It runs in new PID, IPC, UTS, cgroup and network namespaces (only ``lo``),
with no capabilities, ``no_new_privs``, every bind ``nosuid``, and the system-call filter of
:mod:`enclave.hub.syscall_filter`. bubblewrap runs as root to make the mounts; inside,
``setpriv`` (util-linux) drops to the researcher's Unix user before anything of the
researcher's runs.

:func:`probe` checks once per hub process that the tool and the kernel features exist, and
names what is missing otherwise, so a start is refused rather than run unconfined.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from enclave.hub.policy import SpawnRefused
from enclave.hub.syscall_filter import compiled_filter
from enclave.workspace.singleuser import EMPTY_JUPYTER_DATA

# Host folders of the base system, bound read-only (or recreated as the host's symlinks: on a
# merged-/usr Debian, /bin is a link to usr/bin).
SYSTEM_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# The few /etc entries Python, Jupyter and the plotting libraries read. Not passwd or group
# (they would list every other researcher's account): those are written for the sandbox.
ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "timezone",
    "fonts",
    "mime.types",
    "nsswitch.conf",
    "os-release",
)
HOSTNAME = "enclave"
# One namespace per bubblewrap flag, named for the refusal message when the kernel lacks it.
NAMESPACES = {
    "--unshare-pid": "PID namespaces (the server must not see other processes)",
    "--unshare-ipc": "IPC namespaces (System V shared memory must not cross projects)",
    "--unshare-uts": "UTS namespaces",
    "--unshare-cgroup-try": "cgroup namespaces",
    "--unshare-net": "network namespaces (the server must have no network)",
}


class SandboxUnavailable(SpawnRefused):
    """The sandbox tool or a kernel feature it needs is missing: the server is not started."""


@dataclass(frozen=True)
class SandboxSpec:
    """What one server may see and who it runs as.

    Attributes
    ----------
    uid, gid : int
        The researcher's Unix account and its own group.
    group_gid : int
        The project group (read access to the extract, the scratch).
    account, group : str
        Names of the account and the project group, for the sandbox's ``/etc/passwd``.
    workdir : Path
        The researcher's workspace (the home directory and working directory inside).
    read_only : tuple of Path
        Host folders shown read-only at the same path (code, extract, export socket folder).
    read_write : tuple of Path
        Host folders shown writable at the same path (the scratch, the server-socket folder).
    tmp_mb, shm_mb : int
        Sizes of the private ``/tmp`` and ``/dev/shm``.
    network : bool
        True: a new network namespace (only ``lo``). False only in development.
    """

    uid: int
    gid: int
    group_gid: int
    account: str
    group: str
    workdir: Path
    read_only: tuple[Path, ...]
    read_write: tuple[Path, ...]
    tmp_mb: int
    shm_mb: int
    network: bool = True


@dataclass
class PreparedSandbox:
    """A ``bwrap`` command line and the descriptors it reads (pass them to the child)."""

    argv: list[str]
    fds: tuple[int, ...] = field(default_factory=tuple)

    def close(self) -> None:
        """Close the descriptors (after the child started: it has its own copies)."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = ()


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)  # inheritable by the child through pass_fds
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _etc_files(spec: SandboxSpec) -> dict[str, bytes]:
    nologin = "/usr/sbin/nologin"
    passwd = (
        f"root:x:0:0:root:/nonexistent:{nologin}\n"
        f"{spec.account}:x:{spec.uid}:{spec.gid}:enclave researcher:{spec.workdir}:/bin/sh\n"
        f"nobody:x:65534:65534:nobody:/nonexistent:{nologin}\n"
    )
    group = (
        f"root:x:0:\n{spec.account}:x:{spec.gid}:\n"
        f"{spec.group}:x:{spec.group_gid}:{spec.account}\nnogroup:x:65534:\n"
    )
    hosts = f"127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    return {
        "/etc/passwd": passwd.encode(),
        "/etc/group": group.encode(),
        "/etc/hosts": hosts.encode(),
        "/etc/hostname": f"{HOSTNAME}\n".encode(),
    }


def _parents(path: Path) -> list[Path]:
    return [p for p in reversed(path.parents) if p != Path("/")]


def prepare(spec: SandboxSpec, command: Sequence[str], *, bwrap: str = "bwrap") -> PreparedSandbox:
    """The ``bwrap`` command line that runs ``command`` as the researcher inside the sandbox.

    Parameters
    ----------
    spec : SandboxSpec
        What the server may see.
    command : sequence of str
        The program and its arguments, run as ``spec.uid`` after ``setpriv``.
    bwrap : str
        The bubblewrap program.

    Returns
    -------
    PreparedSandbox
        The argument list and the descriptors (``/etc`` files, the seccomp program) that must
        be passed to the child (``pass_fds``) and closed afterwards.
    """
    args: list[str] = [
        bwrap,
        # The sandbox never outlives the hub that started it, and has no controlling terminal
        # (no TIOCSTI into the hub's).
        "--die-with-parent",
        "--new-session",
    ]
    for flag in NAMESPACES:
        if flag != "--unshare-net" or spec.network:
            args.append(flag)
    args += ["--hostname", HOSTNAME]
    # The base system, read-only. bwrap's own root is an empty tmpfs: nothing else of the
    # host exists inside unless it is named here.
    for tree in SYSTEM_TREES:
        path = Path(tree)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), tree]
        elif path.is_dir():
            args += ["--ro-bind", tree, tree]
    args += ["--perms", "0755", "--dir", "/etc"]
    for entry in ETC_ENTRIES:
        if os.path.lexists(f"/etc/{entry}"):
            args += ["--ro-bind", f"/etc/{entry}", f"/etc/{entry}"]
    fds: list[int] = []
    for dest, data in _etc_files(spec).items():
        fd = _memfd(Path(dest).name, data)
        fds.append(fd)
        args += ["--perms", "0444", "--ro-bind-data", str(fd), dest]
    # Its own /proc (the new PID namespace: no other process is visible) and a minimal /dev.
    args += ["--proc", "/proc", "--dev", "/dev"]
    # Private scratch space, discarded with the sandbox: nothing written here reaches another
    # server or outlives this one; sizes are policy.
    args += ["--size", str(spec.shm_mb * 1024 * 1024), "--perms", "1777", "--tmpfs", "/dev/shm"]
    args += ["--size", str(spec.tmp_mb * 1024 * 1024), "--perms", "1777", "--tmpfs", "/tmp"]
    args += ["--perms", "0755", "--dir", "/var", "--symlink", "../tmp", "/var/tmp"]
    # Jupyter's user data folder: it must exist, and nothing the kernel writes may appear in it.
    args += ["--perms", "0755", "--dir", "/var/lib", "--perms", "0555", "--dir", EMPTY_JUPYTER_DATA]
    # The folders of the enclave this server may use, at their host paths; every ancestor is
    # an empty folder of bwrap's root, so nothing beside them shows.
    made: set[Path] = {Path("/etc"), Path("/var"), Path("/var/lib"), Path("/tmp")}
    for path, flag in [*((p, "--ro-bind") for p in spec.read_only), *((p, "--bind") for p in spec.read_write)]:
        for parent in _parents(path):
            if parent not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        args += [flag, str(path), str(path)]
        made.add(path)
    args += ["--chdir", str(spec.workdir)]
    seccomp = _memfd("enclave-seccomp", compiled_filter())
    fds.append(seccomp)
    args += ["--seccomp", str(seccomp)]
    # bwrap keeps root's capabilities for the first program (it runs as root, not setuid):
    # setpriv drops the user, the groups and every capability before the server starts.
    args += [
        "--",
        "setpriv",
        f"--reuid={spec.uid}",
        f"--regid={spec.gid}",
        f"--groups={spec.group_gid}",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        *command,
    ]
    return PreparedSandbox(args, tuple(fds))


_PROBED: set[tuple[str, bool]] = set()


def probe(*, bwrap: str = "bwrap", network: bool = True) -> None:
    """Check that bubblewrap runs here with every namespace the sandbox uses.

    A success is remembered for the life of the process (the host does not lose features).

    Raises
    ------
    SandboxUnavailable
        ``bwrap`` or ``setpriv`` is not installed, the seccomp filter cannot be built, or the
        kernel refuses a namespace (the message names which).
    """
    key = (bwrap, network)
    if key in _PROBED:
        return
    if shutil.which(bwrap) is None:
        raise SandboxUnavailable(
            "the workspace sandbox tool (bubblewrap) is not installed on this host, so no server "
            "is started (fail closed)",
            reason="sandbox_missing",
            log_message=f"{bwrap} not found: apt-get install bubblewrap (make hub-deps)",
        )
    if shutil.which("setpriv") is None:
        raise SandboxUnavailable(
            "the workspace cannot drop to your Unix user on this host (setpriv is missing), so no "
            "server is started",
            reason="sandbox_missing",
            log_message="setpriv not found: apt-get install util-linux",
        )
    compiled_filter()
    flags = [f for f in NAMESPACES if f != "--unshare-net" or network]
    failure = _try(bwrap, flags)
    if failure is not None:
        missing = [NAMESPACES[f] for f in flags if _try(bwrap, [f]) is not None]
        raise SandboxUnavailable(
            "the workspace sandbox cannot be made on this host (missing: "
            + (", ".join(missing) or "see the hub log")
            + "), so no server is started (fail closed)",
            reason="no_netns" if missing == [NAMESPACES["--unshare-net"]] else "sandbox_unsupported",
            log_message=failure,
        )
    _PROBED.add(key)


def _try(bwrap: str, flags: list[str]) -> str | None:
    """None when ``bwrap`` with ``flags`` runs ``true``; otherwise what it said."""
    cmd = [bwrap, *flags, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(cmd)}: {exc}"
    if done.returncode != 0:
        return f"{' '.join(cmd)} -> {done.returncode}: {done.stderr.strip()}"
    return None
