"""The disclosure policy: load ``policies/disclosure.yaml``, apply overrides, validate.

Thresholds and switches are operator data, never constants in rule code. A reviewer may
try a stricter or looser rule for one check with ``--policy FILE`` (YAML or JSON); the
resulting :class:`DisclosurePolicy` carries a label saying which policy was used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from disclosure_review.errors import DisclosurePolicyError
from enclave.yaml_text import parse_yaml

POLICY_FILE = "disclosure.yaml"
OUTPUT_KINDS = ("frequency", "magnitude", "percent", "regression", "unknown", "figure", "code",
                "text")


class DisclosurePolicy(BaseModel):
    """Validated contents of ``disclosure.yaml`` (see the comments in that file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(ge=0)
    institution_threshold: int = Field(ge=0)
    zero_cells: Literal["review", "fail", "allow"]
    suppression_marks: Literal["fail", "review", "allow"]
    total_labels: list[str]
    suppression_min_width: float = Field(ge=0)
    suppression_max_masked_cells: int = Field(gt=0)
    extremes_small_group: int = Field(ge=0)
    p_percent: float = Field(ge=0, le=100)
    nk_n: int = Field(ge=1)
    nk_k: float = Field(gt=0, le=100)
    percent_scale: Literal["auto", "percent", "fraction"]
    min_residual_df: int = Field(ge=0)
    pseudonym_min_share: float = Field(gt=0, le=1)
    pseudonym_min_length: int = Field(ge=8)
    pseudonym_min_unique_ratio: float = Field(ge=0, le=1)
    identifier_min_score: float = Field(ge=0, le=1)
    identifier_fail_entities: list[str]
    large_literal_chars: int = Field(gt=0)
    encoded_blob_chars: int = Field(gt=0)
    large_literal_items: int = Field(gt=0)
    identifier_scan_max_values: int = Field(gt=0)
    figures: Literal["review", "fail"]
    differencing_threshold: int = Field(ge=0)
    two_reviewers: bool
    rules_by_kind: dict[str, list[str]]
    label: str = "default"

    @model_validator(mode="after")
    def _known_kinds_and_rules(self) -> DisclosurePolicy:
        # Imported here: the registry imports rule modules that read this class.
        from disclosure_review.rules import REGISTRY

        missing = [k for k in OUTPUT_KINDS if k not in self.rules_by_kind]
        if missing:
            raise ValueError(f"rules_by_kind lacks kind(s) {missing}")
        for kind, names in self.rules_by_kind.items():
            if kind not in OUTPUT_KINDS:
                raise ValueError(f"rules_by_kind: unknown kind {kind!r}; known {OUTPUT_KINDS}")
            unknown = [n for n in names if n not in REGISTRY]
            if unknown:
                raise ValueError(
                    f"rules_by_kind.{kind}: unknown rule(s) {unknown}; known {sorted(REGISTRY)}"
                )
        return self

    def is_total_label(self, value: object) -> bool:
        """True when ``value`` is one of the margin labels (case-insensitive)."""
        return str(value).strip().casefold() in {t.casefold() for t in self.total_labels}


def default_policy_path() -> Path:
    """``disclosure.yaml`` in the configured policy folder (``ENCLAVE_POLICIES_DIR`` etc.)."""
    from enclave.config import load_settings, packaged_policies_dir
    from enclave.errors import ConfigError

    try:
        folder = load_settings().policies_dir
    except ConfigError:  # a broken settings file still leaves the packaged policies
        folder = packaged_policies_dir()
    return folder / POLICY_FILE


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DisclosurePolicyError(f"policy file {path}: cannot read: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else parse_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DisclosurePolicyError(f"policy file {path}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DisclosurePolicyError(f"policy file {path}: must hold a mapping of keys")
    return data


def load_policy(
    *, base: Path | None = None, override: Path | None = None
) -> DisclosurePolicy:
    """Load the disclosure policy, optionally overriding some keys for this check.

    Parameters
    ----------
    base : Path, optional
        The operator's policy file; default :func:`default_policy_path`.
    override : Path, optional
        A YAML or JSON file whose top-level keys replace those of ``base``
        (``rules_by_kind`` entries are replaced per kind).

    Returns
    -------
    DisclosurePolicy
        With ``label`` ``"default"`` or ``"default + override FILE (keys: …)"``.

    Raises
    ------
    DisclosurePolicyError
        A file is unreadable, a key is unknown or a value invalid (the message names it).
    """
    base_path = base or default_policy_path()
    data = _read_mapping(base_path)
    label = "default" if base is None else str(base_path)
    if override is not None:
        extra = _read_mapping(override)
        unknown = sorted(set(extra) - set(DisclosurePolicy.model_fields) - {"label"})
        if unknown:
            raise DisclosurePolicyError(
                f"policy override {override}: unknown key(s) {unknown}; "
                f"known keys are those of {base_path.name}"
            )
        for key, value in extra.items():
            if key == "rules_by_kind" and isinstance(value, dict):
                data["rules_by_kind"] = {**data.get("rules_by_kind", {}), **value}
            else:
                data[key] = value
        label = f"{label} + override {override} (keys: {', '.join(sorted(extra))})"
    data["label"] = label
    try:
        return DisclosurePolicy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}"
            for err in exc.errors()
        )
        source = override or base_path
        raise DisclosurePolicyError(f"disclosure policy ({source}): {problems}") from exc
