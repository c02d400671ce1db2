"""Speedups composed from latency tables (Eq. 2-5), measured e2e speedups, peaks, and the run's fit."""

import math

import pandas as pd
import pytest
from moesd.families import native
from moesd.fit import PARAM_NAMES, auto_stride, compute_speedup, model_curves
from moesd.models.spec import parse_spec
from moesd.speedup import compose, e2e_speedups, fit_measurements, peak_table, sigma_adjusted, sigma_table

SPEC = "arch:qwen2-57b-a14b:num_hidden_layers=2"


def _points(rows: list[dict], repeats=(1.0, 0.5, 3.0)) -> pd.DataFrame:
    """Long tables as the latency stage writes them: one row per repeat (median over the repeats:
    the row's `median`; mean: 1.5 times it), summaries repeated."""
    out = []
    for row in rows:
        for i, factor in enumerate(repeats):
            per_repeat = {k: row[k] * factor for k in ("prefill_seconds",) if k in row}
            out.append(
                row
                | per_repeat
                | {"repeat": i, "seconds": row["median"] * factor, "status": "ok", "mean_last5": row["median"] * 1.5}
            )
    return pd.DataFrame(out)


def latency_tables(t1=0.010, per_token=0.002, draft=0.001, reject=0.0001):
    forward = [
        {"model": "moe", "role": "target", "spec": f"{SPEC},num_experts_per_tok={k}", "K": k, "E": 64, "B": b, "s": s,
         "median": t1 + per_token * (s - 1) * b, "device": "cpu", "dtype": "float32", "expert_impl": "grouped_mm"}
        for k in (2, 8) for b in (1, 4) for s in range(1, 6)
    ]  # fmt: skip
    drafts = [
        {"model": "draft", "spec": "arch:qwen2-0.5b", "role": "draft", "B": b, "s": 1, "median": draft} for b in (1, 4)
    ]
    rejects = [{"B": b, "gamma": 4, "temperature": t, "median": reject} for b in (1, 4) for t in (0.0, 1.0)]
    return _points(forward), _points(drafts), _points(rejects)


def sigmas():
    summary = pd.DataFrame(
        [
            {
                "target": "t",
                "draft": "d",
                "dataset": "humaneval",
                "temperature": 0.0,
                "gamma": g,
                "sigma": 0.8,
                "alpha": 0.9,
            }
            for g in (2, 4)
        ]
    )
    return sigma_table(summary, "t", "d")


@pytest.mark.parametrize("verify_tokens, extra", [("gamma_plus_one", 1), ("gamma", 0)])
def test_compose_follows_eq4(verify_tokens, extra):
    forward, draft, reject = latency_tables()
    table = compose(forward, draft, reject, sigmas(), verify_tokens=verify_tokens)
    assert len(table) == 2 * 2 * 2  # K x B x gamma
    for row in table.itertuples():
        t1 = 0.010
        tv = 0.010 + 0.002 * (row.gamma + extra - 1) * row.B
        expected = 0.8 * (row.gamma + 1) * t1 / (row.gamma * 0.001 + tv + 0.0001)  # Eq. 4 with Eq. 5's S/R
        assert row.speedup == pytest.approx(expected)
        assert row.target_efficiency == pytest.approx(t1 / tv)
        assert row.t_ar / row.t_sd == pytest.approx(row.speedup)
        assert row.family == SPEC  # the K override stripped: one family
    assert set(table["statistic"]) == {"median"}


def test_compose_uses_the_chosen_statistic_and_drops_failed_points():
    forward, draft, reject = latency_tables()
    mean = compose(forward, draft, reject, sigmas(), statistic="mean_last5", verify_tokens="gamma_plus_one")
    median = compose(forward, draft, reject, sigmas(), verify_tokens="gamma_plus_one")
    assert mean["t_ar"].to_numpy() == pytest.approx(1.5 * median["t_ar"].to_numpy())
    failed = forward.assign(status=lambda f: f["status"].where(f["B"] != 4, "failed: out of memory"))
    assert set(compose(failed, draft, reject, sigmas(), verify_tokens="gamma_plus_one")["B"]) == {1}
    with pytest.raises(ValueError, match="analysis.statistic"):
        compose(forward, draft, reject, sigmas(), statistic="mean", verify_tokens="gamma_plus_one")


def test_each_target_composes_with_its_own_pairs_sigma():
    """A target with a pair of its own (same target spec, its declared draft's spec) takes that
    pair's measured sigma; every other target the sigma pair's; the sigma pair's resample leaves
    the own pair's sigma alone."""
    from moesd.speedup import own_pair_sigmas, sigma_resampled

    forward, draft, reject = latency_tables()
    dense = forward[forward["K"] == 8].assign(model="dense", spec="arch:opt-30b", K=1, E=1)
    forward = pd.concat([forward, dense], ignore_index=True)
    summary = pd.concat([sigmas().assign(target="t", draft="d"), sigmas().assign(target="arch:opt-30b",
                         draft="arch:qwen2-0.5b", sigma=0.5)], ignore_index=True)  # fmt: skip
    models = [{"name": "moe", "role": "target", "spec": SPEC, "draft": "draft"},
              {"name": "dense", "role": "target", "spec": "arch:opt-30b", "draft": "draft"},
              {"name": "draft", "role": "draft", "spec": "arch:qwen2-0.5b"}]  # fmt: skip
    pairs = [{"name": "sigma-pair", "target": "t", "draft": "d"},
             {"name": "dense-pair", "target": "arch:opt-30b", "draft": "arch:qwen2-0.5b"}]  # fmt: skip
    own = own_pair_sigmas(summary, models, pairs, pairs[0])
    assert set(own["model"]) == {"dense"} and set(own["sigma"]) == {0.5}
    table = compose(forward, draft, reject, pd.concat([sigmas(), own]), verify_tokens="gamma_plus_one")
    assert dict(table.groupby("model")["sigma"].agg(set)) == {"moe": {0.8}, "dense": {0.5}}
    assert dict(table["model"].value_counts()) == {"moe": 2 * 2 * 2, "dense": 2 * 2}  # each once: (K x) B x gamma
    resample = sigmas()[["dataset", "temperature", "gamma"]].assign(sigma=0.7)
    resampled = sigma_resampled(pd.concat([sigmas(), own], ignore_index=True), resample)
    assert set(resampled.loc[resampled["model"].isna(), "sigma"]) == {0.7}
    assert set(resampled.loc[resampled["model"] == "dense", "sigma"]) == {0.5}


def test_paper_sigma_without_acceptance_is_labelled():
    paper = sigma_table(None, None, None)
    assert set(paper["sigma_source"]) == {"paper Table 2 (Qwen2, 2xH800)"}
    row = paper[(paper["dataset"] == "humaneval") & (paper["temperature"] == 0) & (paper["gamma"] == 4)]
    assert row["sigma"].item() == pytest.approx(0.90)


def test_e2e_speedup_pairs_ar_and_sd_runs():
    rows = []
    for mode, seconds in (("ar", 2.0), ("sd", 1.0)):
        rows.append(
            {"name": "p", "backend": "ours", "K": 2, "K_native": 2, "tensor_parallel_size": 1, "target": "t", "draft": "d", "acceptance_source": "real",
             "dataset": "humaneval", "temperature": 0.0, "gamma": 4, "batching": "static", "B": 8, "mode": mode,
             "median": seconds, "tokens": 64, "sigma": 0.7 if mode == "sd" else None}
        )  # fmt: skip
    table = e2e_speedups(_points(rows), time="total")
    assert table["speedup"].item() == pytest.approx(2.0) and table["sigma"].item() == pytest.approx(0.7)
    continuous = [r | {"batching": "continuous", "tokens": 80 if r["mode"] == "sd" else 64} for r in rows]
    overshoot = e2e_speedups(_points(continuous), time="total")  # 80 SD tokens in 1 s: 64 in 0.8 s
    assert overshoot["t_sd"].item() == pytest.approx(0.8) and overshoot["speedup"].item() == pytest.approx(2.5)
    in_turn = e2e_speedups(_points([r | {"sequences": 32} for r in rows]), time="total")  # 4 batches of 8
    assert in_turn["t_ar"].item() == pytest.approx(0.5) and in_turn["speedup"].item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no prefill_seconds"):
        e2e_speedups(_points(rows))  # decode time needs the prefill recorded
    for row in rows:  # 0.5 s of each run is the prefill: decode 1.5 s against 0.5 s
        row["prefill_seconds"] = 0.5
    decode = e2e_speedups(_points(rows))
    assert decode["speedup"].item() == pytest.approx(3.0) and set(decode["e2e_time"]) == {"decode"}
    assert e2e_speedups(_points(rows), time="total")["speedup"].item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="analysis.e2e_time"):
        e2e_speedups(_points(rows), time="wall")
    copied = [r | {"prefill": "once"} for r in rows]  # latency.e2e.prefill once: the prefill a copy
    assert e2e_speedups(_points(copied))["speedup"].item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="latency.e2e.prefill: once .* analysis.e2e_time: total"):
        e2e_speedups(_points(copied), time="total")
    # two engines (or two K of a vLLM sweep) in one table: each AR run pairs with its own SD run
    vllm = [r | {"backend": "vllm", "median": r["median"] / 4} for r in rows]
    other_k = [r | {"backend": "vllm", "K": 1, "median": 1.0} for r in rows]
    both = e2e_speedups(_points(rows + vllm + other_k), time="total").set_index(["backend", "K"])["speedup"]
    assert both.to_dict() == pytest.approx({("ours", 2): 2.0, ("vllm", 2): 2.0, ("vllm", 1): 1.0})


def test_peak_table_reports_the_batch_size_of_the_peak():
    table = pd.DataFrame(
        {"model": "m", "B": [1, 8, 32], "speedup": [1.2, 1.9, 1.4], "t_ar": 1.0, "t_sd": 0.5, "sigma": 0.9}
    )
    peak = peak_table(table, ["model"])
    assert peak["B_peak"].item() == 8 and peak["speedup"].item() == 1.9


def test_sigma_adjustment_and_fit_measurements():
    forward, draft, reject = latency_tables()
    table = compose(forward, draft, reject, sigmas(), verify_tokens="gamma_plus_one")
    assert (sigma_adjusted(table, 8) == table["speedup"]).all()  # one sigma for every K: factor 1
    varied = table.assign(sigma=lambda f: f["sigma"].where(f["K"] == 8, 0.4))
    ratio = sigma_adjusted(varied, 8) / varied["speedup"]
    assert ratio[varied["K"] == 2].eq(2.0).all() and ratio[varied["K"] == 8].eq(1.0).all()
    families = fit_measurements(table, "humaneval", 0.0)
    assert list(families) == [SPEC] and len(families[SPEC]) == 8
    assert parse_spec(f"{SPEC},num_experts_per_tok=16").family == SPEC


@pytest.mark.parametrize("n, m", [(228, 21), (53, 18), (21, 11), (12, 12), (46, 23)])
def test_auto_stride_aims_at_the_papers_m(n, m):
    assert math.ceil(n / auto_stride(n)) == m


def test_auto_stride_needs_one_point_per_parameter():
    with pytest.raises(ValueError, match="at least 10"):
        auto_stride(9)


def test_model_curves_follow_the_fitted_model_on_a_dense_grid():
    forward, draft, reject = latency_tables()
    table = compose(forward, draft, reject, sigmas(), verify_tokens="gamma_plus_one")
    params = dict.fromkeys(PARAM_NAMES, 1e-3) | {"lam": 0.5, "s": 1.5}
    record = {"params": params, "ridge_point": 3.0, "variant": "eq4", "verify_tokens": "gamma_plus_one"}
    curves = model_curves(table, record, points=16)
    assert set(curves["K"]) == {2, 8} and set(curves["gamma"]) == {2, 4}
    assert curves["B"].min() == 1 and curves["B"].max() == 4 and len(curves) == 4 * curves["B"].nunique()
    row = curves[(curves["K"] == 8) & (curves["gamma"] == 4) & (curves["B"] == 4)].iloc[0]
    expected = compute_speedup(params, 4, 4, 8, 64, 0.8, 3.0, "eq4", "gamma_plus_one")
    assert row["speedup_pred"] == pytest.approx(float(expected))


def test_each_family_is_shown_at_its_own_reference_k():
    # Mixtral timed as itself (K = 2); Qwen2-57B timed only through its K sweep (K 2 and 8);
    # a dense model. Mixtral stays in at K = 2, Qwen2 at analysis.reference_k = 8.
    qwen, mixtral, opt = "arch:qwen2-57b-a14b", "arch:mixtral-8x7b", "arch:opt-30b"
    rows = [
        (mixtral, mixtral, "mixtral", 2, 8),
        (qwen, f"{qwen}:num_experts_per_tok=2", "qwen", 2, 64),
        (qwen, f"{qwen}:num_experts_per_tok=8", "qwen", 8, 64),
        (opt, opt, "opt", 1, 1),
    ]
    table = pd.DataFrame(
        [
            {"family": f, "spec": s, "model": m, "K": k, "E": e, "B": b, "speedup": 1.0 + k / 10, "sigma": 0.5 + k / 20}
            for f, s, m, k, e in rows
            for b in (1, 8)
        ]
    ).assign(dataset="humaneval", temperature=0.0, gamma=4)
    shown = native(table, 8)
    assert (
        sorted(zip(shown["model"], shown["K"], strict=True))
        == [("mixtral", 2)] * 2 + [("opt", 1)] * 2 + [("qwen", 8)] * 2
    )
    adjusted = sigma_adjusted(table, 8) / table["speedup"]
    # Qwen2 K = 2 is scaled to Qwen2 K = 8's sigma (0.9 / 0.6); Mixtral, at its own K, by 1
    assert adjusted[table["model"] == "mixtral"].eq(1.0).all()
    assert adjusted[(table["model"] == "qwen") & (table["K"] == 2)].round(9).eq(round(0.9 / 0.6, 9)).all()


def test_targets_are_composed_with_their_declared_draft_only():
    forward, draft, reject = latency_tables()
    other = draft.assign(model="other-draft", spec="arch:opt-350m", seconds=draft["seconds"] * 3)
    both = pd.concat([draft, other], ignore_index=True)
    every = compose(forward, both, reject, sigmas(), verify_tokens="gamma_plus_one")
    assert set(every["draft"]) == {"draft", "other-draft"}  # undeclared: every draft
    declared = compose(forward, both, reject, sigmas(), verify_tokens="gamma_plus_one", drafts_of={"moe": "draft"})
    assert set(declared["draft"]) == {"draft"} and len(declared) == len(every) // 2


def _simulated_e2e_sweep():
    """A roofline-simulated Qwen2-57B-A14B K sweep on 2xH800 as vLLM's end-to-end rows."""
    from moesd.simulate import roofline_sweep

    sim = roofline_sweep("qwen2-57b-a14b", "qwen2-0.5b", "2xH800", 0.9, [2, 4, 8, 16], [2, 4], [1, 4, 16, 32, 64, 100])
    return sim[["K", "gamma", "B", "speedup"]].assign(
        name="qwen2-k-sweep", backend="vllm", K_native=8, tensor_parallel_size=2, acceptance_source="real",
        target="hf:Qwen/Qwen2-57B-A14B-Instruct@main", draft="hf:Qwen/Qwen2-0.5B-Instruct@main", dataset="humaneval",
        temperature=0.0, sigma=0.9, dtype="bfloat16", hardware="H800", ridge_point=295.0, platform="2xH800",
        batching="continuous",
    )  # fmt: skip


@pytest.mark.slow  # two fits with their Table 3 analogs (about 5 s)
def test_fit_run_fits_the_end_to_end_k_sweep_beside_the_composed_families(tmp_path):
    """`moesd fit-run --e2e`: the run's composed families and, on the sweep platform's device
    (its env file, its GPUs), the real weights' end-to-end K sweep, in one params/metrics."""
    import json

    from moesd.cli import main

    e2e = _simulated_e2e_sweep()
    composed = e2e.assign(
        model="moe", family="arch:qwen2-57b-a14b", spec="arch:qwen2-57b-a14b", E=64, sigma_source="measured",
        speedup_sigma_adjusted=e2e["speedup"], target_efficiency=1.0, draft_spec="arch:qwen2-0.5b", platform="local",
    )  # fmt: skip
    composed.to_csv(tmp_path / "composed.csv", index=False)
    e2e.to_csv(tmp_path / "e2e.csv", index=False)
    probe = {"hardware_probe": {"device_name": "NVIDIA H800", "flops": 989.4e12, "bandwidth": 3.35e12}}
    for name in ("local", "2xH800"):
        (tmp_path / f"{name}.json").write_text(json.dumps(probe))
    (tmp_path / "analysis.json").write_text(json.dumps({"experiment": "x", "pairs": [], "fit": {"n_starts": 2}}))
    argv = ["fit-run", "--config", str(tmp_path / "analysis.json"), "--speedup", str(tmp_path / "composed.csv"),
            "--env", str(tmp_path / "local.json"), "--e2e", str(tmp_path / "e2e.csv"), "--platform-envs",
            str(tmp_path / "local.json"), str(tmp_path / "2xH800.json"), "--out", str(tmp_path / "fit"),
            "--tables", str(tmp_path / "tables")]  # fmt: skip
    assert main(argv) == 0
    metrics = pd.read_csv(tmp_path / "fit/metrics.csv")
    assert set(metrics["family"]) == {"moe", "qwen2-k-sweep"}
    params = json.loads((tmp_path / "fit/params.json").read_text())
    assert params["qwen2-k-sweep/eq4"]["target"] == "hf:Qwen/Qwen2-57B-A14B-Instruct@main"


def test_the_real_weights_end_to_end_k_sweep_is_fitted_as_fig4():
    """An end-to-end K sweep (vLLM's hf_overrides) read as a composed sweep: one entry at the most
    K values, vLLM first, sigma-adjusted at the target's own K; Algorithm 1 fits it on the
    platform's device (a roofline-simulated sweep stands in for the measurement: the model
    contains the roofline, so the fit is close)."""
    from moesd.config import validate_config
    from moesd.fit_families import fit_families
    from moesd.hardware import load_hardware
    from moesd.speedup import e2e_k_sweep

    e2e = _simulated_e2e_sweep()
    ours = e2e[e2e["K"] == 8].assign(backend="ours")  # one K: no sweep of our engine's
    sweep = e2e_k_sweep(pd.concat([ours, e2e], ignore_index=True))
    assert set(sweep["backend"]) == {"vllm"} and sorted(sweep["K"].unique()) == [2, 4, 8, 16]
    assert set(sweep["E"]) == {64} and set(sweep["family"]) == {"hf:Qwen/Qwen2-57B-A14B-Instruct@main"}
    assert sweep["speedup_sigma_adjusted"].to_numpy() == pytest.approx(sweep["speedup"].to_numpy())  # one sigma: none
    analysis = validate_config({})["analysis"] | {
        "fit_dataset": "humaneval",
        "fit_temperature": 0.0,
        "variants": ["eq4"],
    }
    fits = fit_families(
        sweep, load_hardware("H800", 2), analysis, validate_config({})["fit"] | {"n_starts": 2}, log=str
    )
    metrics = fits.tables()["metrics"]
    assert set(metrics["family"]) == {"qwen2-k-sweep"}
    assert metrics.loc[metrics["variant"] == "eq4", "mse_all"].item() < 0.05  # the printed variant cannot reach it
    assert e2e_k_sweep(ours).empty  # no K sweep end to end: nothing
    unowned = e2e_k_sweep(e2e[e2e["K"] != 8].assign(sigma=0.8))  # never at its own K: no sigma to adjust by
    assert unowned["speedup_sigma_adjusted"].to_numpy() == pytest.approx(unowned["speedup"].to_numpy())


def test_a_platform_of_components_only_or_of_end_to_end_only_composes_what_it_has():
    """config/paper.yaml times the components on one platform (the H200) and decodes end to end on
    others: each platform's speedups are what its rows allow, no error for what it lacks."""
    from moesd.config import validate_config
    from moesd.speedup import speedup_tables

    forward, draft, reject = latency_tables()
    e2e = _points(
        [{"name": "p", "backend": "vllm", "K": 2, "K_native": 2, "tensor_parallel_size": 2, "target": "t", "draft": "d",
          "acceptance_source": "real", "dataset": "humaneval", "temperature": 0.0, "gamma": 4, "batching": "static",
          "B": 8, "mode": mode, "median": seconds, "prefill_seconds": 0.5, "tokens": 64, "sigma": 0.7}
         for mode, seconds in (("ar", 2.0), ("sd", 1.0))]
    )  # fmt: skip
    analysis = validate_config({})["analysis"] | {"bootstrap_resamples": 3}
    empty = pd.DataFrame()
    components = {"forward": forward, "draft": draft, "reject": reject, "e2e": empty}
    composed, none, reps, _ = speedup_tables(components, sigmas(), None, None, None, analysis)
    assert len(composed) == 8 and none.empty and set(reps["replicate"]) == {0, 1, 2}
    decoded = {"forward": empty, "draft": empty, "reject": empty, "e2e": e2e}
    nothing, measured, none_reps, e2e_reps = speedup_tables(decoded, sigmas(), None, None, None, analysis)
    assert nothing.empty and none_reps.empty and measured["speedup"].item() == pytest.approx(3.0) and len(e2e_reps) == 3


def test_end_to_end_intervals_resample_the_prompts_too():
    """Our engine keeps each decoded sequence's accepted tokens: a resample draws the sequences as
    well as the repeats, so sigma gets an interval and the speedup's interval widens by the
    prompts' spread (the proxy: speedup proportional to sigma at one round time). A point whose
    sequences accept alike keeps its sigma in every resample."""
    from moesd.config import validate_config
    from moesd.speedup import speedup_tables

    rows = [
        {"name": n, "backend": "ours", "K": 2, "K_native": 2, "tensor_parallel_size": 1, "target": "t", "draft": "d",
         "acceptance_source": "real", "dataset": "humaneval", "temperature": 0.0, "gamma": 4, "batching": "static",
         "B": 8, "mode": mode, "median": seconds, "prefill_seconds": 0.0, "tokens": 64, "sigma": 0.6,
         "accepted_sums": sums if mode == "sd" else "", "accepted_rounds": "10;10;10;10" if mode == "sd" else ""}
        for n, sums in (("varied", "10;50;10;50"), ("alike", "30;30;30;30")) for mode, seconds in (("ar", 2.0), ("sd", 1.0))
    ]  # fmt: skip
    empty = pd.DataFrame()
    analysis = validate_config({})["analysis"] | {"bootstrap_resamples": 60}
    tables = {"forward": empty, "draft": empty, "reject": empty, "e2e": _points(rows, repeats=(1.0, 1.0, 1.0))}
    _, e2e, _, reps = speedup_tables(tables, sigmas(), None, None, None, analysis)
    by_name = e2e.set_index("name")
    assert by_name.loc["alike", "sigma_ci_low"] == by_name.loc["alike", "sigma_ci_high"] == pytest.approx(0.6)
    assert by_name.loc["alike", "speedup_ci_high"] == pytest.approx(2.0)  # equal repeats, equal sequences
    assert by_name.loc["varied", "sigma_ci_low"] < 0.5 and by_name.loc["varied", "sigma_ci_high"] > 0.7
    varied = reps[reps["name"] == "varied"]
    assert varied["speedup"].to_numpy() == pytest.approx(2.0 * varied["sigma"].to_numpy() / 0.6)
