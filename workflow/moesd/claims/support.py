"""Each verdict's support: the share of resamples of its evidence that give the same verdict
(moesd.claims.verdicts.SUPPORT); below analysis.min_support a call reads inconclusive.

- The timing claims (RESAMPLED): the speedup stage's resamples (moesd.bootstrap) of the raw
  repeats (composed and end-to-end speedups) and of the end-to-end runs' decoded sequences (their
  sigma, C7's spread), every platform's together and analysis.compare_runs' with their own
  replicates.
- Eq. 8: the routing samples drawn with replacement (each with all its layers).
- C8: the held-out points' prediction errors drawn with replacement: a stated proxy for the
  held-out MAPE's noise (the fit itself is not refitted per resample).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from moesd.claims.catalogue import claim_c8, claim_eq8, evaluate_claims
from moesd.claims.evidence import Evidence
from moesd.claims.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, RESAMPLED, Claim
from moesd.speedup import COMPOSED_KEYS, E2E_KEYS

ROUTING_GROUPS = ["model", "inputs", "mode", "tokens"]  # one curve point of Fig. 1; its samples are the unit


def _conclude(claim: Claim, agree: int, n: int, min_support: float, what: str) -> None:
    """Set CLAIM's support (AGREE of N resamples of WHAT); below MIN_SUPPORT it reads inconclusive."""
    if not n or claim.verdict not in (REPRODUCED, NOT_REPRODUCED):
        return
    claim.support = agree / n
    if claim.support < min_support:
        claim.reason += (
            f"; inconclusive: {claim.verdict} in {claim.support:.0%} of {n} resamples of {what}, "
            f"below analysis.min_support {min_support:.0%}"
        )
        claim.verdict = INCONCLUSIVE


def add_support(
    claims: list[Claim], ev: Evidence, composed_reps, e2e_reps, min_support: float, compare_reps=None
) -> list[Claim]:
    """Each verdict's support (the module's docstring): the timing claims over the speedup
    stage's replicates (COMPOSED_REPS, E2E_REPS, COMPARE_REPS), Eq. 8 and C8 over
    analysis.bootstrap_resamples resamples of their own evidence (none: no support), drawn from
    independent streams of analysis.bootstrap_seed."""
    from moesd.bootstrap import replicate_tables, streams

    seed = ev.analysis.get("bootstrap_seed", 0)
    routing_seed, fit_seed = (np.random.default_rng(s) for s in streams(seed + 1, 2))
    n = 0
    if composed_reps is not None and not composed_reps.empty:

        def resampled(table, reps, keys):
            if reps is None or reps.empty or table.empty:
                return {}
            keys = keys + ["platform"] if "platform" in table and "platform" in reps else keys
            return dict(replicate_tables(table, reps, keys))

        e2e_by_replicate = resampled(ev.e2e, e2e_reps, E2E_KEYS)
        compare_by_replicate = resampled(ev.compare, compare_reps, COMPOSED_KEYS)
        agree = dict.fromkeys((c.claim for c in claims), 0)
        for replicate, composed in resampled(ev.composed, composed_reps, COMPOSED_KEYS).items():
            tables = {
                "e2e": e2e_by_replicate.get(replicate, ev.e2e),
                "compare": compare_by_replicate.get(replicate, ev.compare),
            }
            verdicts = {
                c.claim: c.verdict for c in evaluate_claims(dataclasses.replace(ev, composed=composed, **tables))
            }
            for c in claims:
                agree[c.claim] += verdicts[c.claim] == c.verdict
            n += 1
        for c in claims:
            if c.claim in RESAMPLED:
                _conclude(c, agree[c.claim], n, min_support, "the raw repeats and the decoded sequences")
    draws = ev.analysis.get("bootstrap_resamples", 0)
    by_name = {c.claim: c for c in claims}
    if "Eq. 8" in by_name and len(ev.routing) and "sample" in ev.routing:
        from moesd.bootstrap import group_resample

        agree = sum(
            claim_eq8(dataclasses.replace(ev, routing=group_resample(ev.routing, ROUTING_GROUPS, "sample", routing_seed)))
            .verdict == by_name["Eq. 8"].verdict
            for _ in range(draws)
        )  # fmt: skip
        _conclude(by_name["Eq. 8"], agree, draws, min_support, "the routing samples")
    if "C8" in by_name and len(ev.predictions) and "in_fit" in ev.predictions:
        agree = sum(claim_c8(_heldout_resample(ev, fit_seed)).verdict == by_name["C8"].verdict for _ in range(draws))
        _conclude(by_name["C8"], agree, draws, min_support, "the held-out points (a proxy: the fit is not redone)")
    return claims


def _heldout_resample(ev: Evidence, rng: np.random.Generator) -> Evidence:
    """EV with each fit's held-out MAPE recomputed over its held-out points drawn with replacement."""
    metrics = ev.metrics.copy()
    held = ev.predictions[~ev.predictions["in_fit"].astype(bool)]
    for i, row in metrics.iterrows():
        rows = held[(held["family"] == row["family"]) & (held["variant"] == row["variant"])]
        if rows.empty:
            continue
        errors = (rows["speedup_pred"] - rows["speedup"]).abs().to_numpy(float) / rows["speedup"].to_numpy(float)
        metrics.loc[i, "mape_heldout"] = float(errors[rng.integers(len(errors), size=len(errors))].mean() * 100)
    return dataclasses.replace(ev, metrics=metrics)
