"""The lock file of resolved hub commits (config/<experiment>.lock.json: ORG/NAME@REVISION ->
40-hex commit). The download stage writes it; the config check reads it before any job, so a
lock that is no lock stops the run at once. JSON only: nothing here reaches the hub."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

COMMIT = re.compile(r"[0-9a-f]{40}")  # fullmatch: a commit and nothing more


class LockFileError(ValueError):
    """A lock file that cannot be read as one; the message names the file."""


def lock_key(spec) -> str:
    """An hf: spec's key in the lock: ORG/NAME@REVISION."""
    return f"{spec.name}@{spec.revision}"


def read_lock(path: Path | None) -> dict:
    """The lock at PATH ({} where there is none yet). Anything at PATH but a regular file (a
    symlink, a device such as /dev/null, a FIFO, a folder) is refused: the download stage would
    replace it with the lock it writes."""
    if path is None or not os.path.lexists(path):
        return {}
    if Path(path).is_symlink() or not Path(path).is_file():
        raise LockFileError(f"{path}: not a regular file (a lock file is one; the download stage would replace it)")
    try:
        lock = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise LockFileError(f"{path}: not a JSON lock file ({error.msg}, line {error.lineno})") from None
    except UnicodeDecodeError:
        raise LockFileError(f"{path}: not a JSON lock file (not UTF-8 text)") from None
    if not isinstance(lock, dict) or not all(isinstance(v, str) and COMMIT.fullmatch(v) for v in lock.values()):
        raise LockFileError(f"{path}: a lock file maps ORG/NAME@REVISION to 40-hex commits")
    return lock
