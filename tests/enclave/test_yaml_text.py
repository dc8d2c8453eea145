"""The shared YAML parser is a safe loader and reads every shipped file as yaml.safe_load does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from enclave.yaml_text import parse_yaml

REPO = Path(__file__).resolve().parents[2]


def test_python_tags_are_refused() -> None:
    with pytest.raises(yaml.YAMLError):
        parse_yaml('!!python/object/apply:os.system ["echo owned"]')
    with pytest.raises(yaml.YAMLError):
        parse_yaml("!!python/name:os.system")


@pytest.mark.parametrize("folder", ["catalog", "policies", "docs/examples"])
def test_shipped_files_parse_as_with_safe_load(folder: str) -> None:
    paths = sorted((REPO / folder).rglob("*.yaml"))
    assert paths
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert parse_yaml(text) == yaml.safe_load(text), path
