"""Accounts and the separation-of-duties rules refuse forbidden combinations."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from enclave.cli import _app, _register
from enclave.config import Settings
from enclave.errors import AlreadyExists, InputError, PermissionDenied, SeparationOfDutiesError
from enclave.roles import (
    check_distinct_persons,
    check_may_audit,
    check_may_join_project,
    check_may_review_output,
)
from enclave.state.db import session_scope
from enclave.users import add_user, authenticate, disable_user, get_user, grant_role

PW = "a-long-enough-password"


def _add(settings: Settings, username: str, *roles: str, actor: str = "alice") -> None:
    with session_scope(settings) as s:
        add_user(
            s,
            settings,
            actor=actor,
            username=username,
            full_name=username.title(),
            unit="NTU",
            roles=roles,
            password=PW,
        )


def test_custodian_adds_and_passwords_are_argon2(settings: Settings) -> None:
    _add(settings, "bob", "researcher")
    with session_scope(settings) as s:
        bob = get_user(s, "bob")
        assert bob.password_hash.startswith("$argon2")
        assert PW not in bob.password_hash
        assert authenticate(s, settings, "bob", PW) is not None
        assert authenticate(s, settings, "bob", "wrong-password-here") is None


@pytest.mark.parametrize("roles", [("custodian", "researcher"), ("auditor", "custodian")])
def test_forbidden_role_combinations(settings: Settings, roles: tuple[str, ...]) -> None:
    with pytest.raises(SeparationOfDutiesError, match="may not be both"):
        _add(settings, "carol", *roles)


def test_grant_cannot_create_a_forbidden_combination(settings: Settings) -> None:
    _add(settings, "dave", "researcher")
    with pytest.raises(SeparationOfDutiesError), session_scope(settings) as s:
        grant_role(s, settings, actor="alice", username="dave", role="custodian")
    with session_scope(settings) as s:
        grant_role(s, settings, actor="alice", username="dave", role="reviewer")
        assert get_user(s, "dave").role_names == {"researcher", "reviewer"}


def test_only_custodians_add_users(settings: Settings) -> None:
    _add(settings, "erin", "steward")
    with pytest.raises(PermissionDenied, match="not a custodian"):
        _add(settings, "frank", "researcher", actor="erin")


def test_disabled_account_cannot_act_or_log_in(settings: Settings) -> None:
    _add(settings, "gina", "custodian")
    with session_scope(settings) as s:
        disable_user(s, settings, actor="alice", username="gina", reason="departed")
    with pytest.raises(PermissionDenied, match="disabled"):
        _add(settings, "henry", "researcher", actor="gina")
    with session_scope(settings) as s:
        assert authenticate(s, settings, "gina", PW) is None


@pytest.mark.parametrize("name", ["admin", "shared", "Bad Name", "1abc"])
def test_shared_or_malformed_usernames_are_refused(settings: Settings, name: str) -> None:
    with pytest.raises(InputError):
        _add(settings, name, "researcher")


def test_duplicate_and_short_password(settings: Settings) -> None:
    _add(settings, "ivan", "researcher")
    with pytest.raises(AlreadyExists):
        _add(settings, "ivan", "researcher")
    with pytest.raises(InputError, match="too short"), session_scope(settings) as s:
        add_user(
            s,
            settings,
            actor="alice",
            username="judy",
            full_name="J",
            unit="U",
            roles=["researcher"],
            password="short",
        )


def test_duty_rules() -> None:
    with pytest.raises(SeparationOfDutiesError, match="may not review"):
        check_may_review_output("bob", {"bob", "carol"})
    check_may_review_output("rita", {"bob", "carol"})
    with pytest.raises(SeparationOfDutiesError, match="own activity"):
        check_may_audit("aud", "aud")
    check_may_audit("aud", "bob")
    with pytest.raises(SeparationOfDutiesError, match="administers the data"):
        check_may_join_project("alice", {"custodian"})
    with pytest.raises(SeparationOfDutiesError, match="second person"):
        check_distinct_persons("alice", "alice", "re-identification approval")


def test_user_cli_and_auditor_cannot_read_own_entries(settings: Settings, monkeypatch) -> None:
    _register()
    runner = CliRunner()
    monkeypatch.setenv("ENCLAVE_NEW_PASSWORD", PW)
    res = runner.invoke(
        _app.app,
        [
            "user",
            "add",
            "olga",
            "--role",
            "auditor",
            "--full-name",
            "Olga",
            "--unit",
            "Audit office",
            "--as",
            "alice",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(_app.app, ["user", "list", "--json"])
    users = {u["username"]: u for u in json.loads(res.output)}
    assert users["olga"]["roles"] == ["auditor"]
    assert "password_hash" not in users["olga"]
    res = runner.invoke(_app.app, ["audit", "log", "--as", "olga", "--actor", "olga"])
    assert isinstance(res.exception, SeparationOfDutiesError)
    res = runner.invoke(_app.app, ["audit", "log", "--as", "olga", "--json"])
    assert res.exit_code == 0
    assert all(r["actor"] != "olga" for r in json.loads(res.output))
    res = runner.invoke(
        _app.app, ["user", "disable", "olga", "--reason", "retired", "--as", "alice"]
    )
    assert res.exit_code == 0
