"""Stage-2 pseudonymization: per-project pseudonyms of stage-1 tokens under the project key.

pseudonym = url-safe base64 (no padding, 22 characters) of the first 16 bytes of
HMAC-SHA-256(project key, kind || 0x00 || stage-1 token). The kind (person, institution,
physician, insured_unit) keeps a person's and a physician's pseudonym apart even if their
tokens were equal; a fresh random key per project makes the same person's pseudonyms in two
projects unlinkable. As at stage 1, each distinct token is hashed once; rows get their
pseudonym through a join, never a per-row Python call.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable, Sequence

import pyarrow as pa

from enclave.keys import SecretKey

DIGEST_BYTES = 16
PSEUDONYM_CHARS = 22
MAPPING_SCHEMA = pa.schema([("token", pa.binary()), ("pseudonym", pa.string())])


def keyed_digests(key: SecretKey, kind: str, values: Iterable[bytes]) -> list[bytes]:
    """HMAC-SHA-256(key, kind || 0x00 || value)[:16] for each value (the shared stage-1/2 form).

    Uses the one-shot C implementation of :func:`hmac.digest`: one call per distinct value.
    """
    raw = key.reveal()
    prefix = kind.encode() + b"\x00"
    return [hmac.digest(raw, prefix + value, "sha256")[:DIGEST_BYTES] for value in values]


def encode_pseudonym(digest: bytes) -> str:
    """The 22-character text form of a 16-byte digest."""
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def stage2_pseudonym(key: SecretKey, kind: str, token: bytes) -> str:
    """The project pseudonym of one stage-1 token (re-identification, tests)."""
    return encode_pseudonym(keyed_digests(key, kind, [token])[0])


def stage2_mapping(key: SecretKey, kind: str, tokens: Sequence[bytes]) -> pa.Table:
    """A (token, pseudonym) table for distinct stage-1 tokens, ready to join on ``token``.

    Raises
    ------
    Stage2CollisionError
        Two tokens got the same pseudonym (odds about 1e-24 for 30 million people); the
        extract would silently merge two people, so provisioning stops instead.
    """
    pseudonyms = [encode_pseudonym(d) for d in keyed_digests(key, kind, tokens)]
    if len(set(pseudonyms)) != len(pseudonyms):
        from pipelines.provision.errors import Stage2CollisionError

        raise Stage2CollisionError(f"two {kind} tokens share a stage-2 pseudonym; re-key the project")
    return pa.table(
        {"token": pa.array(tokens, pa.binary()), "pseudonym": pa.array(pseudonyms, pa.string())},
        schema=MAPPING_SCHEMA,
    )
