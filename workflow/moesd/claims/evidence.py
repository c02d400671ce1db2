"""The evidence the claims read: the run's tables (composed and end-to-end speedups, the fit's
metrics and predictions, routing counts, other runs' composed speedups) and the validated
analysis settings, with the selections every claim shares (measured acceptance only, our
engine's end-to-end rows, a family at its reference K, a curve over B at the fit setting). A run
on several platforms keeps each table whole (C1-C3 and C9 compare the platforms); the claims
about one device's curves read the reference platform's rows (ref_composed, ref_e2e).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from moesd.columns import COMPOSED, E2E, TABLES
from moesd.families import native, one_platform


@dataclass
class Evidence:
    """The run's tables the verdicts read (any may be empty) and the validated config's analysis
    section, where every setting and threshold a verdict reads is defined once (its keys and
    defaults: the schema)."""

    composed: pd.DataFrame
    e2e: pd.DataFrame
    metrics: pd.DataFrame
    predictions: pd.DataFrame
    routing: pd.DataFrame
    analysis: dict  # config["analysis"], validated: fit_dataset and fit_temperature resolved
    compare: pd.DataFrame = field(default_factory=pd.DataFrame)  # other runs' composed speedups (C9)
    # what several claims read alike (native()'s rows, C1-C3's peaks): None computes it at each
    # call; sharing() gives a copy that keeps each for the one evaluation it serves
    _shared: dict | None = field(default=None, init=False, repr=False, compare=False)

    COLUMNS = {  # what the verdicts read; an absent table is an empty one with these columns
        "composed": COMPOSED,
        "compare": COMPOSED,  # other runs' composed speedups
        "e2e": E2E,
        **{name: TABLES[name][1] for name in ("metrics", "predictions", "routing")},
    }

    def __post_init__(self):
        for name, columns in self.COLUMNS.items():
            if getattr(self, name).empty:
                setattr(self, name, pd.DataFrame(columns=columns))

    @property
    def ref_composed(self) -> pd.DataFrame:
        """The composed speedups of the reference platform (analysis.reference_platform; one_platform)."""
        return one_platform(self.composed, self.analysis.get("reference_platform"))

    @property
    def ref_e2e(self) -> pd.DataFrame:
        """The end-to-end speedups of the reference platform (else of the first that has any)."""
        return one_platform(self.e2e, self.analysis.get("reference_platform"))

    @property
    def dataset(self) -> str:
        """analysis.fit_dataset: the acceptance setting the shape claims read."""
        return self.analysis["fit_dataset"]

    @property
    def temperature(self) -> float:
        """analysis.fit_temperature."""
        return self.analysis["fit_temperature"]

    @property
    def reference_k(self) -> int:
        """analysis.reference_k: the K a MoE family measured only through its sweep is shown at."""
        return self.analysis["reference_k"]

    def measured_acceptance(self, table: pd.DataFrame, source: str) -> pd.DataFrame:
        """The rows whose acceptance was measured in this run: composed rows whose sigma is not the
        paper's (sigma_source), end-to-end rows decoded with the target's own acceptance rule (not
        forced). A claim about acceptance, or about the paper's numbers, rests on these alone."""
        if source == "e2e":
            return table[table["acceptance_source"] == "real"]
        return table[~table["sigma_source"].fillna("").str.startswith("paper")]

    def ours_e2e(self) -> pd.DataFrame:
        """End-to-end rows of our engine, the one whose components the composed speedups rest on
        (a claim that sets e2e beside them compares like with like)."""
        return self.ref_e2e[self.ref_e2e["backend"] == "ours"]

    def sharing(self) -> Evidence:
        """This evidence (the very same tables) with shared() keeping what it computes: for one
        evaluation of the claims, over which no table changes (what it kept would not see it)."""
        copy = replace(self)
        copy._shared = {}
        return copy

    def shared(self, key, compute):
        """COMPUTE(), once per KEY where sharing() made this evidence, else at every call."""
        if self._shared is None:
            return compute()
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def native(self, every_platform: bool = False) -> pd.DataFrame:
        """moesd.families.native of the reference platform's composed rows (EVERY_PLATFORM: of all)."""
        table = self.composed if every_platform else self.ref_composed
        return self.shared(("native", every_platform), lambda: native(table, self.reference_k))

    def moe(self, every_platform: bool = False) -> pd.DataFrame:
        """The reference MoE target at its reference K (analysis.reference_target: the paper's
        Qwen2 pair where the run times it), the curve the single-model claims read, on the
        reference platform (EVERY_PLATFORM: on each); empty where the run timed none (its claims
        then read not measurable)."""
        rows = self.native(every_platform)
        return rows[(rows["model"] == self.analysis.get("reference_target")) & (rows["E"] > 1)]

    def dense(self) -> pd.DataFrame:
        """A dense target (the first by name: the paper's claims compare the MoE with any dense one)."""
        rows = self.native()
        rows = rows[rows["E"] == 1]
        return rows[rows["model"] == rows["model"].iloc[0]] if len(rows) else rows

    def moe_families(self) -> dict[str, pd.DataFrame]:
        """Every MoE family the run measured, each at its reference K: model -> its rows."""
        rows = self.native()
        rows = rows[rows["E"] > 1]
        return {model: part for model, part in rows.groupby("model", sort=True)}

    def curve(self, table: pd.DataFrame, column: str = "speedup") -> pd.Series:
        """COLUMN against B at the fit setting (dataset, temperature) and its largest gamma."""
        rows = table[(table["dataset"] == self.dataset) & (table["temperature"] == self.temperature)]
        if rows.empty:
            return pd.Series(dtype=float)
        rows = rows[rows["gamma"] == rows["gamma"].max()]
        return rows.drop_duplicates("B").set_index("B")[column].sort_index()


def fmt_curve(series: pd.Series) -> str:
    return ", ".join(f"B={int(b)}: {v:.2f}" for b, v in series.items())
