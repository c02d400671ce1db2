"""The rehearsal's hub: the miniatures of every checkpoint config/paper.yaml names
(workflow/scripts/miniatures.py) published on a local hub (tests/hub_server.py) under the
paper's repository names and revisions. tests/test_rehearsal.py starts it; by hand:

    python -m tests.rehearsal MINIATURES_DIR   # builds them if missing, serves until Ctrl-C

prints the HF_ENDPOINT to export before `snakemake ... --configfile config/paper.yaml
config/rehearsal.yaml` (docs/rehearsal.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from moesd.paths import REPO_ROOT

from .hub_server import LocalHub

BUILDER = REPO_ROOT / "workflow/scripts/miniatures.py"
HEX40 = set("0123456789abcdef")


def build_miniatures(out: Path) -> list[dict]:
    """Run the builder (a subprocess, as CI and a user run it); its listing."""
    if not (out / "repos.json").is_file():
        env = dict(os.environ) | {"PYTHONPATH": str(REPO_ROOT / "workflow")}
        done = subprocess.run([sys.executable, str(BUILDER), str(out)], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{BUILDER.name} failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "repos.json").read_text())


def publish_miniatures(hub: LocalHub, out: Path) -> dict[str, str]:
    """Every miniature on HUB at its revision (a pinned commit is published as that commit, with
    main pointing at it too); repository -> commit."""
    commits = {}
    for item in build_miniatures(out):
        files = {p.name: p.read_bytes() for p in sorted((out / item["folder"]).iterdir())}
        revision = item["revision"]
        pinned = revision if len(revision) == 40 and set(revision) <= HEX40 else None
        commits[item["repo"]] = hub.publish(item["repo"], files, commit=pinned)
    return commits


def main(argv: list[str]) -> int:
    import time

    if len(argv) != 1:
        print(__doc__)
        return 2
    with LocalHub() as hub:
        for repo, commit in publish_miniatures(hub, Path(argv[0])).items():
            print(f"{repo}: {commit}")
        print(f"export HF_ENDPOINT={hub.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
