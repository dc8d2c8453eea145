"""Parsing YAML text: the one safe loader every module uses.

PyYAML's safe loader in C (libyaml) when PyYAML was built with it, as its wheels are: the
same safe constructors as ``yaml.safe_load``, about eight times faster (the catalog's 27
files took 0.12 s with the pure-Python parser, on every command and in every ingest worker).
"""

from __future__ import annotations

from typing import Any

import yaml

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Any:
    """The YAML document in ``text`` (safe constructors only); raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # a safe loader, never yaml.Loader
