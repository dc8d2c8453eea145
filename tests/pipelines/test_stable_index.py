"""The extract's (pseudonym, idx) index: dense on a first provisioning, stable on a rebuild."""

from __future__ import annotations

import pyarrow as pa

from pipelines.provision.extract import INDEX_SCHEMA, stable_index


def test_first_provisioning_numbers_the_pseudonyms_in_order():
    index = stable_index(pa.chunked_array([pa.array(["c", "a"]), pa.array(["b"])]), None)
    assert index.schema == INDEX_SCHEMA
    assert index.to_pylist() == [
        {"pseudonym": "c", "idx": 0},
        {"pseudonym": "a", "idx": 1},
        {"pseudonym": "b", "idx": 2},
    ]


def test_a_rebuild_keeps_positions_leaves_gaps_and_appends_newcomers():
    previous = stable_index(pa.array(["a", "b", "c", "d"]), None)
    index = stable_index(pa.array(["e", "d", "b", "f"]), previous)  # a and c left; e and f are new
    assert index.schema == INDEX_SCHEMA
    assert index.to_pylist() == [
        {"pseudonym": "b", "idx": 1},
        {"pseudonym": "d", "idx": 3},
        {"pseudonym": "e", "idx": 4},
        {"pseudonym": "f", "idx": 5},
    ]


def test_an_empty_previous_index_counts_as_a_first_provisioning():
    empty = pa.table([pa.array([], pa.string()), pa.array([], pa.uint32())], schema=INDEX_SCHEMA)
    assert stable_index(pa.array(["x"]), empty).to_pylist() == [{"pseudonym": "x", "idx": 0}]
