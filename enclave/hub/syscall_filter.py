"""The seccomp filter every researcher's server runs under, compiled with libseccomp.

The sandbox (:mod:`enclave.hub.sandbox`) hands the compiled BPF program to bubblewrap, which
loads it just before it executes the server: the filter then holds for the server, its
kernels and everything they start, and cannot be removed (``no_new_privs`` is set too).

It is a deny-list in the manner of Flatpak's and Docker's default profiles: the system calls
a researcher's analysis never needs and that open a way around the sandbox or a large piece of
kernel attack surface are refused with ``EPERM``. Each entry says why. Calls of another
architecture (32-bit ``int 0x80``) kill the process: libseccomp's default for a foreign
architecture.
"""

from __future__ import annotations

import errno
import functools
import os
import socket

from enclave.hub.policy import SpawnRefused

# Refused outright, with the reason each one matters to an insider.
DENIED_CALLS: dict[str, str] = {
    "ptrace": "reading or changing another process of the same uid (the server) from a kernel",
    "process_vm_readv": "reading another process's memory",
    "process_vm_writev": "writing another process's memory",
    "pidfd_getfd": "stealing a file descriptor (a socket) from the server",
    "unshare": "new namespaces: a user namespace gives root-like powers and kernel attack surface",
    "setns": "joining another namespace",
    "mount": "changing the mount view",
    "umount2": "changing the mount view",
    "pivot_root": "changing the mount view",
    "chroot": "changing the root",
    "open_tree": "the new mount API",
    "move_mount": "the new mount API",
    "fsopen": "the new mount API",
    "fsconfig": "the new mount API",
    "fsmount": "the new mount API",
    "fspick": "the new mount API",
    "mount_setattr": "the new mount API",
    "open_by_handle_at": "opening files by handle, around the mount view (the classic container escape)",
    "name_to_handle_at": "file handles (pairs with open_by_handle_at)",
    "keyctl": "the kernel keyring is shared across namespaces",
    "add_key": "the kernel keyring is shared across namespaces",
    "request_key": "the kernel keyring is shared across namespaces",
    "bpf": "loading programs into the kernel",
    "perf_event_open": "performance counters: side channels and kernel attack surface",
    "userfaultfd": "a common exploit primitive for kernel races",
    "io_uring_setup": "io_uring: large kernel attack surface, bypasses seccomp for its operations",
    "io_uring_enter": "io_uring",
    "io_uring_register": "io_uring",
    "kexec_load": "replacing the kernel",
    "kexec_file_load": "replacing the kernel",
    "init_module": "loading kernel modules",
    "finit_module": "loading kernel modules",
    "delete_module": "unloading kernel modules",
    "reboot": "rebooting the host",
    "swapon": "host swap",
    "swapoff": "host swap",
    "acct": "process accounting on the host",
    "quotactl": "host quotas",
    "syslog": "the kernel log (addresses of kernel objects)",
    "settimeofday": "the host clock",
    "clock_settime": "the host clock",
    "clock_adjtime": "the host clock",
    "adjtimex": "the host clock",
    "lookup_dcookie": "kernel profiling",
    "personality": "switching off address-space randomisation and other execution domains",
    "uselib": "obsolete loader interface",
    "vhangup": "terminal hang-up of the host's terminals",
}

# clone() is allowed for threads and processes, but not with a namespace flag.
_CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_NEWTIME": 0x00000080,
}
# Socket families a kernel may open: local sockets (the export service), loopback IP (the
# kernel's own services; the network namespace has nothing else) and netlink (interface
# listing). Every other family is refused: AF_VSOCK reaches the hypervisor's host outside any
# network namespace, AF_PACKET and the rest are raw access or kernel attack surface.
ALLOWED_SOCKET_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK)
_TIOCSTI = 0x5412  # push characters into a terminal's input (the hub's, if one leaked)


class SyscallFilterUnavailable(SpawnRefused):
    """libseccomp (or its Python binding) is missing: the filter cannot be built (fail closed)."""


@functools.lru_cache(maxsize=1)
def compiled_filter() -> bytes:
    """The BPF program, built once per process.

    Raises
    ------
    SyscallFilterUnavailable
        ``pyseccomp`` cannot load ``libseccomp.so.2`` (Debian package ``libseccomp2``).
    """
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as exc:
        raise SyscallFilterUnavailable(
            "the workspace's system-call filter cannot be built on this host (libseccomp is missing); "
            "the server is not started",
            reason="seccomp_missing",
            log_message=f"pyseccomp / libseccomp2: {exc}",
        ) from None
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    for name in DENIED_CALLS:
        try:
            flt.add_rule(deny, name)
        except (RuntimeError, ValueError, OSError):
            # A call this architecture or libseccomp does not know cannot be made either.
            continue
    for flag in _CLONE_NAMESPACE_FLAGS.values():
        flt.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, where a filter cannot look: say it does not exist, so
    # the C library falls back to clone(), whose flags are checked above.
    flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for family in range(0, 64):
        if family not in ALLOWED_SOCKET_FAMILIES:
            flt.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family))
    flt.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, _TIOCSTI))
    # libseccomp writes to a file descriptor; a memfd holds the program of any size.
    with os.fdopen(os.memfd_create("enclave-seccomp", os.MFD_CLOEXEC), "w+b") as buffer:
        flt.export_bpf(buffer)
        buffer.seek(0)
        return buffer.read()
