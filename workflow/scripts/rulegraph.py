"""The workflow's rule graph as a Mermaid flowchart, from `snakemake --rulegraph` (DOT), for
docs/architecture.md, which holds its output between the markers below (a test compares them):

    python workflow/scripts/rulegraph.py > /tmp/graph.md

Run from the repository root. The graph is the union of the default experiment's (the trained
pair), config/smoke.yaml's (the step profile) and config/paper.yaml's (hub models, vLLM): every
rule that does work appears. Edges are
sorted, so the same workflow gives the same text.
"""

from __future__ import annotations

import re
import subprocess
import sys

START, END = "<!-- rulegraph:start -->", "<!-- rulegraph:end -->"


def rulegraph_dot(args: list[str]) -> str:
    command = [sys.executable, "-m", "snakemake", "--rulegraph", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def edges(dot: str) -> set[tuple[str, str]]:
    """DOT's edges (A -> B) between its nodes' labels (N[label = "rule"])."""
    labels = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, re.M))
    return {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)}


def mermaid(pairs: set[tuple[str, str]]) -> str:
    """EDGES as a `flowchart LR` block between the markers (the target rule `all` left out: every
    final output flows into it)."""
    pairs = {(a, b) for a, b in pairs if b != "all"}
    lines = ["```mermaid", "flowchart LR"] + [f"    {a} --> {b}" for a, b in sorted(pairs)] + ["```"]
    return "\n".join([START, *lines, END])


def workflow_graph() -> str:
    """The Mermaid block of the default experiment's, the smoke's and config/paper.yaml's rule graphs."""
    graphs = [[], ["--configfile", "config/smoke.yaml"], ["--configfile", "config/paper.yaml"]]
    return mermaid(set().union(*(edges(rulegraph_dot(args)) for args in graphs)))


def main() -> int:
    print(workflow_graph())
    return 0


if __name__ == "__main__":
    sys.exit(main())
