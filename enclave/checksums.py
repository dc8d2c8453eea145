"""Content checksums of files: the one SHA-256 helper every capability uses (source files,
extract parts, export requests, release manifests, opt-out lists)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path, block: int = 8 * 1024 * 1024) -> str:
    """SHA-256 hex digest of a file, read in blocks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()
