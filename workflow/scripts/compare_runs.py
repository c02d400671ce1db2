"""Benchmark: how far two from-scratch runs of one experiment agree (the timing protocol's goal:
in two runs, 95 % of point medians within +-5 %), per estimator of a point's time, and whether
their claims read the same:

    python workflow/scripts/compare_runs.py RUN_A RUN_B [RUN_C ...]

RUN_* are run folders (data/runs/<experiment> of separate checkouts). For every forward, draft
and rejection point measured in all of them it prints, per estimator (median, minimum, 20 %
trimmed mean, the paper's mean of the last 5), the 5th-95th percentile of the ratio of each run
to the first and the share of points within +-5 %; then the rounds measured again and taken;
each model's level against the first run (its points' drift together) and the agreement with it
divided out; the same agreement for the composed speedups, target efficiencies and end-to-end
speedups; then each claim's verdict, margin and support per run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

POINT = ["model", "K", "B", "s", "temperature", "platform"]  # what names a point across runs


def trimmed_mean(values: np.ndarray, share: float = 0.2) -> float:
    values = np.sort(values)
    cut = int(len(values) * share)
    return float(values[cut : len(values) - cut].mean()) if len(values) > 2 * cut else float(values.mean())


ESTIMATORS = {
    "median": lambda v: float(np.median(v)),
    "minimum": lambda v: float(np.min(v)),
    "trimmed mean (20 %)": trimmed_mean,
    "mean of the last 5": lambda v: float(v[-5:].mean()),
}


def points(run: Path) -> pd.DataFrame:
    """Every ok point of the run's forward, draft and rejection tables: its kept rounds, in order."""
    frames = []
    for table in ("forward", "draft", "reject"):
        path = run / "latency" / f"{table}.csv"
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        frame = frame[frame["status"] == "ok"].assign(table=table)
        frames.append(frame)
    if not frames:
        raise SystemExit(f"{run}: no latency tables (latency/forward.csv): not a finished run folder")
    frame = pd.concat(frames, ignore_index=True)
    keys = ["table", *[c for c in POINT if c in frame]]
    rows = []
    for key, part in frame.sort_values("repeat").groupby(keys, dropna=False):
        seconds = part["seconds"].to_numpy(float)
        row = dict(zip(keys, key, strict=True))
        row |= {name: f(seconds) for name, f in ESTIMATORS.items()}
        row["remeasured"] = float(part["remeasured"].iloc[0]) if "remeasured" in part else np.nan
        row["rounds_taken"] = float(part["rounds_taken"].iloc[0]) if "rounds_taken" in part else len(seconds)
        rows.append(row)
    return pd.DataFrame(rows).set_index(keys)


def levels(tables: list[pd.DataFrame], shared) -> None:
    """Per model (the rejection rule as one), each run's level against run 1 (the geometric mean
    of its point medians' ratios: a machine that drifts between runs, or whose neighbours take
    memory bandwidth, moves a model's points together) and the share of points within +-5 % once
    it is divided out (what is left to the protocol within a run)."""
    print("\n| model | run | level (ratio to run 1) | points within +-5 %, level divided out |")
    print("|---|---|---|---|")
    first = tables[0].loc[shared, "median"]
    for i, table in enumerate(tables[1:], start=2):
        ratio = (table.loc[shared, "median"] / first).rename("ratio").reset_index()
        ratio["group"] = ratio["model"].fillna(ratio["table"]) if "model" in ratio else ratio["table"]
        levelled = []
        for group, part in ratio.groupby("group", sort=False):
            level = float(np.exp(np.log(part["ratio"]).mean()))
            levelled.append(part["ratio"] / level)
            print(f"| {group} | {i} | {level:.3f} | {(abs(part['ratio'] / level - 1) <= 0.05).mean():.1%} |")
        print(f"| all | {i} | | {(abs(pd.concat(levelled) - 1) <= 0.05).mean():.1%} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (data/runs/<experiment>)")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give at least two run folders")
    tables = [points(run) for run in args.runs]
    shared = tables[0].index
    for table in tables[1:]:
        shared = shared.intersection(table.index)
    print(f"{len(shared)} points measured in all {len(tables)} runs")
    print("| estimator | run | ratio to run 1, 5th-95th percentile | within +-5 % |")
    print("|---|---|---|---|")
    for name in ESTIMATORS:
        first = tables[0].loc[shared, name]
        for i, table in enumerate(tables[1:], start=2):
            ratio = table.loc[shared, name] / first
            low, high = np.quantile(ratio, [0.05, 0.95])
            print(f"| {name} | {i} | {low:.3f}-{high:.3f} | {(abs(ratio - 1) <= 0.05).mean():.1%} |")
    levels(tables, shared)
    for i, table in enumerate(tables, start=1):
        print(
            f"run {i}: rounds taken per point: median {table['rounds_taken'].median():.0f}, "
            f"max {table['rounds_taken'].max():.0f}; rounds measured again: {table['remeasured'].sum():.0f} "
            f"({(table['remeasured'] > 0).mean():.1%} of points)"
        )
    derived = [
        ("composed speedup", "composed.csv", ["model", "K", "dataset", "temperature", "gamma", "B"], "speedup"),
        (
            "target efficiency",
            "composed.csv",
            ["model", "K", "dataset", "temperature", "gamma", "B"],
            "target_efficiency",
        ),
        ("end-to-end speedup", "e2e.csv", ["name", "backend", "temperature", "gamma", "B"], "speedup"),
    ]
    print("\n| quantity | run | points | ratio to run 1, 5th-95th percentile | within +-5 % |")
    print("|---|---|---|---|---|")
    for label, name, keys, column in derived:
        tables = [pd.read_csv(run / "speedup" / name) for run in args.runs if (run / "speedup" / name).is_file()]
        if len(tables) != len(args.runs):
            continue
        first = tables[0].drop_duplicates(keys).set_index(keys)[column]
        for i, table in enumerate(tables[1:], start=2):
            ratio = (table.drop_duplicates(keys).set_index(keys)[column] / first).dropna()
            if len(ratio):
                low, high = np.quantile(ratio, [0.05, 0.95])
                print(
                    f"| {label} | {i} | {len(ratio)} | {low:.3f}-{high:.3f} | {(abs(ratio - 1) <= 0.05).mean():.1%} |"
                )
    claims = []
    for run in args.runs:
        path = run.parent.parent.parent / "figures" / run.name / "claims.csv"
        claims.append(pd.read_csv(path).set_index("claim") if path.is_file() else None)
    if all(c is not None for c in claims):
        print("\n| claim | " + " | ".join(f"run {i}" for i in range(1, len(claims) + 1)) + " |")
        print("|---|" + "---|" * len(claims))
        for claim in claims[0].index:
            cells = []
            for c in claims:
                row = c.loc[claim]
                margin = "" if pd.isna(row["margin"]) else f", margin {row['margin']:+.1%}"
                support = "" if pd.isna(row["support"]) else f", support {row['support']:.2f}"
                cells.append(f"{row['verdict']}{margin}{support}")
            print(f"| {claim} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
