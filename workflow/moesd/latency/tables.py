"""The latency stage's tables: stored points laid out tidy (one row per timed repeat, the
summary of the repeats beside them), failed points reported per model, the tables written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moesd.columns import PER_REPEAT
from moesd.io import StageFailure, write_csv


def summarise_repeats(seconds: list[float]) -> dict:
    """The paper's statistic (mean of the last 5 repeats) and robust ones; spread: the
    interquartile range over the median."""
    values = np.asarray(seconds, float)
    median = float(np.median(values))
    q25, q75 = float(np.quantile(values, 0.25)), float(np.quantile(values, 0.75))
    return {
        "mean_last5": float(values[-5:].mean()),
        "median": median,
        "q25": q25,
        "q75": q75,
        "spread": (q75 - q25) / median if median > 0 else float("nan"),
    }


def long_table(records: list[dict]) -> pd.DataFrame:
    """Tidy: one row per repeat (or one row with NaN for a failed point), summary columns kept."""
    rows = []
    for record in records:
        base = {k: v for k, v in record.items() if k not in (*PER_REPEAT, "distinct_experts")}
        distinct = record.get("distinct_experts") or []
        base["distinct_experts_mean"] = float(np.mean(distinct)) if distinct else np.nan
        base["distinct_experts"] = ";".join(map(str, distinct))
        seconds = record.get("seconds") or []
        stats = summarise_repeats(seconds) if seconds else {}
        if not seconds:
            rows.append(base | {"repeat": -1, "seconds": np.nan})
        for i, value in enumerate(seconds):
            extra = {key: record[key][i] for key in PER_REPEAT[1:] if record.get(key)}
            rows.append(base | stats | {"repeat": i, "seconds": value} | extra)
    return pd.DataFrame(rows)


# what one model's points share, per latency table: a stage fails when every point of one failed
POINT_GROUPS = {"forward": ["model", "k_override"], "draft": ["model"], "reject": ["temperature"],
                "e2e": ["name", "backend", "K"]}  # fmt: skip


def failures(tables: dict[str, pd.DataFrame]) -> tuple[list[str], list[str]]:
    """(a line per model, K or engine with failed points: how many of how many, the first error;
    the labels of those whose every point failed)."""
    lines, whole = [], []
    for name, table in tables.items():
        if table.empty or "status" not in table:
            continue
        columns = [c for c in POINT_GROUPS.get(name, []) if c in table]
        groups = table.groupby(columns, dropna=False, sort=False) if columns else [((), table)]
        for key, part in groups:
            failed = part["status"] != "ok"
            n_failed, n_ok = int(failed.sum()), int((~failed & (part["repeat"] == 0)).sum())
            if not n_failed:
                continue
            values = key if isinstance(key, tuple) else (key,)
            shown = [
                (c, int(v) if isinstance(v, float) and v.is_integer() else v)
                for c, v in zip(columns, values, strict=True)
            ]
            label = " ".join([name] + [f"{c}={v}" for c, v in shown if pd.notna(v)])
            first = part.loc[failed, "status"].iloc[0]
            lines.append(f"{label}: {n_failed} of {n_failed + n_ok} points failed (first: {first})")
            whole += [label] if not n_ok else []
    return lines, whole


def report_failures(tables: dict[str, pd.DataFrame], stage: str) -> None:
    """Print every model's failed points; raise where all of one model's points failed (the
    tables and points stay, and the next run measures the failed points again)."""
    lines, whole = failures(tables)
    for line in lines:
        print(f"{stage}: {line}")
    if whole:
        raise StageFailure(f"{stage}: every point of {whole[0]} failed ({len(whole)} such); see the log")


def write_tables(out: Path, tables: dict[str, pd.DataFrame]) -> None:
    for name, table in tables.items():
        write_csv(out / f"{name}.csv", table)


# the columns that name a point in the missing-points table, where its latency table has them
POINT_COLUMNS = ["platform", "model", "name", "backend", "K", "k_override", "B", "s", "temperature"]


def missing_points(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per failed point of the latency tables (one row each in the tidy tables, repeat
    -1): its table, what names it, its status and how many times it was tried. The speedup stage
    writes it beside the speedups, and the figures and claims say how many points are missing."""
    rows = []
    for name, table in tables.items():
        if table.empty or "status" not in table:
            continue
        failed = table[table["status"] != "ok"]
        columns = [c for c in POINT_COLUMNS if c in failed]
        for record in failed[[*columns, "status", *(["attempts"] if "attempts" in failed else [])]].to_dict("records"):
            rows.append({"table": name} | record)
    columns = ["table", *POINT_COLUMNS, "status", "attempts"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame[[c for c in columns if c in ("table", "status", "attempts") or frame[c].notna().any()]]


def missing_note(missing: pd.DataFrame) -> str:
    """One sentence for the figures' captions and the claims report: how many latency points
    failed and are left out, per table, with the first failure ("" where none did)."""
    if missing is None or missing.empty:
        return ""
    counts = ", ".join(f"{n} {name}" for name, n in missing["table"].value_counts(sort=False).items())
    n = len(missing)
    return (
        f"{n} latency point{'s' if n > 1 else ''} failed and {'are' if n > 1 else 'is'} left out ({counts}; "
        f"first: {missing['status'].iloc[0]}); speedup/missing.csv names each, and the next run measures "
        f"{'them' if n > 1 else 'it'} again."
    )
