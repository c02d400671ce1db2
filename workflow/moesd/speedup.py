"""Speedups composed from the latency stage's measured components (Eq. 2-4), and the measured
end-to-end speedups of the e2e table, as tidy tables the fit, the figures and the claims read.

Composed speedup (Eq. 3/4 with S/R = sigma (gamma + 1), Eq. 5):

    speedup = sigma (gamma + 1) T_T(B, 1) / (gamma T_D(B, 1) + T_T(B, v) + T_reject(B))

with v = gamma (the paper's Eq. 2) or gamma + 1 (what our engine and vLLM verify: the last
accepted token plus gamma drafts; `analysis.verify_tokens`). Target efficiency (Sec. 2.3) is
T_T(B, 1) / T_T(B, v). Per generated token, T_AR = T_T(B, 1) and
T_SD = (gamma T_D + T_T(B, v) + T_reject) / (sigma (gamma + 1)), so speedup = T_AR / T_SD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moesd.bootstrap import point_keys
from moesd.families import SETTING, reference_ks, with_platform
from moesd.models.spec import parse_spec
from moesd.paper import HEADLINE_DEVICE, HEADLINE_MODEL, headline_cells
from moesd.theory import verified_tokens

STATISTICS = ("median", "mean_last5")
COMPOSED_KEYS = ["model", "spec", "K", "draft", "dataset", "temperature", "gamma", "B"]  # one composed row
COMPOSED_VALUES = ["speedup", "target_efficiency", "speedup_sigma_adjusted"]  # what a resample changes
E2E_VALUES = ["speedup", "sigma"]  # an end-to-end resample: the repeats and the decoded sequences


def point_times(frame: pd.DataFrame, statistic: str, column: str = "seconds") -> pd.DataFrame:
    """One row per measured point with STATISTIC over its repeats of COLUMN as `seconds`; failed
    points are dropped (they stay in the stage's table with their status)."""
    if statistic not in STATISTICS:
        raise ValueError(f"analysis.statistic must be one of {STATISTICS}, got {statistic!r}")
    ok = frame[frame["status"] == "ok"].sort_values("repeat", kind="stable")
    values = ok.groupby(point_keys(ok, (column,)), dropna=False, sort=False)[column]
    stat = values.median() if statistic == "median" else values.agg(lambda v: v.iloc[-5:].mean())
    return stat.astype(float).rename("seconds").reset_index()


def sigma_resampled(sigmas: pd.DataFrame, resample: pd.DataFrame | None) -> pd.DataFrame:
    """SIGMAS (sigma_table) with sigma replaced by RESAMPLE's (bootstrap.sigma_replicates) where
    this pair's acceptance was measured; unchanged for the paper's sigma or without a resample."""
    if resample is None:
        return sigmas
    merged = sigmas.merge(resample.rename(columns={"sigma": "resampled"}), on=SETTING, how="left")
    if "model" in merged:  # a target's own pair's sigma (own_pair_sigmas) is not the resampled pair's
        merged.loc[merged["model"].notna(), "resampled"] = np.nan
    return merged.assign(sigma=merged["resampled"].fillna(merged["sigma"])).drop(columns="resampled")


def acceptance_settings(acceptance: dict) -> list[tuple]:
    """Every (dataset, temperature, gamma) the config's ACCEPTANCE section asks the acceptance
    stage to measure for each of our engine's pairs (its datasets under their files' names)."""
    from moesd.prompt_sets import dataset_name

    return [
        (dataset_name(d), float(t), int(g))
        for d in acceptance["datasets"]
        for t in acceptance["temperatures"]
        for g in acceptance["gammas"]
    ]


def check_settings(rows: pd.DataFrame, wanted: list[tuple] | None, what: str) -> None:
    """Every setting of WANTED among ROWS (an acceptance summary's rows of one pair), else a
    one-line error naming the first absent one: a summary that lost settings is not composed."""
    if not wanted:
        return
    have = set(
        zip(rows["dataset"].astype(str), rows["temperature"].astype(float), rows["gamma"].astype(int), strict=True)
    )
    absent = [setting for setting in wanted if setting not in have]
    if absent:
        dataset, temperature, gamma = absent[0]
        raise ValueError(
            f"{what}: no sigma at dataset {dataset}, temperature {temperature:g}, gamma {gamma}, which the config's "
            f"acceptance section asks for ({len(absent)} of {len(wanted)} settings absent); rerun the acceptance stage"
        )


def sigma_table(
    summary: pd.DataFrame | None, target: str | None, draft: str | None, wanted: list[tuple] | None = None
) -> pd.DataFrame:
    """sigma per (dataset, temperature, gamma): measured by the acceptance stage for one pair
    (every setting of WANTED, acceptance_settings), or, without one, the paper's Table 2 sigma
    (Qwen2 pair, 2xH800), labelled as such."""
    if summary is not None:
        rows = summary[(summary["target"] == target) & (summary["draft"] == draft)]
        if rows.empty:
            raise ValueError(f"acceptance summary: no rows for target {target!r}, draft {draft!r}")
        check_settings(rows, wanted, f"acceptance summary, target {target!r}, draft {draft!r}")
        out = rows[SETTING + ["sigma", "alpha"]].copy()
        out["sigma_source"] = f"measured ({target} / {draft})"
        return out.reset_index(drop=True)
    out = headline_cells()[SETTING + ["sigma"]].copy()
    out["alpha"] = np.nan
    out["sigma_source"] = f"paper Table 2 ({HEADLINE_MODEL}, {HEADLINE_DEVICE})"
    return out.reset_index(drop=True)


def own_pair_sigmas(
    summary: pd.DataFrame | None, models: list[dict], pairs: list[dict], skip: dict | None, wanted=None
):
    """sigma per setting of each latency target that has a pair of its own (latency.models
    MODELS; a draft-model pair of PAIRS with the target's spec and its declared draft's), other
    than SKIP (the sigma pair, whose sigma composes every other target), as sigma_table rows with
    a `model` column: each target's composed speedups take its own pair's measured acceptance
    (every setting of WANTED)."""
    if summary is None:
        return pd.DataFrame()
    specs = {entry["name"]: entry["spec"] for entry in models}
    tables = []
    for entry in models:
        draft = specs.get(entry.get("draft", ""))
        pair = next((p for p in pairs if p["target"] == entry["spec"] and p["draft"] == draft), None)
        if entry["role"] != "target" or pair is None or pair is skip:
            continue
        rows = summary[(summary["target"] == pair["target"]) & (summary["draft"] == pair["draft"])]
        if len(rows):
            tables.append(sigma_table(rows, pair["target"], pair["draft"], wanted).assign(model=entry["name"]))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def compose(
    forward: pd.DataFrame,
    draft: pd.DataFrame,
    reject: pd.DataFrame,
    sigmas: pd.DataFrame,
    *,
    statistic: str = "median",
    verify_tokens: str,
    drafts_of: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Every target with its draft x (dataset, temperature, gamma) x B the tables allow: Eq. 4.
    DRAFTS_OF maps each target's name to its draft's (latency.models' declared pairs,
    config.declared_drafts); without it every target is composed with every draft."""
    fwd = point_times(forward[forward["role"] == "target"], statistic)
    fwd["family"] = fwd["spec"].map(lambda spec: parse_spec(spec).family)  # K sweep: one family
    t1 = fwd[fwd["s"] == 1][["model", "family", "spec", "K", "E", "B", "device", "dtype", "expert_impl", "seconds"]]
    t1 = t1.rename(columns={"seconds": "t_target_1"})
    verify = fwd[["spec", "B", "s", "seconds"]].rename(columns={"seconds": "t_target_verify"})
    drafts = point_times(draft, statistic)
    drafts = drafts[drafts["s"] == 1][["model", "spec", "B", "seconds"]]
    drafts = drafts.rename(columns={"model": "draft", "spec": "draft_spec", "seconds": "t_draft"})
    rej = point_times(reject, statistic)
    rows = []
    for gamma, settings in sigmas.groupby("gamma"):
        s = verified_tokens(int(gamma), verify_tokens)
        part = t1.merge(verify[verify["s"] == s].drop(columns="s"), on=["spec", "B"]).merge(drafts, on="B")
        if drafts_of is not None:  # the declared pairs only: a target's speedup needs its own draft
            part = part[part["draft"] == part["model"].map(drafts_of)]
        own = set(settings["model"].dropna()) if "model" in settings else set()
        for setting in settings.to_dict("records"):
            # a sigma row of one target (its own pair's, own_pair_sigmas) composes that target only;
            # the others compose every target without one
            model = setting.pop("model", None)
            targets = part[part["model"] == model] if isinstance(model, str) else part[~part["model"].isin(own)]
            # T_reject was measured at gamma_max per temperature: the nearest measured gamma is
            # used (rejection sampling costs little next to a forward; an upper bound for smaller gamma).
            at_t = rej[rej["temperature"] == setting["temperature"]]
            if at_t.empty or targets.empty:
                continue
            g_rej = at_t["gamma"].iloc[(at_t["gamma"] - gamma).abs().argmin()]
            r = at_t[at_t["gamma"] == g_rej][["B", "seconds"]].rename(columns={"seconds": "t_reject"})
            rows.append(targets.merge(r, on="B").assign(**setting, verify_s=s))
    if not rows:
        raise ValueError("latency tables: no target / draft / reject point shares a batch size with another")
    table = pd.concat(rows, ignore_index=True)
    g = table["gamma"]
    table["t_sd_round"] = g * table["t_draft"] + table["t_target_verify"] + table["t_reject"]  # Eq. 2, per round
    table["target_efficiency"] = table["t_target_1"] / table["t_target_verify"]  # Sec. 2.3
    table["t_ar"] = table["t_target_1"]  # per generated token
    table["t_sd"] = table["t_sd_round"] / (table["sigma"] * (g + 1))  # Eq. 5: tokens per round = sigma (gamma+1)
    table["speedup"] = table["t_ar"] / table["t_sd"]  # Eq. 3/4
    table["statistic"] = statistic
    table["source"] = "composed"
    return table.sort_values(["model", "K", "draft", *SETTING, "B"], ignore_index=True)


E2E_TIMES = ("decode", "total")
# one e2e row: the engine (backend: ours or vllm), the target's K (a vLLM K sweep overrides it;
# K_native is its config's) and its tensor-parallel size included
E2E_KEYS = [
    "name", "backend", "K", "K_native", "tensor_parallel_size", "target", "draft", "acceptance_source", *SETTING,
    "batching", "B",
]  # fmt: skip


def e2e_speedups(e2e: pd.DataFrame, statistic: str = "median", time: str = "decode") -> pd.DataFrame:
    """Measured end-to-end speedup T_AR / T_SD per e2e pair, setting, batching and B (seconds per
    batch of B x max_new_tokens tokens: a point of `sequences` prompts decodes sequences / B
    batches; sigma as the SD run measured it). TIME decode leaves the prefill out, as Eq. 3's
    T_AR = S T_T(B, 1) does; total keeps it (`analysis.e2e_time`)."""
    if time not in E2E_TIMES:
        raise ValueError(f"analysis.e2e_time must be one of {E2E_TIMES}, got {time!r}")
    column = "seconds"
    if time == "total" and "prefill" in e2e and e2e["prefill"].eq("once").any():
        raise ValueError(
            "e2e table: points measured with latency.e2e.prefill: once (each generation starts from a copied "
            "cache, its prefill untimed) cannot give analysis.e2e_time: total; rerun the latency stage with prefill: each"
        )
    if time == "decode":
        if "prefill_seconds" not in e2e:
            raise ValueError(
                "e2e table: no prefill_seconds column (rerun the latency stage, or analysis.e2e_time: total)"
            )
        e2e, column = e2e.assign(decode_seconds=e2e["seconds"] - e2e["prefill_seconds"]), "decode_seconds"
    points = point_times(e2e, statistic, column)
    keys = E2E_KEYS + (["sequences"] if "sequences" in points else [])
    ar = points[points["mode"] == "ar"][keys + ["seconds", "tokens"]]
    per_sequence = [c for c in ("accepted_sums", "accepted_rounds") if c in points]  # sigma per prompt
    sd = points[points["mode"] == "sd"][keys + ["seconds", "tokens", "sigma", *per_sequence]]
    table = ar.rename(columns={"seconds": "t_ar", "tokens": "tokens_ar"}).merge(
        sd.rename(columns={"seconds": "t_sd", "tokens": "tokens_sd"}), on=keys
    )
    # continuous batching: SD's last round overshoots B x max_new_tokens by up to B gamma tokens,
    # so T_SD is rescaled to the AR run's token count (the same time per generated token)
    table["t_sd"] = table["t_sd"] * table["tokens_ar"] / table["tokens_sd"]
    if "sequences" in table:  # per batch, so that T_AR and T_SD read alike at every B
        batches = table["sequences"] / table["B"]
        table["t_ar"], table["t_sd"] = table["t_ar"] / batches, table["t_sd"] / batches
    table["speedup"] = table["t_ar"] / table["t_sd"]
    table["source"] = "e2e"
    table["statistic"] = statistic
    table["e2e_time"] = time
    return table.sort_values(["name", "backend", "K", *SETTING, "B"], ignore_index=True)


def peak_table(table: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """Tables 1-2 analog: per GROUP the row of the largest speedup over B, with T_AR, T_SD, sigma
    and the batch size of the peak (which the paper does not print)."""
    idx = table.groupby(group, dropna=False)["speedup"].idxmax()
    peaks = table.loc[idx, group + ["B", "t_ar", "t_sd", "sigma", "speedup"]]
    return peaks.rename(columns={"B": "B_peak"}).reset_index(drop=True)


def sigma_adjusted(table: pd.DataFrame, reference_k: int) -> pd.Series:
    """Fig. 4's sigma adjustment: speedup x sigma_(K=reference) / sigma_K per family and setting,
    so that the sparsity sweep compares K at one acceptance (a factor of 1 where every K shares
    one sigma, as when one measured pair's sigma composes every K; rows of a family without its
    reference K keep theirs)."""
    at_reference = table["K"] == table["family"].map(reference_ks(table, reference_k))
    keys = ["family", *SETTING]
    ref = table[at_reference].groupby(keys)["sigma"].first().rename("sigma_ref")
    joined = table.join(ref, on=keys)
    return table["speedup"] * (joined["sigma_ref"].fillna(table["sigma"]) / table["sigma"])


def fit_measurements(composed: pd.DataFrame, dataset: str, temperature: float) -> dict[str, pd.DataFrame]:
    """Algorithm 1's inputs per model family (one base spec; its K sweep included): B, gamma, K,
    E, sigma, speedup and t_reject (the bound of reject_*) at one dataset and temperature, on the
    gammas measured at every K of the family."""
    rows = composed[(composed["dataset"] == dataset) & (composed["temperature"] == temperature)]
    families = {}
    for family, part in rows.groupby("family", sort=False):
        per_k = part.groupby("K")["gamma"].agg(set)
        shared = set.intersection(*per_k)  # the sweep's gammas: those measured at every K
        families[family] = part[part["gamma"].isin(shared)].reset_index(drop=True)
    return {family: part for family, part in families.items() if not part.empty}


def speedup_tables(latency: dict, sigmas: pd.DataFrame, pair: dict | None, rounds, drafts_of: dict, analysis: dict):
    """The speedup stage's tables from the latency stage's (forward, draft, reject, e2e) and
    SIGMAS: composed speedups (Eq. 4, declared pairs only) and end-to-end ones, each with the
    intervals of analysis.bootstrap_resamples resamples (moesd.bootstrap) of the raw repeats and,
    where the acceptance stage measured PAIR's sigma, of its ROUNDS' prompts. Returns (composed,
    e2e, composed replicates, e2e replicates)."""
    from moesd.bootstrap import (
        kept_repeats,
        replicates,
        sequence_sigma_resample,
        sigma_replicates,
        streams,
        with_intervals,
    )

    def composed_of(forward, draft, reject, sigma_resample=None):
        table = compose(
            forward,
            draft,
            reject,
            sigma_resampled(sigmas, sigma_resample),
            statistic=analysis["statistic"],
            verify_tokens=analysis["verify_tokens"],
            drafts_of=drafts_of,
        )
        return table.assign(speedup_sigma_adjusted=sigma_adjusted(table, analysis["reference_k"]))

    def e2e_of(e2e):
        return e2e_speedups(e2e, analysis["statistic"], analysis["e2e_time"])

    # the repeats the statistic reads, alone: a resample of the mean of the last 5 draws from those 5
    latency = {name: kept_repeats(table, analysis["statistic"]) for name, table in latency.items()}
    components = {name: latency[name] for name in ("forward", "draft", "reject")}
    # a platform may measure only components (the paper's H200) or only end to end (its 2xA800)
    timed, decoded = len(latency["forward"]) > 0, len(latency["e2e"]) > 0
    composed = composed_of(**components) if timed else pd.DataFrame()
    e2e = e2e_of(latency["e2e"]) if decoded else pd.DataFrame()
    n, level = analysis["bootstrap_resamples"], analysis["confidence"]
    composed_seed, e2e_seed, sigma_seed, prompt_seed = streams(analysis["bootstrap_seed"], 4)  # independent
    prompt_rng = np.random.default_rng(prompt_seed)

    def e2e_with_prompts(e2e):
        """An end-to-end resample's speedups with its prompts resampled too: each SD point's sigma
        from its decoded sequences drawn with replacement, and its speedup scaled by the new sigma
        over the measured one (a stated proxy: T_SD counts sigma (gamma + 1) tokens a round, so
        at one round time the speedup is proportional to sigma; docs/timing.md)."""
        table = e2e_of(e2e)
        drawn = sequence_sigma_resample(table, prompt_rng)
        scale = (drawn["sigma"] / table["sigma"]).where(table["sigma"] > 0, 1.0).fillna(1.0)
        return drawn.assign(speedup=table["speedup"] * scale)

    if rounds is not None and pair is not None:  # sigma's own spread: this pair's prompts resampled
        rounds = rounds[(rounds["target"] == pair["target"]) & (rounds["draft"] == pair["draft"])]
    sigma_reps = sigma_replicates(rounds, SETTING, n, sigma_seed) if rounds is not None and len(rounds) else None
    extra = (lambda i: {"sigma_resample": sigma_reps[i]}) if sigma_reps else None
    composed_reps = (
        replicates(composed_of, components, COMPOSED_KEYS, COMPOSED_VALUES, n, composed_seed, extra)
        if timed
        else pd.DataFrame()
    )
    e2e_reps = replicates(
        e2e_with_prompts, {"e2e": latency["e2e"]}, E2E_KEYS, E2E_VALUES, n if len(e2e) else 0, e2e_seed
    )
    if n:
        composed = with_intervals(composed, composed_reps, COMPOSED_KEYS, COMPOSED_VALUES, level) if timed else composed
        e2e = with_intervals(e2e, e2e_reps, E2E_KEYS, E2E_VALUES, level) if len(e2e) else e2e
    return composed, e2e, composed_reps, e2e_reps


def e2e_k_sweep(e2e: pd.DataFrame) -> pd.DataFrame:
    """The real-weight end-to-end K sweep (Sec. 4.3: num_experts_per_tok overridden through vLLM's
    hf_overrides), in the composed table's columns so that the fit and the claims read it as they
    read a composed sweep: the e2e entry (on one platform, through one engine, vLLM first) measured
    at the most K values, at least two, with its own acceptance; speedup_sigma_adjusted scales
    each K's speedup by sigma at the target's own K over sigma at K (Fig. 4), where the sweep
    measured its own K. model: the entry's name, family: its target; empty where the run swept no
    K end to end."""
    from moesd.architectures import expert_count

    if e2e.empty:
        return pd.DataFrame()
    rows = e2e[e2e["acceptance_source"] == "real"]
    rows = with_platform(rows)
    sizes = rows.groupby(["platform", "name", "backend"], sort=False)["K"].nunique()
    sizes = sizes[sizes >= 2]
    if sizes.empty:
        return pd.DataFrame()
    order = sizes.reset_index().assign(vllm=lambda t: t["backend"] == "vllm")
    platform, name, backend = order.sort_values(["K", "vllm"], ascending=False, kind="stable").iloc[0][
        ["platform", "name", "backend"]
    ]
    part = rows[(rows["platform"] == platform) & (rows["name"] == name) & (rows["backend"] == backend)]
    config = parse_spec(part["target"].iloc[0]).known_config() or {}
    at_own = part[part["K"] == part["K_native"]].set_index([*SETTING, "B"])["sigma"]
    own = np.asarray(part.set_index([*SETTING, "B"]).index.map(at_own.get), dtype=float)
    sigma = part["sigma"].to_numpy(dtype=float)
    adjusted = part["speedup"] * np.where(np.isnan(own), sigma, own) / sigma  # unmeasured at its own K: as measured
    return part.assign(
        model=name, family=part["target"], spec=part["target"], E=expert_count(config) or 1, draft_spec=part["draft"],
        speedup_sigma_adjusted=adjusted, sigma_source="measured", target_efficiency=np.nan,
        ridge_point=part["ridge_point"] if "ridge_point" in part else np.nan,
    ).reset_index(drop=True)  # fmt: skip
