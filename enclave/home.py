"""Creating and upgrading an enclave home: folders with their permissions, settings file,
schema migrations, deployment keys and the first custodian account."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from enclave import audit
from enclave.config import SETTINGS_FILE, Settings
from enclave.keys import KeyStore
from enclave.state.db import migrate, session_scope
from enclave.users import add_user, list_users

# Folders and their modes: custodian-only where raw identifiers, keys or quarantined rows live.
FOLDERS = {
    "keys": 0o700,
    "audit": 0o700,
    "vault": 0o750,
    "quarantine": 0o700,
    "batches": 0o700,
    "projects": 0o755,
    "documents": 0o700,
    "tmp": 0o700,
}

_SETTINGS_TEMPLATE = """\
# enclave settings. Environment variables (ENCLAVE_DATABASE_URL, ENCLAVE_POLICIES_DIR) win.
[enclave]
# database_url = "postgresql+psycopg://enclave@db/enclave"
# policies_dir = "/etc/enclave/policies"
"""


@dataclass(frozen=True)
class InitResult:
    home: Path
    created: bool
    keys_created: list[str]
    admin_created: str | None


def init_home(
    settings: Settings,
    *,
    admin_username: str | None = None,
    admin_full_name: str = "",
    admin_unit: str = "",
    admin_password: str | None = None,
) -> InitResult:
    """Create (or bring up to date) the enclave home. Safe to run again."""
    home = settings.home
    created = not (home / SETTINGS_FILE).is_file()
    home.mkdir(parents=True, exist_ok=True)
    for name, mode in FOLDERS.items():
        path = home / name
        path.mkdir(exist_ok=True)
        os.chmod(path, mode)
    if created:
        tmp = home / f".{SETTINGS_FILE}.tmp"
        tmp.write_text(_SETTINGS_TEMPLATE, encoding="utf-8")
        os.replace(tmp, home / SETTINGS_FILE)
    migrate(settings)
    db_file = home / "state.db"
    if db_file.exists():
        # SQLite creates its -wal/-shm files with the database file's mode.
        os.chmod(db_file, 0o600)
    keys_created = KeyStore.for_home(settings.keys_dir).initialise()
    admin_created = None
    with session_scope(settings) as session:
        if created:
            audit.record(
                session,
                settings,
                actor="system",
                role="system",
                action="enclave.init",
                obj=str(home),
                details={"keys_created": keys_created},
            )
        if admin_username and not list_users(session):
            if not admin_password:
                from enclave.errors import InputError

                raise InputError("the first custodian needs a password")
            add_user(
                session,
                settings,
                actor=admin_username,
                username=admin_username,
                full_name=admin_full_name or admin_username,
                unit=admin_unit or "custodian",
                roles=["custodian"],
                password=admin_password,
                bootstrap=True,
            )
            admin_created = admin_username
    return InitResult(home, created, keys_created, admin_created)
