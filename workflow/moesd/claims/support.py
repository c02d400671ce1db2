"""Each verdict's support: the share of resamples of the latency stage's raw repeats
(moesd.bootstrap) whose composed and end-to-end speedups give the same verdict
(moesd.claims.verdicts.SUPPORT); below analysis.min_support a call reads inconclusive.
"""

from __future__ import annotations

import dataclasses

from moesd.claims.catalogue import evaluate_claims
from moesd.claims.evidence import Evidence
from moesd.claims.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, RESAMPLED, Claim


def add_support(claims: list[Claim], ev: Evidence, composed_reps, e2e_reps, min_support: float) -> list[Claim]:
    """Each verdict's support: the share of resamples of the raw repeats (moesd.bootstrap) whose
    composed and end-to-end speedups give the same verdict. A reproduced or not-reproduced call
    with support below MIN_SUPPORT becomes inconclusive: it is inside the timing noise."""
    from moesd.bootstrap import replicate_tables
    from moesd.speedup import COMPOSED_KEYS, E2E_KEYS

    if composed_reps is None or composed_reps.empty:
        return claims
    e2e_by_replicate = (
        dict(replicate_tables(ev.e2e, e2e_reps, E2E_KEYS)) if e2e_reps is not None and len(e2e_reps) else {}
    )
    agree, n = dict.fromkeys((c.claim for c in claims), 0), 0
    for replicate, composed in replicate_tables(ev.composed, composed_reps, COMPOSED_KEYS):
        resampled = dataclasses.replace(ev, composed=composed, e2e=e2e_by_replicate.get(replicate, ev.e2e))
        verdicts = {c.claim: c.verdict for c in evaluate_claims(resampled)}
        for c in claims:
            agree[c.claim] += verdicts[c.claim] == c.verdict
        n += 1
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
