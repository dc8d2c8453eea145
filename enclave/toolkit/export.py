"""Talking to the export service from the kernel: preview the automated check, request export.

The kernel cannot reach the state database; it sends one JSON line over the Unix socket
``ENCLAVE_EXPORT_SOCKET`` and the root-run service (:mod:`enclave.workspace.export_service`)
identifies the caller from the socket itself (SO_PEERCRED: pid and uid, matched to the server
the hub started for this uid and checked against that server's cgroup), never from anything the
kernel says; the project is the one the server was started for.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enclave.errors import EnclaveError
from enclave.toolkit._env import env_path, project_code
from enclave.toolkit.tables import OUTPUTS_FOLDER

MAX_REPLY = 16 * 1024 * 1024
TIMEOUT_SECONDS = 300.0


class ExportServiceError(EnclaveError):
    """The export service refused the call or could not be reached (message says why)."""


def _resolve(paths: Sequence[Path | str]) -> list[str]:
    # Bare names mean files in the workspace's outputs/ folder (what save_output writes).
    out = []
    for item in paths:
        path = Path(item)
        if not path.is_absolute():
            candidate = Path.cwd() / path
            path = candidate if candidate.exists() else env_path("ENCLAVE_SCRATCH") / OUTPUTS_FOLDER / path
        out.append(str(path))
    return out


def call(payload: dict[str, Any], *, socket_path: Path | None = None) -> dict[str, Any]:
    """Send one request to the export service and return its reply.

    Raises
    ------
    ExportServiceError
        Unreachable service, malformed reply, or a refusal (``ok: false``).
    """
    target = socket_path or env_path("ENCLAVE_EXPORT_SOCKET")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT_SECONDS)
        try:
            sock.connect(str(target))
        except OSError as exc:
            raise ExportServiceError(f"export service at {target} is not reachable ({exc}); "
                                     "ask the data custodian") from exc
        sock.sendall(json.dumps(payload).encode("utf-8") + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks, size = [], 0
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY:
                raise ExportServiceError("export service reply is too large")
    try:
        reply = json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError as exc:
        raise ExportServiceError(f"export service sent a malformed reply ({exc})") from exc
    if not reply.get("ok"):
        raise ExportServiceError(reply.get("error") or "export service refused the request")
    return reply


def preview_check(paths: Sequence[Path | str]) -> dict[str, Any]:
    """Run the automated disclosure check on outputs without submitting them.

    Parameters
    ----------
    paths : sequence of path
        Output files in the project scratch (bare names: files in ``outputs/``). A file's
        ``.cells.parquet`` sidecar is taken along (differencing against released outputs).

    Returns
    -------
    dict
        ``{"verdict": "pass"|"review"|"fail", "policy", "findings": [...]}``.
    """
    reply = call({"op": "preview", "project": project_code(), "paths": _resolve(paths)})
    return reply["report"]


def request_export(paths: Sequence[Path | str], purpose: str) -> dict[str, Any]:
    """Submit outputs for export review (the only way out of the enclave).

    Parameters
    ----------
    paths : sequence of path
        Output files in the project scratch (bare names: files in ``outputs/``).
    purpose : str
        What is exported and why (shown to the reviewers).

    Returns
    -------
    dict
        ``{"request": "EXP-…", "status": "queued"|"blocked", "verdict", "report"}``.
    """
    reply = call({"op": "request", "project": project_code(), "paths": _resolve(paths),
                  "purpose": purpose})
    return {k: reply[k] for k in ("request", "status", "verdict", "report")}


def whoami() -> dict[str, Any]:
    """Who the export service thinks this kernel runs as (``username``, ``uid``)."""
    reply = call({"op": "whoami"})
    return {k: reply[k] for k in ("username", "uid")}
