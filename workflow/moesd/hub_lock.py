"""The lock file of resolved hub commits (config/<experiment>.lock.json: ORG/NAME@REVISION ->
40-hex commit). The download stage writes it; the config check reads it before any job, so a
lock that is no lock stops the run at once. JSON only: nothing here reaches the hub."""

from __future__ import annotations

import json
import re
from pathlib import Path

COMMIT = re.compile(r"^[0-9a-f]{40}$")


class LockFileError(ValueError):
    """A lock file that cannot be read as one; the message names the file."""


def lock_key(spec) -> str:
    """An hf: spec's key in the lock: ORG/NAME@REVISION."""
    return f"{spec.name}@{spec.revision}"


def read_lock(path: Path | None) -> dict:
    """The lock at PATH ({} where there is none yet)."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        lock = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise LockFileError(f"{path}: not a JSON lock file ({error.msg}, line {error.lineno})") from None
    if not isinstance(lock, dict) or not all(isinstance(v, str) and COMMIT.match(v) for v in lock.values()):
        raise LockFileError(f"{path}: a lock file maps ORG/NAME@REVISION to 40-hex commits")
    return lock
