"""Signed release manifests: write the outbox folder of a release and verify one later.

A release folder holds the released files, ``manifest.json`` (SHA-256 of every file, the
request, purpose, reviewers, decision times and the checker's verdict) and ``manifest.sig``,
a detached Ed25519 signature (base64) over ``manifest.json``'s exact bytes, made with the
deployment's audit signing key under a release-specific prefix, so a signature of one kind
can never be replayed as the other. Anyone with ``keys/audit_signing.pub`` can verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from enclave.checksums import sha256_file
from enclave.errors import EnclaveError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
_DOMAIN = b"enclave-release-manifest-v1\n"


class ReleaseVerificationError(EnclaveError):
    """A release folder does not match its signed manifest (names the file at fault)."""

    exit_code = 5


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """Canonical bytes of a manifest (sorted keys, UTF-8, trailing newline)."""
    return (json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode()


def sign_manifest(folder: Path, manifest: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """Write ``manifest.json`` and ``manifest.sig`` into ``folder``; return the manifest SHA-256."""
    raw = manifest_bytes(manifest)
    (folder / MANIFEST).write_bytes(raw)
    signature = key.sign(_DOMAIN + raw)
    (folder / SIGNATURE).write_text(base64.b64encode(signature).decode("ascii") + "\n")
    return hashlib.sha256(raw).hexdigest()


def verify_release(folder: Path, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Check a release folder against its signed manifest.

    Parameters
    ----------
    folder : Path
        The outbox folder of one release.
    public_key : Ed25519PublicKey
        The deployment's audit verification key.

    Returns
    -------
    dict
        The verified manifest.

    Raises
    ------
    ReleaseVerificationError
        Missing manifest or signature, a bad signature, a file missing, changed or added.
    """
    manifest_path, sig_path = folder / MANIFEST, folder / SIGNATURE
    if not manifest_path.is_file() or not sig_path.is_file():
        raise ReleaseVerificationError(f"{folder}: no {MANIFEST} + {SIGNATURE}; not a release")
    raw = manifest_path.read_bytes()
    try:
        signature = base64.b64decode(sig_path.read_text().strip(), validate=True)
        public_key.verify(signature, _DOMAIN + raw)
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise ReleaseVerificationError(
            f"{manifest_path}: signature does not verify with the deployment key; the "
            "manifest was altered or signed elsewhere"
        ) from exc
    manifest = json.loads(raw)
    listed = {entry["name"]: entry for entry in manifest["files"]}
    present = {p.name for p in folder.iterdir() if p.is_file()} - {MANIFEST, SIGNATURE}
    extra = sorted(present - set(listed))
    if extra:
        raise ReleaseVerificationError(f"{folder}: file(s) not in the manifest: {extra}")
    for name, entry in listed.items():
        path = folder / name
        if not path.is_file():
            raise ReleaseVerificationError(f"{path}: listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ReleaseVerificationError(
                f"{path}: SHA-256 {actual[:16]}… differs from the manifest's "
                f"{entry['sha256'][:16]}…; the file was changed after release"
            )
    return manifest
