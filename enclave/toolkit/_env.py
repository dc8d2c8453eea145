"""Where the toolkit finds its project: the environment the hub gives the kernel.

The toolkit knows only ``ENCLAVE_EXTRACT`` (read-only project extract), ``ENCLAVE_SCRATCH``
(the researcher's workspace), ``ENCLAVE_PROJECT`` and ``ENCLAVE_EXPORT_SOCKET``; it never
looks for the enclave home, the state database, the keys or the vault.
"""

from __future__ import annotations

import os
from pathlib import Path

from enclave.errors import ConfigError


class ToolkitEnvironmentError(ConfigError):
    """The kernel lacks a toolkit environment variable (the hub sets them at spawn)."""


def env_path(name: str) -> Path:
    """The path in environment variable ``name``; raise naming the variable when unset."""
    value = os.environ.get(name)
    if not value:
        raise ToolkitEnvironmentError(
            f"{name} is not set: the toolkit runs inside a workspace started by the enclave hub "
            f"(or set {name} yourself in a test)"
        )
    return Path(value)


def project_code() -> str:
    """``ENCLAVE_PROJECT`` (the project the server was started for)."""
    value = os.environ.get("ENCLAVE_PROJECT")
    if not value:
        raise ToolkitEnvironmentError("ENCLAVE_PROJECT is not set (the hub sets it at spawn)")
    return value
