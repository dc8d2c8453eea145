"""Fixtures for the workspace tests: a demo project, the export service, the toolkit env."""

from __future__ import annotations

import sys
from pathlib import Path

# --import-mode=importlib does not put test folders on sys.path.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from ws_helpers import demo, export_service, extract_env, toolkit_env

__all__ = ["demo", "export_service", "extract_env", "toolkit_env"]
