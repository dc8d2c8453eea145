"""The keyed hash both pseudonymization stages use (stage 1 at ingest, stage 2 at provisioning).

digest = HMAC-SHA-256(key, kind || 0x00 || value)[:16]. The keyed state after the prefix is
computed once and copied per value, which skips the key schedule for each of the (millions of)
distinct values; callers hash each distinct value once and apply the result with a join.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import pairwise

import numpy as np
import pyarrow as pa
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


def _values(array: pa.BinaryArray) -> Iterator[bytes]:
    """The values of a binary array without nulls, sliced one at a time from its data buffer."""
    n = len(array)
    if n == 0:
        return iter(())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + n + 1]
    buffer = array.buffers()[2]
    data = buffer.to_pybytes() if buffer is not None else b""
    start, end = int(offsets[0]), int(offsets[-1])
    width = (end - start) // n
    if width and width * n == end - start and bool(np.all(np.diff(offsets) == width)):
        return (data[i : i + width] for i in range(start, end, width))  # fixed width: no offsets list
    bounds = offsets.tolist()
    return (data[a:b] for a, b in pairwise(bounds))


def keyed_digest_rows(key: SecretKey, kind: str, values: pa.BinaryArray) -> np.ndarray:
    """:func:`keyed_digests` of an Arrow binary array without nulls, as an (n, 16) uint8 array.

    The bulk form for provisioning: each value is sliced from the array's buffer and each
    digest appended to one buffer, so no Python object per value outlives its step (631 k
    tokens: half the page faults of a list of bytes in and out, and 7 % less time).
    """
    if values.null_count:
        raise ValueError(f"{values.null_count} null values to hash")
    base = hmac.HMAC(key.reveal(), hashes.SHA256())
    base.update(kind.encode() + b"\x00")
    copy = base.copy
    digests = bytearray()
    extend = digests.extend
    for value in _values(values):
        mac = copy()
        mac.update(value)
        extend(mac.finalize())
    return np.frombuffer(digests, dtype=np.uint8).reshape(len(values), 32)[:, :DIGEST_BYTES]
