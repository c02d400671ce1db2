"""Benchmark: how much of a MoE target's measured target efficiency T_T(B, 1) / T_T(B, v) the
experts it reads explain (Sec. 2.3 and Eq. 8-9 of arXiv 2505.19645: a forward's time grows with
the distinct experts its tokens activate, and with its tokens). Fits T(B, s) = a + c N(B, s) +
e B s by least squares over every (B, s) of one model of a finished run, N the distinct experts
per layer the latency stage counted at each point, and prints the measured efficiency beside the
one the fit predicts:

    python workflow/scripts/explain_efficiency.py data/runs/default [--model moe] [--v 5]

A dip of the measured efficiency that the fit reproduces comes from the routing (the verify
forward's experts saturate while the AR step's still grow, over a fixed cost a), not from the
instrument; one it does not reproduce points at the instrument (a kernel switching paths, say).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder (data/runs/<experiment>)")
    parser.add_argument("--model", default="moe", help="a MoE target of latency.models (default: moe)")
    parser.add_argument("--v", type=int, default=5, help="tokens of the verify forward (gamma + 1; default 5)")
    args = parser.parse_args(argv)
    path = args.run / "latency" / "forward.csv"
    if not path.is_file():
        parser.error(f"{path}: no forward table (a finished run folder?)")
    table = pd.read_csv(path)
    rows = table[(table["model"] == args.model) & (table["status"] == "ok")]
    if "k_override" in rows:
        rows = rows[rows["k_override"].isna()]
    if rows.empty or rows["distinct_experts_mean"].isna().all():
        parser.error(f"{path}: no MoE model {args.model!r} with distinct-expert counts")
    points = rows.groupby(["B", "s"]).agg(
        seconds=("seconds", "median"), experts=("distinct_experts_mean", "first"), impl=("expert_impl", "first")
    )
    tokens = np.array([b * s for b, s in points.index], float)
    design = np.column_stack([np.ones(len(points)), points["experts"].to_numpy(float), tokens])
    (fixed, per_expert, per_token), *_ = np.linalg.lstsq(design, points["seconds"].to_numpy(float), rcond=None)
    points["fitted"] = design @ np.array([fixed, per_expert, per_token])
    error = (points["fitted"] / points["seconds"] - 1).abs()
    print(
        f"{args.model}: T = {fixed * 1e3:.2f} ms + {per_expert * 1e3:.3f} ms x distinct experts per layer + "
        f"{per_token * 1e3:.3f} ms x tokens (B s); fit within {error.median():.1%} (median), "
        f"{error.max():.1%} (worst) of {len(points)} points"
    )
    print("| B | path | experts at s=1 | experts at s=v | efficiency measured | efficiency from the experts |")
    print("|---|---|---|---|---|---|")
    for batch in sorted(points.index.get_level_values("B").unique()):
        one, verify = points.loc[(batch, 1)], points.loc[(batch, args.v)]
        print(
            f"| {batch} | {one['impl']} | {one['experts']:.1f} | {verify['experts']:.1f} | "
            f"{one['seconds'] / verify['seconds']:.3f} | {one['fitted'] / verify['fitted']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
