"""The keyed hash both pseudonymization stages use (stage 1 at ingest, stage 2 at provisioning).

digest = HMAC-SHA-256(key, kind || 0x00 || value)[:16]. The keyed state after the prefix is
computed once and copied per value, which skips the key schedule for each of the (millions of)
distinct values; callers hash each distinct value once and apply the result with a join.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes, hmac

from enclave.keys import SecretKey

DIGEST_BYTES = 16


def keyed_digests(key: SecretKey, kind: str, values: Iterable[bytes]) -> list[bytes]:
    """HMAC-SHA-256(key, kind || 0x00 || value)[:16] for each value."""
    base = hmac.HMAC(key.reveal(), hashes.SHA256())
    base.update(kind.encode() + b"\x00")
    copy = base.copy
    out = []
    append = out.append
    for value in values:  # millions of values: bound methods hoisted out of the loop
        mac = copy()
        mac.update(value)
        append(mac.finalize()[:DIGEST_BYTES])
    return out
