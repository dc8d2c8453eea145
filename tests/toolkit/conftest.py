"""Fixtures for the toolkit tests, shared with the workspace tests (tests/workspace)."""

from __future__ import annotations

import sys
from pathlib import Path

_WORKSPACE_TESTS = Path(__file__).parent.parent / "workspace"
if str(_WORKSPACE_TESTS) not in sys.path:
    sys.path.insert(0, str(_WORKSPACE_TESTS))

from ws_helpers import demo, export_service, extract_env, toolkit_env  # noqa: E402

__all__ = ["demo", "export_service", "extract_env", "toolkit_env"]
