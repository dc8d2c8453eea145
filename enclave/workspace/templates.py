"""Notebook templates and the layout of a new workspace.

A workspace is the researcher's folder in the project scratch
(``projects/<CODE>/scratch/<username>``). It gets the starter notebooks from
``notebooks_templates/``, an ``outputs/`` folder for files meant for export and an
``extract`` link to the project's read-only extract, so the file browser shows what is there
(the server extension never sends those files' bytes to the browser).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from enclave.config import Settings, packaged_templates_dir
from enclave.workspace.safe_files import (
    UnsafePath,
    chown_tree,
    create_file_beneath,
    make_dir_beneath,
    open_directory,
)
from enclave.workspace.singleuser import extract_dir, scratch_dir, workspace_dir

OUTPUTS_FOLDER = "outputs"
EXTRACT_LINK = "extract"


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _copy_templates_at(dir_fd: int, source: Path) -> list[str]:
    copied = []
    for template in sorted(source.glob("*.ipynb")):
        if _exists_at(dir_fd, template.name):
            continue  # a researcher's edited copy (or anything else of that name) stays
        try:
            fd = create_file_beneath(dir_fd, template.name)
        except UnsafePath:
            continue  # appeared meanwhile: never written through
        with os.fdopen(fd, "wb") as out:
            out.write(template.read_bytes())
        copied.append(template.name)
    return copied


def copy_templates(dest: Path, *, source: Path | None = None) -> list[Path]:
    """Copy the template notebooks into ``dest`` without overwriting existing files.

    Files are created exclusively and without following links (``O_CREAT | O_EXCL |
    O_NOFOLLOW`` beneath the folder's descriptor): this runs as root in a folder a researcher
    writes, where a planted symlink must never be written through.

    Parameters
    ----------
    dest : Path
        The workspace folder (created if missing).
    source : Path, optional
        Folder of ``*.ipynb`` templates; default: the packaged ``notebooks_templates/``.

    Returns
    -------
    list of Path
        The notebooks copied now (a researcher's edited copy is never replaced).
    """
    source = source or packaged_templates_dir()
    dest.mkdir(parents=True, exist_ok=True)
    fd = open_directory(dest)
    try:
        return [dest / name for name in _copy_templates_at(fd, source)]
    finally:
        os.close(fd)


def prepare_workspace(
    settings: Settings, project_code: str, username: str, *, uid: int | None = None, gid: int | None = None
) -> Path:
    """Create (or complete) the researcher's workspace for a project; return its path.

    Idempotent: run at every spawn, as root, in the project scratch. Every step works from the
    scratch folder's descriptor without following links, so nothing a researcher planted (a
    symlink in place of the workspace, of ``outputs`` or of a template) redirects a write or a
    change of owner. With ``uid``/``gid`` the workspace becomes theirs (0700) and everything in
    it is given to them.
    """
    scratch = scratch_dir(settings, project_code)
    scratch.mkdir(parents=True, exist_ok=True)
    root_fd = open_directory(scratch)
    try:
        ws_fd = make_dir_beneath(root_fd, workspace_dir(settings, project_code, username).name, mode=0o700)
        try:
            # A researcher who replaced outputs/ by a link or a file keeps it: never followed,
            # never removed (save_output will say it is not a folder).
            with contextlib.suppress(UnsafePath):
                os.close(make_dir_beneath(ws_fd, OUTPUTS_FOLDER))
            _copy_templates_at(ws_fd, packaged_templates_dir())
            if not _exists_at(ws_fd, EXTRACT_LINK):
                with contextlib.suppress(FileExistsError):
                    os.symlink(extract_dir(settings, project_code), EXTRACT_LINK, dir_fd=ws_fd)
            if uid is not None:
                chown_tree(ws_fd, uid, gid if gid is not None else -1)
                os.fchmod(ws_fd, 0o700)
        finally:
            os.close(ws_fd)
    finally:
        os.close(root_fd)
    return workspace_dir(settings, project_code, username)
