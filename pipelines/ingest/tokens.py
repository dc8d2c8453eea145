"""Stage-1 pseudonymization: deployment-wide keyed-hash tokens and the encrypted escrow.

token = first 16 bytes of HMAC-SHA-256(stage-1 key, kind || 0x00 || identifier), where kind is
the catalog's identifier kind (person, institution, physician, insured_unit), so a physician's
token never equals the same number's patient token. 128-bit tokens make a collision among 30
million people about 1e-24 likely; every batch still checks that distinct identifiers map to
distinct tokens and fails closed otherwise.

Each distinct identifier is hashed once per batch (a per-kind cache); the rest is a join.
The escrow keeps, for every token, the identifier sealed with AES-SIV under a separate key
(deterministic, so re-sealing the same identifier gives the same ciphertext and duplicates
collapse); only the custodian's re-identification procedure opens it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from enclave.keys import SecretKey
from pipelines.ingest.errors import TokenCollisionError
from pipelines.keyed_hash import DIGEST_BYTES, keyed_digests

TOKEN_BYTES = DIGEST_BYTES
TOKEN_DTYPE = pl.Binary


def stage1_token(key: SecretKey, kind: str, identifier: str) -> bytes:
    """The stage-1 token of one identifier (used for look-ups such as opt-out status)."""
    return keyed_digests(key, kind, [identifier.strip().upper().encode()])[0]


@dataclass
class Tokenizer:
    """Maps identifier columns to tokens, hashing each distinct value once per batch."""

    key: SecretKey
    escrow_key: SecretKey
    max_cache: int = 5_000_000
    _cache: dict[str, pl.DataFrame] = field(default_factory=dict)
    _escrow: list[pl.DataFrame] = field(default_factory=list)

    def _hash_new(self, kind: str, values: list[str]) -> pl.DataFrame:
        tokens = keyed_digests(self.key, kind, (v.encode() for v in values))
        siv = AESSIV(self.escrow_key.reveal())
        sealed = [siv.encrypt(v.encode(), [kind.encode()]) for v in values]
        fresh = pl.DataFrame(
            {"value": values, "token": tokens},
            schema={"value": pl.String, "token": TOKEN_DTYPE},
        )
        if fresh.get_column("token").n_unique() != fresh.height:
            raise TokenCollisionError(f"two {kind} identifiers share a stage-1 token")
        self._escrow.append(
            pl.DataFrame(
                {"kind": [kind] * len(values), "token": tokens, "sealed": sealed},
                schema={"kind": pl.String, "token": TOKEN_DTYPE, "sealed": pl.Binary},
            )
        )
        return fresh

    def map_column(self, series: pl.Series, kind: str) -> pl.Series:
        """Return the tokens for a column of identifiers (nulls stay null).

        The column's distinct values are looked up in the batch's cache (the join's hash table
        is built on those few values, not on the cache); only values never seen in this batch
        are hashed (and sealed for the escrow). Rows then get their token from that small
        mapping with one join.
        """
        cache = self._cache.get(kind)
        if cache is None or cache.height > self.max_cache:
            cache = pl.DataFrame(schema={"value": pl.String, "token": TOKEN_DTYPE})
        values = series.drop_nulls().unique().rename("value").to_frame()
        mapping = cache.join(values, on="value", how="inner")
        if mapping.height < values.height:
            unseen = values.join(mapping, on="value", how="anti").get_column("value")
            fresh = self._hash_new(kind, unseen.to_list())
            cache = pl.concat([cache, fresh], how="vertical", rechunk=False)
            if cache.n_chunks() > 16:
                cache = cache.rechunk()
            mapping = pl.concat([mapping, fresh], how="vertical")
        self._cache[kind] = cache
        rows = series.rename("value").to_frame()
        return rows.join(mapping, on="value", how="left", maintain_order="left").get_column("token").alias(series.name)

    def escrow_frame(self) -> pl.DataFrame:
        """Everything sealed in this batch, one row per distinct (kind, token)."""
        if not self._escrow:
            return pl.DataFrame(schema={"kind": pl.String, "token": TOKEN_DTYPE, "sealed": pl.Binary})
        return pl.concat(self._escrow).unique(subset=["kind", "token"], keep="first")


def open_escrow(escrow_key: SecretKey, kind: str, sealed: bytes) -> str:
    """Unseal one escrow record (custodian's re-identification path only)."""
    return AESSIV(escrow_key.reveal()).decrypt(sealed, [kind.encode()]).decode()
