"""Command of the fanned-out stages' gather rules (workflow/rules/latency.smk, acceptance.smk):
`moesd gather` concatenates the tables of a stage's slices (moesd.config.slices: one job per
platform, model or pair and K), in config order, into the tables the next stage reads, every row
keeping its slice's `platform`."""

from __future__ import annotations

from pathlib import Path


def cmd_gather(args) -> int:
    """The slices' tables, concatenated in the order given, as the stage's tables."""
    import pandas as pd

    from moesd.io import write_csv

    counts = []
    for name in args.tables:
        parts = []
        for folder in args.slices:
            path = Path(folder) / f"{name}.csv"
            if not path.is_file():
                raise FileNotFoundError(f"slice {folder}: {path.name} does not exist (run the slice first)")
            if path.stat().st_size > 1:  # an empty table: the slice measures no such point
                parts.append(pd.read_csv(path))
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        write_csv(Path(args.out) / f"{name}.csv", table)
        counts.append(f"{len(table)} {name} rows")
    print(f"gathered {', '.join(counts)} from {len(args.slices)} slices -> {args.out}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("gather", help="a fanned-out stage's slice tables concatenated into the stage's")
    p.add_argument("slices", type=Path, nargs="+", help="the slices' folders, in order")
    p.add_argument("--tables", required=True, nargs="+", help="the table names each folder holds (NAME.csv)")
    p.add_argument("--out", required=True, type=Path, help="folder of the gathered tables")
    p.set_defaults(func=cmd_gather)
