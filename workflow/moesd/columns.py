"""The columns each of the run's tables must hold for the stages that read it, defined once.

A table handed to a command (a file the user names, or a stage's output read by the next stage)
is checked against its entry by moesd.io.read_table(path, kind): a table of the wrong kind, or
one written by an older version, stops with one line naming the file and the missing columns,
not with a KeyError deep in a figure. The lists hold what the readers use, not every column the
writers add.
"""

from __future__ import annotations

COMPOSED = [
    "model",
    "family",
    "spec",
    "K",
    "E",
    "B",
    "dataset",
    "temperature",
    "gamma",
    "sigma",
    "sigma_source",
    "speedup",
    "speedup_sigma_adjusted",
    "target_efficiency",
    "hardware",
    "ridge_point",
    "draft_spec",
]

E2E = [
    "name",
    "backend",
    "K",
    "K_native",
    "tensor_parallel_size",
    "target",
    "draft",
    "dataset",
    "temperature",
    "gamma",
    "batching",
    "B",
    "sigma",
    "speedup",
    "acceptance_source",
    "hardware",
]

LATENCY_TABLES = ("forward", "draft", "reject", "e2e")  # the latency stage's tables, of a slice or of all
# the values of one timed repeat (a round) in a latency table, drawn together when resampled
PER_REPEAT = ("seconds", "prefill_seconds", "switches", "steal")
# per point of a latency table, the summary of its repeats beside each repeat's row (moesd.latency.tables)
REPEAT_SUMMARY = ("mean_last5", "median", "q25", "q75", "spread", "remeasured")
# what differs between the s of one forward point, whose repeats were timed in the same rounds
ROUND_MEMBERS = ("s", "distinct_experts", "distinct_experts_mean", *REPEAT_SUMMARY)
# what differs between the points that took turns in the same rounds, by what a point's
# `rounds_with` names (moesd.latency.measure): "B=1,2,4" for a model's batch sizes in common rounds
# (latency.rounds.interleave), "mode=ar,sd" for an end-to-end point's AR and SD repeats
TURN_MEMBERS = {
    "B": ("B", "context_len", "attempts"),
    "mode": ("mode", "attempts", "tokens", "sigma", "accepted_sums", "accepted_rounds", "target_outputs"),
}

TABLES = {
    "composed": ("a composed speedups table of `moesd speedup`", COMPOSED),
    "e2e": ("an end-to-end speedups table of `moesd speedup`", E2E),
    "predictions": (
        "a predictions table of `moesd fit-run`",
        ["family", "variant", "K", "B", "gamma", "speedup", "speedup_pred", "in_fit"],
    ),
    "curves": ("a curves table of `moesd fit-run`", ["family", "variant", "K", "B", "gamma", "speedup_pred"]),
    "metrics": (
        "a metrics table of `moesd fit-run`",
        ["family", "variant", "m", "n", "mse_fit", "mse_all", "mape_heldout", "fit_seconds"],
    ),
    "routing": (
        "a routing table of `moesd routing`",
        ["model", "E", "K", "inputs", "mode", "tokens", "distinct_experts", "eq8", "implementation"],
    ),
}


# what a table's values must be, checked when a stage reads it (moesd.io.read_table): times finite
# and non-negative on measured rows, shares within [0, 1], and no setting twice (a damaged or
# truncated table is one line naming the file and the row, never a number)
VALUES = {
    "latency": {"times": ("seconds",), "optional_times": ("prefill_seconds",), "unique": None},  # unique: keys
    "acceptance": {
        "shares": ("sigma", "alpha"),
        "unique": ("target", "draft", "dataset", "temperature", "gamma", "backend", "platform"),
    },
}
TABLES["latency"] = (
    "a latency table of `moesd latency` (forward, draft, reject or e2e)",
    ["status", "repeat", "seconds"],
)
TABLES["acceptance"] = (
    "an acceptance summary of `moesd acceptance`",
    ["target", "draft", "dataset", "temperature", "gamma", "sigma", "alpha"],
)


def missing_columns(columns, kind: str) -> list[str]:
    """The columns a table of KIND (a key of TABLES) needs that COLUMNS lacks."""
    return [c for c in TABLES[kind][1] if c not in set(columns)]
