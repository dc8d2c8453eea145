"""Shared fixtures: a fresh enclave home per test, driven through the real code paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from enclave import clock
from enclave.config import Settings, load_settings
from enclave.home import init_home

ADMIN = "alice"
ADMIN_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's enclave home, clock pin or acting user."""
    for var in (
        "ENCLAVE_HOME",
        "ENCLAVE_DATABASE_URL",
        "ENCLAVE_POLICIES_DIR",
        "ENCLAVE_NOW",
        "ENCLAVE_USER",
        "ENCLAVE_ADMIN_PASSWORD",
        "ENCLAVE_NEW_PASSWORD",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ENCLAVE_HOME", str(tmp_path / "home"))
    yield
    clock.set_clock(None)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """An initialised enclave home with one custodian (``alice``)."""
    s = load_settings(tmp_path / "home")
    init_home(
        s,
        admin_username=ADMIN,
        admin_full_name="Alice Lin",
        admin_unit="NHIA",
        admin_password=ADMIN_PASSWORD,
    )
    return s
