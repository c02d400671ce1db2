"""One timed measurement on a machine's CPU cores at a time.

Two timed jobs on the same cores measure each other: after a killed Snakemake (SIGKILL leaves
its running job behind) and `--unlock`, a rerun would time a second latency stage beside the
orphaned one (and `snakemake --cores 8` would run four 2-thread timed jobs at once). Every
command that times CPU work holds an exclusive lock on a file in the machine's temporary folder
(TMPDIR) for as long as it measures; the operating system releases it when the process ends,
however it ends. A second one finds it held, says so in one line naming the holder, and waits
for it. GPU measurements take no lock: a scheduler gives each job its own GPUs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
from pathlib import Path

LOCK_NAME = "moesd-cpu-timing.lock"


def lock_path() -> Path:
    return Path(tempfile.gettempdir()) / LOCK_NAME


@contextlib.contextmanager
def exclusive_timing(device: str = "cpu"):
    """Hold the machine's CPU timing lock while the block runs (nothing on a GPU device)."""
    if str(device).startswith("cuda"):
        yield
        return
    path = lock_path()
    handle = open(path, "a+")  # noqa: SIM115 (held open for the block's life)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            print(
                f"moesd: waiting: another measurement is timing on these CPU cores ({holder}; lock {path}); "
                "two would time each other (a Snakemake killed with SIGKILL leaves its job running: stop it "
                "to go on)",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
