"""Shared fixtures: write small outputs to a temp folder and check them with the real code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

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

