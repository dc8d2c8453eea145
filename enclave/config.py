"""Settings: where the enclave home is, which database, which policy folder.

Precedence, lowest first: built-in defaults, the settings file ``<home>/enclave.toml``,
environment variables (``ENCLAVE_HOME``, ``ENCLAVE_DATABASE_URL``, ``ENCLAVE_POLICIES_DIR``).
All state lives under the home directory (default ``./.enclave``) unless the database URL
points elsewhere (for example PostgreSQL).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from enclave.errors import ConfigError, NotInitialisedError

SETTINGS_FILE = "enclave.toml"
DEFAULT_HOME = Path(".enclave")
_KNOWN_KEYS = {"database_url", "policies_dir"}


def packaged_policies_dir() -> Path:
    """Return the policy folder shipped with the code (repo checkout or installed wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "policies", here / "_data" / "policies"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("no policies/ folder found next to the enclave package")


def packaged_templates_dir() -> Path:
    """Return the notebook templates shipped with the code."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "notebooks_templates", here / "_data" / "notebooks_templates"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("no notebooks_templates/ folder found next to the enclave package")


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one enclave deployment."""

    home: Path
    database_url: str
    policies_dir: Path
    extra: dict[str, object] = field(default_factory=dict)

    # Layout of the home. One place names every folder so no module invents its own.
    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    @property
    def vault_dir(self) -> Path:
        return self.home / "vault"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def batches_dir(self) -> Path:
        return self.home / "batches"

    @property
    def projects_dir(self) -> Path:
        return self.home / "projects"

    @property
    def documents_dir(self) -> Path:
        return self.home / "documents"

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"

    @property
    def settings_file(self) -> Path:
        return self.home / SETTINGS_FILE

    def require_initialised(self) -> None:
        """Raise :class:`NotInitialisedError` unless ``enclave init`` has run for this home."""
        if not self.settings_file.is_file():
            raise NotInitialisedError(
                f"no enclave home at {self.home} (missing {SETTINGS_FILE}); "
                "run `enclave init` or set ENCLAVE_HOME"
            )


def _read_settings_file(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    section = data.get("enclave", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [enclave] must be a table")
    unknown = set(section) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {sorted(unknown)}; known: {sorted(_KNOWN_KEYS)}"
        )
    return dict(section)


def load_settings(home: Path | str | None = None) -> Settings:
    """Resolve the settings for ``home`` (or ``$ENCLAVE_HOME``, or ``./.enclave``)."""
    root = Path(home or os.environ.get("ENCLAVE_HOME") or DEFAULT_HOME).expanduser().resolve()
    file_values = _read_settings_file(root / SETTINGS_FILE)
    database_url = (
        os.environ.get("ENCLAVE_DATABASE_URL")
        or str(file_values.get("database_url") or "")
        or f"sqlite:///{root / 'state.db'}"
    )
    policies = (
        os.environ.get("ENCLAVE_POLICIES_DIR")
        or str(file_values.get("policies_dir") or "")
        or str(packaged_policies_dir())
    )
    policies_dir = Path(policies).expanduser().resolve()
    if not policies_dir.is_dir():
        raise ConfigError(f"policies folder {policies_dir} does not exist")
    return Settings(home=root, database_url=database_url, policies_dir=policies_dir)
