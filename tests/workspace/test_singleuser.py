"""What the hub passes to the single-user server: arguments from the policies, and an
environment that names the project's areas and the socket, never the home, keys or vault."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from enclave.config import load_settings, packaged_policies_dir
from enclave.errors import InputError, PolicyError
from enclave.workspace.singleuser import environment, server_args

CODE = "P2026-0001"


def _settings_with(tmp_path: Path, **quotas):
    policies = tmp_path / "policies"
    shutil.copytree(packaged_policies_dir(), policies)
    data = yaml.safe_load((policies / "quotas.yaml").read_text(encoding="utf-8"))
    data.update(quotas)
    (policies / "quotas.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "enclave.toml").write_text(f'[enclave]\npolicies_dir = "{policies}"\n', encoding="utf-8")
    return load_settings(home)


def _arg(args: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]


def test_server_args_load_the_guard_with_policy_values(tmp_path):
    settings = _settings_with(tmp_path, max_output_cell_kb=256, terminal_enabled=False)
    args = server_args(settings, CODE, "rex")
    assert _arg(args, "ServerApp.root_dir") == [str(settings.projects_dir / CODE / "scratch" / "rex")]
    assert "enclave.workspace.server_ext=True" in _arg(args, "ServerApp.jpserver_extensions")
    assert "jupyter_server_terminals=False" in _arg(args, "ServerApp.jpserver_extensions")
    assert _arg(args, "ServerApp.contents_manager_class") == [
        "enclave.workspace.server_ext.EnclaveContentsManager"]
    assert _arg(args, "ServerApp.terminals_enabled") == ["False"]
    assert _arg(args, "WorkspaceGuard.max_output_cell_kb") == ["256"]
    assert _arg(args, "ZMQChannelsWebsocketConnection.iopub_data_rate_limit") == [str(256 * 1024)]
    assert _arg(args, "WorkspaceGuard.extract_dir") == [str(settings.projects_dir / CODE / "extract")]
    assert ".py" in _arg(args, "WorkspaceGuard.upload_suffixes")[0].split(",")


def test_terminal_is_a_policy_choice(tmp_path):
    args = server_args(_settings_with(tmp_path, terminal_enabled=True), CODE, "rex")
    assert _arg(args, "ServerApp.terminals_enabled") == ["True"]
    assert "jupyter_server_terminals=False" not in _arg(args, "ServerApp.jpserver_extensions")


def test_broken_policy_stops_spawn(tmp_path):
    settings = _settings_with(tmp_path, max_output_cell_kb=-1)
    with pytest.raises(PolicyError, match="max_output_cell_kb"):
        server_args(settings, CODE, "rex")


def test_environment_names_project_areas_and_socket_only(tmp_path):
    settings = _settings_with(tmp_path)
    env = environment(settings, CODE, "rex")
    project = settings.projects_dir / CODE
    assert env["ENCLAVE_PROJECT"] == CODE
    assert env["ENCLAVE_EXTRACT"] == str(project / "extract")
    assert env["ENCLAVE_SCRATCH"] == str(project / "scratch" / "rex")
    assert env["ENCLAVE_EXPORT_SOCKET"] == str(settings.home / "run" / "export.sock")
    assert "ENCLAVE_HOME" not in env and "ENCLAVE_DATABASE_URL" not in env
    for value in env.values():
        for secret in (settings.keys_dir, settings.vault_dir, settings.home / "state.db"):
            assert not value.startswith(str(secret))
    assert env["PYTHONNOUSERSITE"] == "1"
    assert (Path(env["JUPYTER_CONFIG_DIR"]) / "labconfig" / "page_config.json").is_file()


def test_names_cannot_walk_out_of_projects(tmp_path):
    settings = _settings_with(tmp_path)
    for code, user in (("../keys", "rex"), (CODE, ".."), (CODE, "a/b")):
        with pytest.raises(InputError):
            environment(settings, code, user)
