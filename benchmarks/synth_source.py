"""Benchmark: outpatient rows/s and peak RSS of ``generate_source`` (10 M OPDTE rows by default)."""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from pipelines.synth.generate import generate_source


def main() -> None:
    """Generate ``--rows`` outpatient visits (people = rows / 15) and print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    args = ap.parse_args()
    people = max(1, round(args.rows / 15))
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        s = generate_source(Path(d), people=people, years=[2023], seed=1, files=["H_NHI_OPDTE"])
        dt = time.perf_counter() - t
    rows = s.rows["H_NHI_OPDTE_2023.csv"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{rows} OPDTE rows in {dt:.1f} s = {rows / dt:,.0f} rows/s; peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
