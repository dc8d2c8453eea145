"""Stage-2 pseudonyms: the mapping table, its text form, and the collision stop."""

from __future__ import annotations

import base64
import hmac
import os

import numpy as np
import pyarrow as pa
import pytest

from enclave.keys import SecretKey
from pipelines.keyed_hash import keyed_digest_rows, keyed_digests
from pipelines.provision import pseudonymize
from pipelines.provision.errors import Stage2CollisionError
from pipelines.provision.pseudonymize import encode_many, encode_pseudonym, stage2_mapping


def test_mapping_is_the_truncated_hmac_of_kind_and_token_in_url_safe_base64():
    raw = os.urandom(32)
    tokens = [os.urandom(16) for _ in range(1000)]
    table = stage2_mapping(SecretKey(raw, "test project"), "person", pa.array(tokens, pa.binary()))
    assert table.column("token").to_pylist() == tokens
    expected = [
        base64.urlsafe_b64encode(hmac.digest(raw, b"person\x00" + t, "sha256")[:16]).decode().rstrip("=")
        for t in tokens
    ]
    assert table.column("pseudonym").to_pylist() == expected
    assert all(len(p) == pseudonymize.PSEUDONYM_CHARS for p in expected)


def test_kinds_are_kept_apart():
    key, token = SecretKey(os.urandom(32), "test project"), os.urandom(16)
    person = stage2_mapping(key, "person", pa.array([token], pa.binary())).column("pseudonym")[0]
    institution = stage2_mapping(key, "institution", pa.array([token], pa.binary())).column("pseudonym")[0]
    assert person != institution


def test_bulk_encoding_equals_one_by_one():
    digests = [os.urandom(16) for _ in range(257)] + [b"\x00" * 16, b"\xff" * 16]
    rows = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 16)
    assert encode_many(rows).to_pylist() == [encode_pseudonym(d) for d in digests]
    assert encode_many(np.zeros((0, 16), dtype=np.uint8)).to_pylist() == []


@pytest.mark.parametrize("sliced", [False, True])
def test_bulk_digests_equal_one_by_one_for_any_widths_and_offsets(sliced):
    key = SecretKey(os.urandom(32), "test project")
    values = [os.urandom(16) for _ in range(50)] + [b"", b"x", os.urandom(40)] + [os.urandom(16) for _ in range(5)]
    array = pa.array(values, pa.binary())
    if sliced:  # an array view with an offset into its buffers, as Arrow slices are
        array, values = array.slice(3, 52), values[3:55]
    rows = keyed_digest_rows(key, "person", array)
    assert [bytes(r) for r in rows] == keyed_digests(key, "person", values)
    uniform = pa.array(values[:40], pa.binary()).slice(1)
    assert [bytes(r) for r in keyed_digest_rows(key, "person", uniform)] == keyed_digests(key, "person", values[1:40])


def test_null_tokens_are_refused():
    with pytest.raises(ValueError, match="1 null values"):
        keyed_digest_rows(SecretKey(os.urandom(32), "test project"), "person", pa.array([b"a", None], pa.binary()))


def test_two_tokens_with_one_pseudonym_stop_provisioning(monkeypatch):
    monkeypatch.setattr(
        pseudonymize, "keyed_digest_rows", lambda key, kind, values: np.ones((len(values), 16), dtype=np.uint8)
    )
    with pytest.raises(Stage2CollisionError, match="two person tokens share a stage-2 pseudonym"):
        stage2_mapping(
            SecretKey(os.urandom(32), "test project"), "person", pa.array([b"a" * 16, b"b" * 16], pa.binary())
        )


def test_distinct_rows_looks_past_a_shared_first_half():
    rows = np.frombuffer(os.urandom(16 * 1000), dtype=np.uint8).reshape(1000, 16).copy()
    assert pseudonymize.distinct_rows(rows)
    rows[7, :8] = rows[500, :8]  # same first 8 bytes, different last 8: still distinct
    assert pseudonymize.distinct_rows(rows)
    rows[7] = rows[500]
    assert not pseudonymize.distinct_rows(rows)
    assert pseudonymize.distinct_rows(np.zeros((0, 16), dtype=np.uint8))
