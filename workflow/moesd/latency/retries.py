"""How often a latency slice's points have failed: what the workflow reads, while it plans, to run
a slice that left failed points again (a light module: the Snakefile's parse imports it, and it
must import nothing that Snakemake does not bring).
"""

from __future__ import annotations

from pathlib import Path


def failed_tries(paths) -> int:
    """How many tries of the points in the latency tables PATHS have failed so far: each point's
    `attempts`, less one where it was measured in the end. It grows with every failed try and stays
    put once every point is measured, so the workflow keeps it as a param of the slice's job:
    a slice that left failed points is run again by the next `snakemake` (its param changed),
    measuring only those points, and a slice whose retries succeeded is not run a third time.
    Read with the csv module: Snakemake evaluates it for every slice while it plans."""
    import csv

    tries = 0
    for path in map(Path, paths):
        if not path.is_file():
            continue
        try:
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    if float(row.get("repeat") or 0) not in (0, -1):  # a point's first repeat, or its failure
                        continue
                    attempts = int(float(row.get("attempts") or 1))
                    tries += attempts - (row.get("status") == "ok")
        except (ValueError, TypeError, csv.Error, UnicodeDecodeError):
            tries += DAMAGED  # a damaged table: its slice runs again and writes it anew
    return tries


DAMAGED = 10**6
