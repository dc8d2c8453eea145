"""Notebook templates and the layout of a new workspace.

A workspace is the researcher's folder in the project scratch
(``projects/<CODE>/scratch/<username>``). It gets the starter notebooks from
``notebooks_templates/``, an ``outputs/`` folder for files meant for export and an
``extract`` link to the project's read-only extract, so the file browser shows what is there
(the server extension never sends those files' bytes to the browser).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from enclave.config import Settings, packaged_templates_dir
from enclave.workspace.singleuser import extract_dir, workspace_dir

OUTPUTS_FOLDER = "outputs"
EXTRACT_LINK = "extract"


def copy_templates(dest: Path, *, source: Path | None = None) -> list[Path]:
    """Copy the template notebooks into ``dest`` without overwriting existing files.

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
    copied = []
    for template in sorted(source.glob("*.ipynb")):
        target = dest / template.name
        if target.exists():
            continue
        shutil.copyfile(template, target)
        copied.append(target)
    return copied


def prepare_workspace(settings: Settings, project_code: str, username: str) -> Path:
    """Create (or complete) the researcher's workspace for a project; return its path.

    Idempotent: run at every spawn. Ownership is left to the hub, which knows the Unix user.
    """
    workspace = workspace_dir(settings, project_code, username)
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / OUTPUTS_FOLDER).mkdir(exist_ok=True)
    copy_templates(workspace)
    link = workspace / EXTRACT_LINK
    if not link.is_symlink() and not link.exists():
        link.symlink_to(extract_dir(settings, project_code), target_is_directory=True)
    return workspace
