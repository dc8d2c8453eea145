"""The demo builds a provisioned project end to end through the real code paths, twice."""

from __future__ import annotations

import json

from enclave import audit
from enclave.config import Settings, load_settings
from enclave.demo import build_demo
from enclave.state.db import session_scope


def test_demo_builds_an_active_provisioned_project_and_is_idempotent(tmp_path) -> None:
    settings: Settings = load_settings(tmp_path / "demo-home")
    first = build_demo(settings, people=600)
    assert first.project
    manifest = json.loads((settings.projects_dir / first.project / "extract" / "manifest.json").read_text())
    assert manifest
    again = build_demo(settings, people=600)
    assert again.project == first.project
    assert any("already" in step for step in again.steps)
    with session_scope(settings) as session:
        result = audit.verify(session, settings)
    assert result.ok, result.problem
    assert {a[0] for a in first.accounts} >= {"alice", "chen.wei", "steve", "rita", "audrey"}
