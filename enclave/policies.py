"""Loading operator-edited policy files from ``policies/`` (see ``policies/README.md``).

Each consumer describes its policy with a pydantic model; :func:`load_policy` reads the YAML,
validates it with that model and names the file and key on any error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from enclave.config import Settings, load_settings
from enclave.errors import PolicyError
from enclave.yaml_text import parse_yaml

M = TypeVar("M", bound=BaseModel)


class PolicyModel(BaseModel):
    """Base for policy models: unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def policy_path(name: str, settings: Settings | None = None) -> Path:
    folder = (settings or load_settings()).policies_dir
    return folder / f"{name}.yaml"


def read_yaml(path: Path) -> dict:
    """Parse a YAML mapping, or raise :class:`PolicyError` naming the file."""
    if not path.is_file():
        raise PolicyError(f"policy file {path} is missing")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: expected a mapping at the top level")
    return data


def load_policy(name: str, model: type[M], settings: Settings | None = None) -> M:
    """Load ``policies/<name>.yaml`` and validate it with ``model``."""
    path = policy_path(name, settings)
    data = read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PolicyError(f"{path}: {problems}") from exc
