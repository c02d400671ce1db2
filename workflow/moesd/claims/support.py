"""Each verdict's support: the share of resamples of the latency stage's raw repeats
(moesd.bootstrap) whose composed and end-to-end speedups give the same verdict
(moesd.claims.verdicts.SUPPORT); below analysis.min_support a call reads inconclusive.
"""

from __future__ import annotations

import dataclasses

from moesd.claims.catalogue import evaluate_claims
from moesd.claims.evidence import Evidence
from moesd.claims.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, RESAMPLED, Claim
from moesd.speedup import COMPOSED_KEYS, E2E_KEYS


def add_support(
    claims: list[Claim], ev: Evidence, composed_reps, e2e_reps, min_support: float, compare_reps=None
) -> list[Claim]:
    """Each verdict's support: the share of resamples of the raw repeats (moesd.bootstrap) whose
    composed and end-to-end speedups give the same verdict, every platform's resampled together,
    and analysis.compare_runs' composed speedups with their own replicates (COMPARE_REPS) beside
    them. A reproduced or not-reproduced call with support below MIN_SUPPORT becomes
    inconclusive: it is inside the timing noise."""
    from moesd.bootstrap import replicate_tables

    if composed_reps is None or composed_reps.empty:
        return claims

    def resampled(table, reps, keys):
        if reps is None or reps.empty or table.empty:
            return {}
        keys = keys + ["platform"] if "platform" in table and "platform" in reps else keys
        return dict(replicate_tables(table, reps, keys))

    e2e_by_replicate = resampled(ev.e2e, e2e_reps, E2E_KEYS)
    compare_by_replicate = resampled(ev.compare, compare_reps, COMPOSED_KEYS)
    agree, n = dict.fromkeys((c.claim for c in claims), 0), 0
    for replicate, composed in resampled(ev.composed, composed_reps, COMPOSED_KEYS).items():
        tables = {
            "e2e": e2e_by_replicate.get(replicate, ev.e2e),
            "compare": compare_by_replicate.get(replicate, ev.compare),
        }
        verdicts = {c.claim: c.verdict for c in evaluate_claims(dataclasses.replace(ev, composed=composed, **tables))}
        for c in claims:
            agree[c.claim] += verdicts[c.claim] == c.verdict
        n += 1
    if not n:
        return claims
    for c in claims:
        if c.claim not in RESAMPLED or c.verdict not in (REPRODUCED, NOT_REPRODUCED):
            continue
        c.support = agree[c.claim] / n
        if c.support < min_support:
            c.reason += (
                f"; inconclusive: {c.verdict} in {c.support:.0%} of {n} resamples of the raw repeats, "
                f"below analysis.min_support {min_support:.0%}"
            )
            c.verdict = INCONCLUSIVE
    return claims
