"""The point store of the latency stage: every measured point is one JSON file in a points
folder, named by a fingerprint of everything it depends on (PROTOCOL, the spec's weights, the
settings), written atomically. A killed sweep resumes without redoing finished points, and a
failure (out of memory, say) is recorded as that point's status, measured again on the next run,
while the sweep goes on.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import torch

from moesd.io import fingerprint
from moesd.models import checkpoint
from moesd.models.spec import parse_spec

# The timing protocol's version, part of every point's key: a point measured under an older
# protocol is measured again, never mixed with newer ones in one table. 1: fresh random ids in
# every timed call (a repeated input timed its experts from a warm cache); 2: forced drafts drawn
# uniformly (a random draft copies its input); 3: weight-major fp32 linears and the expert loop
# on a CPU (moesd.models.linear); 4: e2e points of several batches, continuous batching; 5: every
# input that changes a measurement in its key (the device and CUDA graphs of forward and e2e
# points, the seed of e2e points); 6: checkpoint folders keyed by their weight files (a retrained
# pair is measured anew), e2e points by backend; 7: forward and rejection points in adaptive rounds
# (disturbed rounds measured again, rounds added until the medians are precise; latency.rounds);
# 8: the attention kernel per dtype and shape on a CPU (moesd.models.attention; bf16 3x faster at B = 64);
# 9: bf16 linear layers on a CPU through oneDNN's product on packed weights (moesd.models.linear);
# 10: a model's batch sizes in common rounds (latency.rounds.interleave); 11: the AR and SD repeats
# of an e2e point taking turns (moesd.latency.measure.e2e_points).
PROTOCOL = 11


class Fingerprints(dict):
    """A model spec's fingerprint (its folder's weight files for checkpoints), read once per spec:
    a retrained or re-downloaded model gets new point keys."""

    def __missing__(self, text: str) -> str:
        self[text] = checkpoint.fingerprint(parse_spec(text))
        return self[text]


class PointStore:
    """One JSON file per finished point, named by its kind, PROTOCOL and key parts; atomic, so a
    kill never leaves half a point."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, key: str) -> Path:
        return self.folder / f"{kind}_{key}.json"

    def ok(self, kind: str, key_parts) -> bool:
        """Whether the point is stored and was measured (a failed one is measured again, so its
        model is loaded)."""
        found = self.get(kind, fingerprint(kind, PROTOCOL, key_parts))
        return found is not None and found.get("status") == "ok"

    def get(self, kind: str, key: str) -> dict | None:
        path = self.path(kind, key)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, kind: str, key: str, record: dict) -> None:
        from moesd.io import write_json

        write_json(self.path(kind, key), record)


FAILURES = (RuntimeError, ValueError, MemoryError)  # what a point records as failed (torch's OOM is a RuntimeError)


def _free_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measured_together(measure) -> dict:
    """The points MEASURE takes in one go (key -> record: a model's batch sizes in common rounds,
    an e2e point's two modes taking turns), or none where it fails: each is then measured alone by
    run_point, and a failing one records its own error."""
    try:
        return measure()
    except FAILURES:
        _free_device_memory()
        return {}


def run_point(store: PointStore, kind: str, key_parts, measure, describe: dict) -> dict:
    """Measure a point unless stored whole; a failure is stored as the point's status and
    measured again on the next run (a transient out-of-memory, say), `attempts` counting the tries."""
    key = fingerprint(kind, PROTOCOL, key_parts)
    found = store.get(kind, key)
    if found is not None and found.get("status") == "ok":
        return found
    attempts = {"attempts": found.get("attempts", 1) + 1 if found else 1}
    try:
        result = measure()
        record = describe | result | {"status": "ok"} | attempts
    except FAILURES as error:
        _free_device_memory()
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        record = describe | {"seconds": [], "distinct_experts": [], "status": f"error: {last[:300]}"} | attempts
    store.put(kind, key, record)
    return record
