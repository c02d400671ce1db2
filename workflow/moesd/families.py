"""The vocabulary every table reader shares: a model family (one base spec, its sparsity sweep's
K overrides included), the K each family is shown at, the rows that stand for each family, the
family of the sparsity sweep, and the acceptance setting a row was measured in. The speedup
stage, the fit, the figures and the claims all read rows through these."""

from __future__ import annotations

import pandas as pd

SETTING = ["dataset", "temperature", "gamma"]  # the acceptance setting of a row: sigma is measured per setting


def reference_ks(table: pd.DataFrame, reference_k: int) -> pd.Series:
    """Per model family, the K it is shown and compared at: the K of its rows measured without a
    K override (spec == family: Mixtral's 2, Qwen2-57B-A14B's 8), or REFERENCE_K
    (analysis.reference_k) for a family measured only through its K sweep."""
    own = table[table["spec"] == table["family"]].groupby("family")["K"].first()
    return pd.Series({family: int(own.get(family, reference_k)) for family in table["family"].unique()}, dtype=int)


def native(composed: pd.DataFrame, reference_k: int) -> pd.DataFrame:
    """Dense targets, and each MoE family at its own reference K (reference_ks; the sparsity
    sweep's other K left out), one model per family."""
    at_reference = composed["K"] == composed["family"].map(reference_ks(composed, reference_k))
    rows = composed[(composed["E"] == 1) | at_reference]
    first = rows.drop_duplicates("family")[["family", "model"]]
    return rows.merge(first, on=["family", "model"])


def sweep_family(table: pd.DataFrame) -> str:
    """The model family of the sparsity sweep: the one measured at the most K values."""
    return table.groupby("family")["K"].nunique().idxmax()


def one_platform(table: pd.DataFrame, preferred: str | None = None) -> pd.DataFrame:
    """TABLE's rows of one platform, for a reader of one device's curves (the fit, the figures,
    the claims about one model): PREFERRED (analysis.reference_platform) where it has rows, else
    the first platform in the table's order (the config's). A table without platforms is whole."""
    if "platform" not in table or table.empty:
        return table
    names = list(dict.fromkeys(table["platform"]))
    name = preferred if preferred in names else names[0]
    return table[table["platform"] == name]


def with_platform(table: pd.DataFrame) -> pd.DataFrame:
    """TABLE with a platform on every row: its own, else its hardware (a table of an older run,
    or rows concatenated with one that has no platform column)."""
    fallback = table["hardware"] if "hardware" in table else ""
    if "platform" not in table:
        return table.assign(platform=fallback)
    return table.assign(platform=table["platform"].fillna(fallback)) if table["platform"].isna().any() else table
