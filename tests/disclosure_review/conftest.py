"""Shared fixtures: write small outputs to a temp folder and check them with the real code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# --import-mode=importlib does not put test folders on sys.path; the rule tests import
# their assertion helpers from dr_helpers.py next to this file.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from disclosure_review.checker import check_paths
from disclosure_review.model import CheckReport
from disclosure_review.policy import DisclosurePolicy, load_policy


@pytest.fixture
def policy() -> DisclosurePolicy:
    return load_policy()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    def _write(name: str, text: str, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode(encoding))
        return path

    return _write


@pytest.fixture
def check(tmp_path: Path) -> Callable[..., CheckReport]:
    def _check(name: str, text: str, *, overrides: str | None = None, **kwargs) -> CheckReport:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        pol = None
        if overrides is not None:
            override = tmp_path / "override.yaml"
            override.write_text(overrides, encoding="utf-8")
            pol = load_policy(override=override)
        return check_paths([path], policy=pol, **kwargs)

    return _check



# --- Export requests (review queue and release) ------------------------------------------
# Projects are inserted as ORM rows (issue 4's tables) in the state an export needs: active,
# with a PI, a processor and current members; people are created through enclave.users.

PROJECT = "P2026-0001"
PASSWORD = "correct-horse-battery-staple"


def _add_people(settings, people: dict[str, list[str]]) -> None:
    from enclave.state.db import session_scope
    from enclave.users import add_user

    with session_scope(settings) as session:
        for name, roles in people.items():
            add_user(session, settings, actor="alice", username=name,
                     full_name=name.title(), unit="NTU", roles=roles, password=PASSWORD)


def make_project(settings, code: str = PROJECT, *, status: str = "active",
                 members: dict[str, str] | None = None) -> None:
    """Insert an active project with ``members`` (username → pi/co_pi/processor)."""
    from enclave import clock
    from enclave.state.db import session_scope
    from enclave.state.models import Project, ProjectMember

    members = members or {"pia": "pi", "rex": "processor"}
    moment = clock.now()
    with session_scope(settings) as session:
        project = Project(code=code, applicant=next(iter(members)), institution="NTU",
                          project_type="academic", title="Diabetes outcomes", status=status,
                          spec_json="{}", spec_sha256="0" * 64, submitted_at=moment,
                          status_changed_at=moment)
        project.members = [ProjectMember(username=u, project_role=r, unit="NTU",
                                         added_at=moment) for u, r in members.items()]
        session.add(project)


@pytest.fixture
def enclave_project(settings):
    """Home with researchers pia (PI) and rex, reviewers vera and walt, reviewer-member
    rita (a reviewer who also works on the project), and active project P2026-0001."""
    _add_people(settings, {"pia": ["researcher"], "rex": ["researcher"],
                           "vera": ["reviewer"], "walt": ["reviewer"],
                           "rita": ["reviewer", "researcher"], "oscar": ["researcher"]})
    make_project(settings, members={"pia": "pi", "rex": "processor", "rita": "co_pi"})
    return settings
