"""What the hub passes to a researcher's single-user server: its arguments and environment.

The spawner (:mod:`enclave.hub`) calls :func:`server_args` and :func:`environment` for the
project the researcher picked. Both are built from the enclave home and the policies on the
hub side, so the researcher's server needs no access to the home: its environment names only
the project's extract, its scratch area and the export socket — never ``ENCLAVE_HOME``, the
database, the keys or the vault.
"""

from __future__ import annotations

from pathlib import Path

from enclave.config import Settings
from enclave.errors import InputError
from enclave.workspace.policy import load_workspace_policy
from enclave.workspace.server_ext import JUPYTER_CONFIG_DIR

EXTENSION = "enclave.workspace.server_ext"
RUN_FOLDER = "run"
SOCKET_NAME = "export.sock"
LAB_STATE = Path(".jupyter") / "lab"
# Made by the sandbox (enclave.hub.sandbox), root's, empty, read-only.
EMPTY_JUPYTER_DATA = "/var/lib/jupyter"


def _check_name(value: str, what: str) -> str:
    # Both end up in paths; refuse anything that could walk out of projects/.
    if not value or "/" in value or value in {".", ".."} or "\x00" in value:
        raise InputError(f"{what} {value!r} is not a valid name (no '/', not '.' or '..')")
    return value


def project_dir(settings: Settings, project_code: str) -> Path:
    """``<home>/projects/<CODE>``."""
    return settings.projects_dir / _check_name(project_code, "project code")


def extract_dir(settings: Settings, project_code: str) -> Path:
    """The project's read-only extract."""
    return project_dir(settings, project_code) / "extract"


def scratch_dir(settings: Settings, project_code: str) -> Path:
    """The project's shared writable area (quota); exports are taken from under it only."""
    return project_dir(settings, project_code) / "scratch"


def workspace_dir(settings: Settings, project_code: str, username: str) -> Path:
    """The researcher's own folder in the project scratch: the notebook root directory."""
    return scratch_dir(settings, project_code) / _check_name(username, "username")


def export_socket(settings: Settings) -> Path:
    """``<home>/run/export.sock``, served by :mod:`enclave.workspace.export_service`."""
    return settings.home / RUN_FOLDER / SOCKET_NAME


def server_args(settings: Settings, project_code: str, username: str) -> list[str]:
    """Command-line arguments for ``jupyterhub-singleuser`` for this project.

    Loads the workspace guard extension, installs its contents manager, sets the notebook
    root to the researcher's workspace and carries the policy values (output size, uploads,
    terminal) as ``WorkspaceGuard`` traitlets.

    Parameters
    ----------
    settings : Settings
        The enclave deployment (home and policies).
    project_code : str
        The project the researcher picked at spawn.
    username : str
        The enclave username.

    Returns
    -------
    list of str
        ``--Class.trait=value`` arguments (no executable name).

    Raises
    ------
    PolicyError
        ``policies/quotas.yaml`` or ``policies/workspace.yaml`` is missing or invalid.
    """
    policy = load_workspace_policy(settings)
    guard = "--WorkspaceGuard."
    terminals = [] if policy.terminal_enabled else [
        "--ServerApp.jpserver_extensions=jupyter_server_terminals=False"]
    return [
        f"--ServerApp.root_dir={workspace_dir(settings, project_code, username)}",
        f"--ServerApp.jpserver_extensions={EXTENSION}=True",
        *terminals,
        f"--ServerApp.contents_manager_class={EXTENSION}.EnclaveContentsManager",
        f"--ServerApp.terminals_enabled={policy.terminal_enabled}",
        "--ZMQChannelsWebsocketConnection.limit_rate=True",
        f"--ZMQChannelsWebsocketConnection.iopub_data_rate_limit={policy.max_output_cell_kb * 1024}",
        "--ZMQChannelsWebsocketConnection.rate_limit_window=3.0",
        "--ContentsManager.allow_hidden=False",
        f"{guard}extract_dir={extract_dir(settings, project_code)}",
        f"{guard}max_output_cell_kb={policy.max_output_cell_kb}",
        f"{guard}max_upload_kb={policy.max_upload_kb}",
        f"{guard}max_notebook_kb={policy.max_notebook_kb}",
        f"{guard}max_image_kb={policy.max_image_kb}",
        f"{guard}max_image_megapixels={policy.max_image_megapixels}",
        f"{guard}max_text_kb={policy.max_text_kb}",
        f"{guard}upload_suffixes={','.join(policy.upload_suffixes)}",
        f"{guard}terminal_enabled={policy.terminal_enabled}",
    ]


def environment(settings: Settings, project_code: str, username: str) -> dict[str, str]:
    """Environment variables of the single-user server and its kernels.

    Returns
    -------
    dict of str to str
        ``ENCLAVE_PROJECT``, ``ENCLAVE_EXTRACT``, ``ENCLAVE_SCRATCH`` (the researcher's
        workspace), ``ENCLAVE_EXPORT_SOCKET``, ``ENCLAVE_POLICIES_DIR`` and the Jupyter
        config path holding the lab page config. Deliberately absent: ``ENCLAVE_HOME``,
        ``ENCLAVE_DATABASE_URL`` and any path under the keys or the vault.
    """
    workspace = workspace_dir(settings, project_code, username)
    env = {
        "ENCLAVE_PROJECT": project_code,
        "ENCLAVE_EXTRACT": str(extract_dir(settings, project_code)),
        "ENCLAVE_SCRATCH": str(workspace),
        "ENCLAVE_EXPORT_SOCKET": str(export_socket(settings)),
        "ENCLAVE_POLICIES_DIR": str(settings.policies_dir),
        # Root-owned config first: a researcher's own ~/.jupyter cannot re-enable downloads.
        "JUPYTER_CONFIG_DIR": str(JUPYTER_CONFIG_DIR),
        "JUPYTER_CONFIG_PATH": str(JUPYTER_CONFIG_DIR),
        # The config dir above is read-only for researchers; JupyterLab's own state (settings,
        # workspace layout) goes to hidden folders of the workspace instead.
        "JUPYTERLAB_SETTINGS_DIR": str(workspace / LAB_STATE / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(workspace / LAB_STATE / "workspaces"),
        # A researcher's ~/.local site-packages must not shadow the guard's modules.
        "PYTHONNOUSERSITE": "1",
        # Jupyter's user data folder is an empty read-only folder of the sandbox: one the kernel
        # could write would be served and loaded (lab extensions, kernel specs, nbconvert
        # templates); see also jupyter_config/jupyter_server_config.py.
        "JUPYTER_DATA_DIR": EMPTY_JUPYTER_DATA,
        "JUPYTER_PREFER_ENV_PATH": "1",
    }
    forbidden = [settings.keys_dir.resolve(), settings.vault_dir.resolve()]
    for key, value in env.items():
        path = Path(value).resolve() if value.startswith("/") else None
        if path is not None and any(path == f or f in path.parents for f in forbidden):
            # Policies placed under the keys or the vault would leak their location.
            raise InputError(f"{key}={value} points into the keys or the vault; move it")
    return env
