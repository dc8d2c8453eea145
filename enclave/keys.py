"""Key material: the deployment master key, data keys wrapped by it, and their rotation.

Envelope encryption: every data key (stage-1 HMAC key, escrow key, audit signing key, per-
project keys) is random, and stored only wrapped with AES-256-GCM under a master key whose id
travels with the wrapped blob. Rotating the master key re-wraps the data keys; no pseudonym
or escrow record changes. A hardware or cloud KMS stands in by implementing
:class:`KeyProvider`. Key bytes never appear in ``repr``, logs, exceptions or audit entries.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from enclave.errors import EnclaveError

_BLOB_VERSION = b"\x01"
_NONCE_LEN = 12
_KEY_ID_LEN = 8

# Data keys of the deployment (file name stem → length in bytes; 0 = Ed25519 private key).
DEPLOYMENT_KEYS = {"stage1": 32, "escrow": 64, "audit_signing": 0}


class KeyError_(EnclaveError):
    """A key is missing, cannot be unwrapped, or was destroyed."""

    exit_code = 5


class KeyDestroyedError(KeyError_):
    """The key was destroyed (crypto-shredding); what it protected is unrecoverable."""


class SecretKey:
    """Key bytes that refuse to show themselves in ``repr``/``str``."""

    __slots__ = ("_value", "purpose")

    def __init__(self, value: bytes, purpose: str) -> None:
        self._value = value
        self.purpose = purpose

    def reveal(self) -> bytes:
        """Return the raw bytes; call only at the point of use in a crypto primitive."""
        return self._value

    def __repr__(self) -> str:
        return f"<SecretKey {self.purpose} ({len(self._value)} bytes, redacted)>"

    __str__ = __repr__

    def __reduce__(self):  # pragma: no cover - refusing pickling is the point
        raise TypeError("secret keys are not picklable")


class KeyProvider(Protocol):
    """Wraps and unwraps data keys. Implement this for an HSM or a cloud KMS."""

    def wrap(self, plaintext: bytes, *, context: str) -> bytes: ...

    def unwrap(self, blob: bytes, *, context: str) -> bytes: ...

    def rotate(self) -> str: ...


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class LocalMasterKeyProvider:
    """Master keys as owner-only files under ``keys/master/``; the newest id is current."""

    def __init__(self, keys_dir: Path) -> None:
        self.dir = keys_dir / "master"

    def _current_id(self) -> str:
        marker = self.dir / "CURRENT"
        if not marker.is_file():
            raise KeyError_(f"no master key under {self.dir}; run `enclave init`")
        return marker.read_text().strip()

    def _key(self, key_id: str) -> bytes:
        path = self.dir / f"{key_id}.key"
        if not path.is_file():
            raise KeyError_(f"master key {key_id} is missing from {self.dir}")
        return path.read_bytes()

    def ensure(self) -> None:
        if not (self.dir / "CURRENT").is_file():
            self.rotate()

    def rotate(self) -> str:
        key_id = secrets.token_hex(_KEY_ID_LEN // 2)
        _write_private(self.dir / f"{key_id}.key", AESGCM.generate_key(bit_length=256))
        _write_private(self.dir / "CURRENT", key_id.encode())
        return key_id

    def wrap(self, plaintext: bytes, *, context: str) -> bytes:
        key_id = self._current_id()
        nonce = secrets.token_bytes(_NONCE_LEN)
        sealed = AESGCM(self._key(key_id)).encrypt(nonce, plaintext, context.encode())
        return _BLOB_VERSION + key_id.encode() + nonce + sealed

    def unwrap(self, blob: bytes, *, context: str) -> bytes:
        if blob[:1] != _BLOB_VERSION:
            raise KeyError_(f"wrapped key for {context!r} has an unknown format")
        key_id = blob[1 : 1 + _KEY_ID_LEN].decode()
        nonce = blob[1 + _KEY_ID_LEN : 1 + _KEY_ID_LEN + _NONCE_LEN]
        sealed = blob[1 + _KEY_ID_LEN + _NONCE_LEN :]
        try:
            return AESGCM(self._key(key_id)).decrypt(nonce, sealed, context.encode())
        except InvalidTag as exc:
            raise KeyError_(f"wrapped key for {context!r} failed authentication") from exc


@dataclass
class KeyStore:
    """The deployment's keys. ``keys_dir`` must be readable by the custodian only."""

    keys_dir: Path
    provider: KeyProvider

    @classmethod
    def for_home(cls, keys_dir: Path, provider: KeyProvider | None = None) -> KeyStore:
        return cls(keys_dir=keys_dir, provider=provider or LocalMasterKeyProvider(keys_dir))

    # -- deployment keys -------------------------------------------------------------------
    def _wrapped_path(self, name: str) -> Path:
        return self.keys_dir / f"{name}.wrapped"

    def initialise(self) -> list[str]:
        """Create the master key and every missing deployment key; return those created."""
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.keys_dir, 0o700)
        if isinstance(self.provider, LocalMasterKeyProvider):
            self.provider.ensure()
        created = []
        for name, length in DEPLOYMENT_KEYS.items():
            if self._wrapped_path(name).is_file():
                continue
            if length:
                material = secrets.token_bytes(length)
            else:
                private = Ed25519PrivateKey.generate()
                material = private.private_bytes_raw()
                public = private.public_key().public_bytes_raw()
                (self.keys_dir / f"{name}.pub").write_bytes(public)
            self.store_wrapped(name, material)
            created.append(name)
        return created

    def store_wrapped(self, name: str, material: bytes, *, path: Path | None = None) -> Path:
        """Wrap ``material`` under the master key and write it (atomically, owner-only)."""
        target = path or self._wrapped_path(name)
        _write_private(target, self.provider.wrap(material, context=name))
        return target

    def load(self, name: str, *, path: Path | None = None) -> SecretKey:
        """Unwrap a data key by name (or from an explicit wrapped-key file)."""
        source = path or self._wrapped_path(name)
        if not source.is_file():
            tomb = source.with_suffix(".destroyed")
            if tomb.exists():
                raise KeyDestroyedError(f"key {name!r} was destroyed on {tomb.read_text()}")
            raise KeyError_(f"key {name!r} not found at {source}")
        return SecretKey(self.provider.unwrap(source.read_bytes(), context=name), name)

    def stage1_key(self) -> SecretKey:
        return self.load("stage1")

    def escrow_key(self) -> SecretKey:
        return self.load("escrow")

    def audit_signing_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.load("audit_signing").reveal())

    def audit_verify_key(self) -> Ed25519PublicKey:
        path = self.keys_dir / "audit_signing.pub"
        if not path.is_file():
            raise KeyError_(f"audit verification key missing at {path}")
        return Ed25519PublicKey.from_public_bytes(path.read_bytes())

    def destroy(self, name: str, *, path: Path | None = None, when: str = "") -> None:
        """Crypto-shred: overwrite and delete the wrapped key, leave a tombstone."""
        target = path or self._wrapped_path(name)
        if target.is_file():
            size = target.stat().st_size
            with open(target, "r+b") as handle:
                handle.write(secrets.token_bytes(size))
                handle.flush()
                os.fsync(handle.fileno())
            target.unlink()
        target.with_suffix(".destroyed").write_text(when or "unknown date")

    def rotate_master(self, extra_wrapped: list[tuple[str, Path]] = ()) -> str:  # type: ignore[assignment]
        """Create a new master key and re-wrap every data key under it.

        ``extra_wrapped`` lists (context, path) of other wrapped keys (project keys).
        Data keys are unchanged, so no pseudonym or escrow record needs recomputing.
        """
        items = [(n, self._wrapped_path(n)) for n in DEPLOYMENT_KEYS]
        items += list(extra_wrapped)
        plain = [
            (n, p, self.provider.unwrap(p.read_bytes(), context=n)) for n, p in items if p.is_file()
        ]
        new_id = self.provider.rotate()
        for name, path, material in plain:
            self.store_wrapped(name, material, path=path)
        return new_id


def export_public_key_pem(key: Ed25519PublicKey) -> str:
    """PEM text of a public key (safe to show)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


# -- per-project keys (stage-2 pseudonyms) -------------------------------------------------
# A project key is random, wrapped by the master key under the context ``project:<CODE>`` and
# stored at ``keys_dir/projects/<CODE>.wrapped``, never under the project area a researcher's
# process can read. A KMS-backed :class:`KeyProvider` wraps it the same way: only ``wrap`` and
# ``unwrap`` are called, so the key never leaves the custodian side in clear.
PROJECT_KEY_BYTES = 32


def project_key_context(code: str) -> str:
    """The AES-GCM associated data binding a wrapped key to its project."""
    return f"project:{code}"


def project_key_path(keys: KeyStore, code: str) -> Path:
    """Where the wrapped key of project ``code`` lives."""
    return keys.keys_dir / "projects" / f"{code}.wrapped"


def create_project_key(keys: KeyStore, code: str) -> bool:
    """Create the key of project ``code`` unless it exists; return True when created.

    Raises
    ------
    KeyDestroyedError
        The project's key was destroyed at closure; a closed project never gets a new key.
    """
    path = project_key_path(keys, code)
    if path.is_file():
        return False
    if path.with_suffix(".destroyed").exists():
        raise KeyDestroyedError(f"the key of project {code} was destroyed; it cannot be recreated")
    keys.store_wrapped(project_key_context(code), secrets.token_bytes(PROJECT_KEY_BYTES), path=path)
    return True


def project_key(keys: KeyStore, code: str) -> SecretKey:
    """Unwrap the key of project ``code`` (custodian side only)."""
    return keys.load(project_key_context(code), path=project_key_path(keys, code))


def destroy_project_key(keys: KeyStore, code: str, *, when: str) -> None:
    """Crypto-shred the key of project ``code``; afterwards its pseudonyms cannot be mapped back."""
    keys.destroy(project_key_context(code), path=project_key_path(keys, code), when=when)


def project_wrapped_keys(keys: KeyStore) -> list[tuple[str, Path]]:
    """(context, path) of every live project key, for :meth:`KeyStore.rotate_master`."""
    folder = keys.keys_dir / "projects"
    return [(project_key_context(p.stem), p) for p in sorted(folder.glob("*.wrapped"))]
