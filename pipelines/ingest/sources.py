"""Finding source files, recognising them by the catalog, checksums and encoding detection."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from catalog import Catalog
from catalog.model import FileDef
from enclave.checksums import sha256_file
from pipelines.ingest.errors import IngestError

_SNIFF_BYTES = 4 * 1024 * 1024
CANONICAL_ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "big5": "cp950",
    "cp950": "cp950",
    "big5hkscs": "big5hkscs",
}


@dataclass(frozen=True)
class SourceFile:
    path: Path
    definition: FileDef
    year: int
    sha256: str
    """Content checksum; empty until :func:`with_checksums` (hashing reads the whole file)."""
    size: int

    @property
    def name(self) -> str:
        return self.path.name


def discover(src_dir: Path, catalog: Catalog) -> tuple[list[SourceFile], list[str]]:
    """Return recognised files (in catalog order: parents before children) and ignored names.

    Checksums are left for :func:`with_checksums`, so processing can start while they are
    computed."""
    if not src_dir.is_dir():
        raise IngestError(f"{src_dir}: not a folder")
    found: list[SourceFile] = []
    ignored: list[str] = []
    for path in sorted(p for p in src_dir.iterdir() if p.is_file()):
        match = catalog.match_source(path.name)
        if match is None:
            ignored.append(path.name)
            continue
        definition, year = match
        found.append(SourceFile(path, definition, year, "", path.stat().st_size))
    order = {f.name: i for i, f in enumerate(catalog.files)}
    found.sort(key=lambda s: (order[s.definition.name], s.year, s.name))
    return found, ignored


def with_checksums(sources: list[SourceFile]) -> list[SourceFile]:
    """The same files with their SHA-256 content checksums."""
    return [replace(src, sha256=sha256_file(src.path)) for src in sources]


def canonical_encoding(name: str) -> str:
    try:
        return CANONICAL_ENCODINGS[name.lower()]
    except KeyError:
        raise IngestError(f"unsupported encoding {name!r}; use one of {sorted(CANONICAL_ENCODINGS)}") from None


def detect_encoding(path: Path, candidates: list[str]) -> str:
    """Pick the first candidate that decodes the file's first megabytes.

    A file with a few bad lines still gets the right encoding: the candidate with the fewest
    decoding failures wins, and UTF-8 wins ties (it is the stricter decoder).
    """
    sample = path.read_bytes()[:_SNIFF_BYTES] if path.stat().st_size <= _SNIFF_BYTES else _head(path)
    cut = sample.rfind(b"\n")
    sample = sample[: cut + 1] if cut > 0 else sample
    scores = []
    for rank, enc in enumerate(canonical_encoding(c) for c in candidates):
        bad = 0
        for line in sample.split(b"\n"):
            try:
                line.decode(enc)
            except UnicodeDecodeError:
                bad += 1
        scores.append((bad, rank, enc))
    return min(scores)[2]


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(_SNIFF_BYTES)
