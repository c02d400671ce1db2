"""What a verdict is: the four verdicts, a claim's record (statement, the paper's number, the
run's, verdict, reason, margin, support), one part of a verdict (a Check), and how the parts of a
claim conclude. The margin and the support are defined here, once (MARGIN, SUPPORT): the report,
the docs and the code's docstrings read these two texts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

REPRODUCED, NOT_REPRODUCED, NOT_MEASURABLE = "reproduced", "not reproduced", "not measurable"
INCONCLUSIVE = "inconclusive"  # the call changes when the raw repeats are resampled (support below min_support)


# claims whose evidence the timing resamples change (composed and end-to-end speedups, the
# end-to-end sigma); C8 and Eq. 8 are resampled over their own evidence (moesd.claims.support)
RESAMPLED = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C9", "C10")


MARGIN = (
    "how far the deciding comparison lies from its threshold: above zero by how much the weakest part holds, "
    "below zero how far the failing part misses (between two measured values, their ratio over "
    "1 + analysis.tolerance, minus one; against a fixed threshold such as a correlation or a relative error, "
    "the difference; both fractions)"
)
SUPPORT = (
    "the share of resamples of the verdict's evidence that give the same verdict: the latency stage's raw "
    "repeats (whole rounds), the acceptance stage's prompts and the end-to-end runs' decoded sequences for the "
    "speedup claims; the routing samples for Eq. 8; the held-out points' errors for C8's MAPE (a proxy: the fit "
    "is not redone); - where nothing was resampled. A reproduced or not-reproduced call with support below "
    "analysis.min_support reads inconclusive: it is inside the noise"
)


@dataclass
class Claim:
    claim: str
    statement: str
    paper: str
    run: str = ""
    verdict: str = NOT_MEASURABLE
    reason: str = ""
    figures: list[str] = field(default_factory=list)
    support: float = float("nan")  # SUPPORT
    margin: float = float("nan")  # MARGIN


class Check(NamedTuple):
    """One part of a verdict: whether it holds and its margin (MARGIN: > 0 holds, < 0 fails)."""

    ok: bool
    margin: float


def conclude(claim: Claim, parts: dict[str, Check]) -> None:
    """A claim of several parts is reproduced when every part holds; the reason lists them with
    their margins, and the claim's margin is the weakest holding part's (reproduced) or the worst
    failing part's (not reproduced)."""
    ok = all(part.ok for part in parts.values())
    claim.verdict = REPRODUCED if ok else NOT_REPRODUCED
    claim.margin = min(part.margin for part in parts.values() if part.ok == ok)
    claim.reason = "; ".join(
        f"{name}: {'yes' if part.ok else 'no'} (margin {part.margin:+.0%})" for name, part in parts.items()
    )
