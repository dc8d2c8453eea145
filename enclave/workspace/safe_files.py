"""Open and create files beneath a directory descriptor without following any symlink.

Root-run code (the export service, the hub's workspace preparation) works in folders that a
researcher can write. Checking a path (``realpath``, ``exists``) and then using it by name is a
race: between the two the researcher can swap a folder for a symlink, and root then reads or
writes wherever the link points. Every function here therefore starts from a directory
descriptor opened from a root-controlled path and walks one component at a time with
``O_NOFOLLOW`` (the walk of systemd's ``chase()``), so a symlink at *any* component is refused,
and judges what it opened by ``fstat`` of the descriptor, never by the name.

``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` would do the walk in one call, but Python
3.11 has no binding for it; the component walk gives the same guarantee with ``os.open``.
Researcher-controlled paths are only ever split lexically (:func:`split_beneath`), never
resolved.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from enclave.errors import EnclaveError, NotFound, PermissionDenied

CHUNK_BYTES = 1024 * 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused after fstat anyway).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafePath(PermissionDenied):
    """A path or the file it names is refused: a symlink, ``..``, not a regular file, too large,
    hard-linked or owned by another user (the message names the path and the reason)."""


class NoSuchFile(NotFound):
    """A component of a path beneath the root does not exist."""


class DeadlinePassed(EnclaveError):
    """A bounded operation did not finish before its deadline and was stopped."""


def split_beneath(path: str, root: str | Path, *, root_name: str | None = None) -> tuple[str, ...]:
    """The components of ``path`` below ``root``, checked lexically (nothing is resolved).

    Parameters
    ----------
    path : str
        Relative to ``root``, or absolute and lexically under ``root``.
    root : str or Path
        A root-controlled folder (normalised lexically).
    root_name : str, optional
        How messages name the root (default: its path).

    Returns
    -------
    tuple of str
        At least one component; none empty, ``.`` or ``..``.

    Raises
    ------
    UnsafePath
        A NUL byte, an empty, ``.`` or ``..`` component, or an absolute path outside ``root``.
    """
    if "\x00" in path:
        raise UnsafePath(f"{path!r}: contains a NUL byte")
    where = root_name or str(root)
    parts = path.split("/")
    if path.startswith("/"):
        root_parts = os.path.normpath(os.fspath(root)).split("/")
        # Compare before checking components, so "/etc/../x" is reported as outside.
        if parts[:len(root_parts)] != root_parts:
            raise UnsafePath(f"{path}: outside {where}")
        parts = parts[len(root_parts):]
    if not parts or parts == [""]:
        raise UnsafePath(f"{path}: names {where} itself, not a file in it")
    for part in parts:
        _check_component(part, label=path)
    return tuple(parts)


def _check_component(name: str, *, label: str) -> None:
    if name in {"", ".", ".."} or "/" in name or "\x00" in name:
        shown = "an empty component ('//' or a trailing '/')" if name == "" else f"component {name!r}"
        raise UnsafePath(f"{label}: {shown} is not allowed; give the file's direct path")


def _refusal(exc: OSError, dir_fd: int, name: str, *, label: str, want_dir: bool) -> EnclaveError:
    # Only the message depends on this lstat; what was opened (nothing) is already decided.
    if exc.errno == errno.ENOENT:
        return NoSuchFile(f"{label}: no such file or folder {name!r}")
    try:
        kind = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        kind = 0
    if stat.S_ISLNK(kind) or exc.errno == errno.ELOOP:
        return UnsafePath(f"{label}: a symlink at component {name!r}; symlinks are not followed, "
                          "give the path of the file itself")
    if want_dir and exc.errno == errno.ENOTDIR:
        return UnsafePath(f"{label}: component {name!r} is not a folder")
    if exc.errno == errno.ENXIO:
        return UnsafePath(f"{label}: not a regular file (a socket or device)")
    return UnsafePath(f"{label}: {name!r} cannot be opened ({exc.strerror})")


def open_directory(path: str | Path) -> int:
    """Open a **root-controlled** folder (the last component must not be a symlink).

    Returns a descriptor the caller closes. Raises :class:`UnsafePath` or :class:`NoSuchFile`.
    """
    try:
        return os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        raise NoSuchFile(f"{path}: no such folder") from None
    except OSError as exc:
        raise UnsafePath(f"{path}: not a folder, or a symlink ({exc.strerror})") from exc


def open_dir_beneath(dir_fd: int, parts: Sequence[str], *, label: str) -> int:
    """Walk ``parts`` (folder names) from ``dir_fd``, refusing a symlink at every step.

    Returns a new descriptor of the last folder (of ``dir_fd`` duplicated when ``parts`` is
    empty); the caller closes it.

    Raises
    ------
    UnsafePath
        A bad component, a symlink, or a component that is not a folder.
    NoSuchFile
        A component does not exist.
    """
    current = os.dup(dir_fd)
    try:
        for name in parts:
            _check_component(name, label=label)
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=current)
            except OSError as exc:
                raise _refusal(exc, current, name, label=label, want_dir=True) from None
            os.close(current)
            current = nxt
    except BaseException:
        os.close(current)
        raise
    return current


def open_file_at(dir_fd: int, name: str, *, label: str, max_bytes: int,
                 owner: int | None = None) -> tuple[int, os.stat_result]:
    """Open the regular file ``name`` in the folder ``dir_fd`` for reading, and vet it.

    Parameters
    ----------
    dir_fd : int
        The folder (from :func:`open_dir_beneath`).
    name : str
        One component.
    label : str
        How messages name the file (the path the caller was given).
    max_bytes : int
        Largest accepted size.
    owner : int, optional
        The uid that must own the file (a researcher exports only their own files).

    Returns
    -------
    (int, os.stat_result)
        The descriptor (the caller closes it) and its ``fstat``.

    Raises
    ------
    UnsafePath
        A symlink, not a regular file, more than one hard link, another owner, too large.
    NoSuchFile
        No file of that name.
    """
    _check_component(name, label=label)
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(exc, dir_fd, name, label=label, want_dir=False) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO, socket or device"
            raise UnsafePath(f"{label}: not a regular file ({what})")
        if info.st_nlink != 1:
            # Another name of the same file may sit where the caller may not read.
            raise UnsafePath(f"{label}: has {info.st_nlink} hard links; export a copy (cp) instead")
        if owner is not None and info.st_uid != owner:
            raise UnsafePath(f"{label}: owned by another user (uid {info.st_uid}, not {owner}); "
                             "only files you own are exported, ask their owner")
        if info.st_size > max_bytes:
            raise UnsafePath(f"{label}: {info.st_size} bytes; at most {max_bytes} bytes are accepted")
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def copy_bounded(fd: int, dest: BinaryIO, *, max_bytes: int, label: str,
                 deadline: float | None = None) -> int:
    """Copy from descriptor ``fd`` to ``dest``, at most ``max_bytes``, before ``deadline``.

    Parameters
    ----------
    fd : int
        Open for reading (positioned where copying starts).
    dest : binary file object
        Receives the bytes.
    max_bytes : int
        The file is refused if it holds more (it may grow after ``fstat``).
    label : str
        How messages name the file.
    deadline : float, optional
        A ``time.monotonic()`` value, checked between chunks.

    Returns
    -------
    int
        Bytes copied.

    Raises
    ------
    UnsafePath
        More than ``max_bytes``.
    DeadlinePassed
        The deadline passed before the end.
    """
    copied = 0
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlinePassed(f"{label}: copying stopped at the call's time limit; "
                                 "export fewer or smaller files per call")
        chunk = os.read(fd, min(CHUNK_BYTES, max_bytes + 1 - copied))
        if not chunk:
            return copied
        copied += len(chunk)
        if copied > max_bytes:
            raise UnsafePath(f"{label}: grew beyond {max_bytes} bytes while it was copied")
        dest.write(chunk)


def create_file_beneath(dir_fd: int, name: str, *, mode: int = 0o644) -> int:
    """Create the new file ``name`` in folder ``dir_fd`` for writing; refuse if anything exists.

    ``O_EXCL | O_NOFOLLOW``: an existing file or a (dangling) symlink planted under that name
    is never written through. Returns the descriptor; raises :class:`UnsafePath` otherwise.
    """
    _check_component(name, label=name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except FileExistsError:
        raise UnsafePath(f"{name}: exists already (a file or a symlink); not overwritten") from None
    except OSError as exc:
        raise UnsafePath(f"{name}: cannot be created ({exc.strerror})") from exc


def make_dir_beneath(dir_fd: int, name: str, *, mode: int = 0o755) -> int:
    """Make folder ``name`` in ``dir_fd`` (or keep an existing one) and open it without
    following a symlink. Returns the descriptor; raises :class:`UnsafePath` if ``name`` is a
    symlink or not a folder."""
    _check_component(name, label=name)
    # Whatever exists under that name already is judged by the O_NOFOLLOW open below.
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, mode, dir_fd=dir_fd)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(exc, dir_fd, name, label=name, want_dir=True) from None


def chown_tree(dir_fd: int, uid: int, gid: int) -> list[str]:
    """Give the folder ``dir_fd`` and everything beneath it to ``uid:gid``, following no symlink.

    Symlinks are changed themselves (``lchown``), never their targets, and the walk does not
    enter them (``os.fwalk(follow_symlinks=False)`` opens each folder and checks it is the one
    listed). A non-folder with several hard links that ``uid`` does not own yet is left alone:
    another of its names may be a file elsewhere that must not change hands.

    Returns
    -------
    list of str
        Paths (relative to ``dir_fd``) left alone for that reason, for the caller's log.
    """
    skipped: list[str] = []
    os.fchown(dir_fd, uid, gid)
    for folder, dirnames, filenames, fd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
        for name in (*dirnames, *filenames):
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            if (info.st_uid, info.st_gid) == (uid, gid):
                continue
            if not stat.S_ISDIR(info.st_mode) and info.st_nlink > 1 and info.st_uid != uid:
                skipped.append(os.path.join(folder, name))
                continue
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
    return skipped
