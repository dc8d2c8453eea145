"""Fixtures of the hub end-to-end tests (helpers in ``hub_helpers``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# --import-mode=importlib does not put test folders on sys.path; the tests import hub_helpers.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from hub_helpers import MONDAY_10, Hub, start_hub

from enclave.hub import isolation


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("hub")
    h = start_hub(root, now=MONDAY_10)
    try:
        yield h
    finally:
        h.procs.stop()
        isolation.release_all(h.settings)
