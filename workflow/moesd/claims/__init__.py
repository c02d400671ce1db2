"""The claims report: for each claim C1-C10 of the paper (arXiv 2505.19645, Sec. 1 and 4) and
Eq. 8, the paper's statement and number, this run's numbers and a verdict computed from the
run's tables: reproduced, not reproduced, inconclusive (inside the noise), or not measurable in
this experiment (with the reason).

    verdicts    the verdicts, a claim's record, MARGIN and SUPPORT (defined once)
    predicates  the shapes a verdict tests (rises then falls, grows, at least, ...)
    evidence    the tables and analysis settings the claims read
    catalogue   the claims themselves, C1-C10 and Eq. 8
    support     each verdict's support over resamples of the raw repeats
    render      the Markdown report

The names below are the package's interface.
"""

from moesd.claims.catalogue import CLAIMS, bound_context, evaluate_claims, sweep_shape
from moesd.claims.evidence import Evidence
from moesd.claims.predicates import grows, only_falls, rises_then_falls
from moesd.claims.render import render
from moesd.claims.support import add_support
from moesd.claims.verdicts import INCONCLUSIVE, MARGIN, NOT_MEASURABLE, NOT_REPRODUCED, REPRODUCED, SUPPORT, Claim

__all__ = [
    "CLAIMS",
    "INCONCLUSIVE",
    "MARGIN",
    "NOT_MEASURABLE",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "SUPPORT",
    "Claim",
    "Evidence",
    "add_support",
    "bound_context",
    "evaluate_claims",
    "grows",
    "only_falls",
    "render",
    "rises_then_falls",
    "sweep_shape",
]
