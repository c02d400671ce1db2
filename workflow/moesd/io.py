"""Atomic output files and the run's env.json.

Every file a stage promises is written to a temporary name in the same folder and renamed, so
a killed run never leaves a half-written file where a whole one is expected.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

from moesd.paths import DATA_DIR, REPO_ROOT


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to PATH; rename it onto PATH when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if not Path(tmp).is_dir():  # mkstemp's file is 0600: give the output the umask's permissions
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, data, strict: bool = False) -> None:
    """DATA as JSON. STRICT: standard JSON for other tools to read, a value that is not a finite
    number (NaN: a quantity with nothing to measure, such as a held-out error without held-out
    points) written as null rather than as NaN or Infinity, which JSON does not have."""
    if strict:
        data = json.loads(json.dumps(data, default=_json_default), parse_constant=lambda name: None)
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default, allow_nan=not strict)
    write_text(path, text + "\n")


class StageFailure(RuntimeError):
    """A stage that ran but could not measure what it must (every point of a model failed): exit
    status 1 with one line; what it measured stays for the next run."""


def read_table(path, kind: str | None = None):
    """A CSV table as a DataFrame; a missing, empty or malformed file, or one that lacks the
    columns of KIND (a key of moesd.columns.TABLES), is a one-line error that names it."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty (not even a header row); rerun the step that writes it") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a CSV table ({str(error).splitlines()[0]})") from None
    _check_whole(path, len(table))
    if kind is not None:
        from moesd.columns import TABLES, missing_columns

        missing = missing_columns(table.columns, kind)
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected {TABLES[kind][0]})")
        check_values(table, path, kind)
    return table


def check_values(table, path, kind: str) -> None:
    """TABLE's values as moesd.columns.VALUES[KIND] wants them, or a one-line error naming PATH,
    the row (its line in the file) and the column."""
    import numpy as np

    from moesd.columns import PER_REPEAT, REPEAT_SUMMARY, VALUES

    rules = VALUES.get(kind, {})
    measured = table["status"].eq("ok") if "status" in table else np.ones(len(table), bool)

    def fail(mask, column: str, what: str) -> None:
        first = int(np.flatnonzero(np.asarray(mask))[0])
        raise ValueError(
            f"{path}: line {first + 2}: {column} = {table[column].iloc[first]} {what} "
            f"({int(np.sum(mask))} such row(s)); a damaged table: rerun the step that writes it"
        )

    everywhere = np.ones(len(table), bool)
    tests = {  # rule: (what a good value is, what a bad one is called, the rows it applies to)
        "times": (lambda v: np.isfinite(v) & (v >= 0), "is no finite, non-negative time", measured),
        "optional_times": (
            lambda v: np.isnan(v) | (np.isfinite(v) & (v >= 0)),
            "is no finite, non-negative time",
            measured,
        ),
        "shares": (lambda v: np.isfinite(v) & (v >= 0) & (v <= 1), "is not within [0, 1]", everywhere),
    }
    for rule, (good, what, rows) in tests.items():
        for column in rules.get(rule, ()):  # optional_times: absent (NaN) where the point has none
            if column in table:
                bad = rows & ~good(_numbers(table[column]))
                if bad.any():
                    fail(bad, column, what)
    if "unique" in rules:
        keys = rules["unique"]
        if keys is None:  # a latency table: each point's repeat once
            keys = [c for c in table.columns if c not in (*PER_REPEAT, *REPEAT_SUMMARY)]
        keys = [c for c in keys if c in table]
        twice = table.duplicated(keys, keep="first").to_numpy()
        if keys and twice.any():
            first = int(np.flatnonzero(twice)[0])
            raise ValueError(f"{path}: line {first + 2}: a setting given twice ({int(twice.sum())} such row(s))")


def _numbers(column):
    """COLUMN as floats, NaN where a value is no number."""
    import pandas as pd

    return pd.to_numeric(column, errors="coerce").to_numpy(float)


def check_file(path) -> Path:
    """The record beside a table written by write_csv (.NAME.check: its rows and checksum), which
    read_table compares: a table cut at a row boundary or edited since reads as damaged, not as
    fewer points."""
    path = Path(path)
    return path.with_name(f".{path.name}.check")


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_csv(path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
        record = json.dumps({"rows": len(frame), "sha256": _digest(tmp)})
    write_text(check_file(path), record + "\n")


def _check_whole(path: Path, rows: int) -> None:
    """PATH as write_csv wrote it, where it left a record (tables made by hand have none)."""
    record = check_file(path)
    if not record.is_file():
        return
    try:
        wrote = json.loads(record.read_text())
        expected, digest = int(wrote["rows"]), str(wrote["sha256"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"{record}: not a table record (rows, sha256); delete it to read {path.name} as it is"
        ) from None
    if rows != expected or _digest(path) != digest:
        change = f"{rows} row(s) where its writer wrote {expected}" if rows != expected else "its bytes changed"
        raise ValueError(
            f"{path}: {change} since it was written (truncated or edited?); rerun the step that writes it, "
            f"or delete {record.name} to read it as it is"
        )


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fingerprint(*parts) -> str:
    """A short stable hash of JSON-able PARTS: names a measured point by everything it depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment() -> dict:
    """Versions and machine facts that every reported number carries (Spec-Bench style)."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("moesd", "torch", "transformers", "numpy", "scipy", "pandas", "snakemake"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "packages": packages,
        # where the package data (architectures, datasheets) came from, and whether MOESD_DATA moved it
        "data_dir": str(DATA_DIR),
        "moesd_data": os.environ.get("MOESD_DATA"),
    }


def update_json(path, **sections) -> dict:
    """Merge SECTIONS into the JSON object at PATH (created if missing), atomically."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(sections)
    write_json(path, data)
    return data
