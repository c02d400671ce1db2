"""The claims report as Markdown: a table of every claim's verdict, margin and support, then a
section per claim with the paper's statement, the run's numbers and the reason.
"""

from __future__ import annotations

import math

import pandas as pd

from moesd.claims.verdicts import MARGIN, SUPPORT, Claim


def _support(claim: Claim) -> str:
    return "-" if math.isnan(claim.support) else f"{claim.support:.2f}"


def _margin(claim: Claim) -> str:
    return "-" if math.isnan(claim.margin) else f"{claim.margin:+.1%}"


def render(claims: list[Claim], title: str, missing: str = "") -> str:
    """The report's markdown; MISSING: a sentence on the latency points that failed and are left
    out ("" where none did)."""
    lines = [
        f"# Claims report: {title}",
        "",
        "Computed from this run's tables by `moesd claims`; not edited by hand.",
        "",
    ]
    counts = pd.Series([c.verdict for c in claims]).value_counts()
    lines += [
        ", ".join(f"{n} {v}" for v, n in counts.items()),
        "",
        f"Margin: {MARGIN}. Support: {SUPPORT}.",
        "",
        *([f"Missing points: {missing}", ""] if missing else []),
        "| claim | verdict | margin | support | this run |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {c.claim} | **{c.verdict}** | {_margin(c)} | {_support(c)} | {c.run.replace('|', '/')} |" for c in claims
    ]
    for c in claims:
        links = ", ".join(f"[{f}]({f})" for f in c.figures)
        lines += [
            "",
            f"## {c.claim}: {c.verdict}",
            "",
            f"- Paper: {c.statement} ({c.paper})",
            f"- This run: {c.run or '-'}",
            f"- Why: {c.reason}",
            f"- Margin: {_margin(c)}",
            f"- Support: {_support(c)}",
            f"- Figures: {links}",
        ]
    return "\n".join(lines) + "\n"
