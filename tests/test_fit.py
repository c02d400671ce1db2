import numpy as np
import pandas as pd
import pytest
from moesd.fit import (
    PARAM_NAMES,
    compute_speedup,
    evaluate,
    fit_speedup_model,
    parameter_bounds,
    run_fit,
    stage_times,
    stride_subset,
)
from moesd.paths import PAPER_DIR


def test_bounds_follow_app_c2(qwen_setup):
    """App. C.2: bias from V_dense b / BW, k2 from one routed expert's b / BW, draft_bias from the
    draft's weights over one GPU's bandwidth, each up to 5x; the target's over the group's
    aggregate bandwidth (2 GPUs: half of one GPU's time) or one GPU's, the draft's on one GPU in
    both scopes."""
    target, draft, hardware = qwen_setup["target"], qwen_setup["draft"], qwen_setup["hardware"]
    bounds = qwen_setup["bounds"]
    one_gpu = hardware.bandwidth
    assert bounds["bias"][0] == pytest.approx(target.dense_params("non_routed") * 2 / (2 * one_gpu))
    assert bounds["k2"][0] == pytest.approx(target.routed_expert_one * 2 / (2 * one_gpu))
    assert bounds["draft_bias"][0] == pytest.approx(draft.dense_params("non_routed") * 2 / one_gpu)
    for name in ("bias", "k2", "draft_bias"):
        assert bounds[name][1] == pytest.approx(5 * bounds[name][0]), name
    per_gpu = parameter_bounds(target, draft, hardware, bandwidth_scope="per_gpu")
    assert per_gpu["bias"][0] == pytest.approx(2 * bounds["bias"][0]) and per_gpu["draft_bias"] == bounds["draft_bias"]
    assert (bounds["lam"], bounds["s"]) == ((0.2, 1.0), (1.0, 2.0))
    assert parameter_bounds(target, draft, hardware, t_reject_max=0.003)["reject_k"] == (0.0, 0.003)
    for name in PARAM_NAMES:  # the synthetic fits below start from a point inside them
        lo, hi = bounds[name]
        assert lo <= qwen_setup["true"][name] <= hi, name


def test_fit_on_21_points_predicts_the_other_207(qwen_setup, synthetic_measurements):
    frame = synthetic_measurements
    in_fit = stride_subset(frame, 11)
    assert in_fit.sum() == 21 and len(frame) == 228
    result = fit_speedup_model(frame[in_fit], qwen_setup["bounds"], qwen_setup["rp"])
    predicted = compute_speedup(result.params, frame.B, frame.gamma, frame.K, frame.E, frame.sigma, qwen_setup["rp"])
    metrics = evaluate(frame, np.asarray(predicted), in_fit)
    assert metrics["m"] == 21
    assert metrics["mape_heldout"] < 2.0
    for name in PARAM_NAMES:  # the fit respects the bounds of App. C.2
        lo, hi = qwen_setup["bounds"][name]
        assert lo - 1e-12 <= result.params[name] <= hi + 1e-12


def test_fit_detects_a_wrong_model(qwen_setup, synthetic_measurements):
    """The printed variant cannot represent eq4-generated speedups well: the fit error must
    show it (guards against a metric that is small whatever the model)."""
    frame = synthetic_measurements
    in_fit = stride_subset(frame, 11)
    result = fit_speedup_model(frame[in_fit], qwen_setup["bounds"], qwen_setup["rp"], variant="printed", n_starts=4)
    predicted = compute_speedup(
        result.params, frame.B, frame.gamma, frame.K, frame.E, frame.sigma, qwen_setup["rp"], "printed"
    )
    assert evaluate(frame, np.asarray(predicted), in_fit)["mape_heldout"] > 5.0


def test_printed_variant_is_line_11_as_printed(qwen_setup):
    p, rp = qwen_setup["true"], qwen_setup["rp"]
    ar, verify, draft, reject = stage_times(p, 16, 4, 8, 64, rp)
    printed = compute_speedup(p, 16, 4, 8, 64, 0.9, rp, variant="printed")
    eq4 = compute_speedup(p, 16, 4, 8, 64, 0.9, rp, variant="eq4")
    assert np.isclose(printed, 0.9 * 5 * ar / (draft + ar + verify + reject))
    assert np.isclose(eq4, 0.9 * 5 * ar / (4 * draft + verify + reject))
    # the printed form is capped at sigma (gamma+1) / 2 once verify >= ar
    assert verify >= ar and printed <= 0.9 * 5 / 2


def test_verify_token_count_option(qwen_setup):
    p, rp = qwen_setup["true"], qwen_setup["rp"]
    _, v_gamma, _, _ = stage_times(p, 8, 4, 8, 64, rp, "gamma")
    ar_40, _, _, _ = stage_times(p, 40, 4, 8, 64, rp)
    _, v_plus, _, _ = stage_times(p, 8, 4, 8, 64, rp, "gamma_plus_one")
    assert np.isclose(v_plus, ar_40) and v_plus > v_gamma
    with pytest.raises(ValueError, match="verify_tokens"):
        stage_times(p, 8, 4, 8, 64, rp, "gamma_minus_one")


def test_stride_subsets_reproduce_table_3(paper_grid):
    table3 = pd.read_csv(PAPER_DIR / "table_3.csv")
    grid = paper_grid
    for row in table3.itertuples():
        mask = stride_subset(grid, row.stride)
        assert mask.sum() == row.m == int(np.ceil(228 / row.stride))
        involved = sorted(grid.loc[mask, "B"].unique())
        assert involved == [int(b) for b in row.batch_sizes_involved.split()], row.m


def test_stride_subset_of_m21_matches_paper_points(paper_grid):
    # App. C.3 of arXiv 2505.19645: the m = 21 points as (K-group, gamma index, B)
    expected = [
        (0, 0, 1),
        (0, 0, 40),
        (0, 1, 8),
        (0, 1, 52),
        (1, 0, 20),
        (1, 0, 80),
        (1, 1, 32),
        (2, 0, 2),
        (2, 0, 44),
        (2, 1, 12),
        (2, 1, 56),
        (3, 0, 24),
        (3, 0, 100),
        (3, 1, 36),
        (4, 0, 4),
        (4, 0, 48),
        (4, 1, 16),
        (4, 1, 60),
        (5, 0, 28),
        (5, 1, 1),
        (5, 1, 40),
    ]
    grid = paper_grid.sample(frac=1.0, random_state=0)  # order of the input must not matter
    chosen = grid[stride_subset(grid, 11)].sort_values(["K", "gamma", "B"])
    k_index = {k: i for i, k in enumerate(sorted(grid.K.unique()))}
    g_index = {g: i for i, g in enumerate(sorted(grid.gamma.unique()))}
    assert [(k_index[r.K], g_index[r.gamma], r.B) for r in chosen.itertuples()] == expected


def test_bounds_follow_appendix_c2(qwen_setup):
    b = qwen_setup["bounds"]
    hw, target = qwen_setup["hardware"], qwen_setup["target"]
    assert np.isclose(b["bias"][0], target.dense_params() * 2 / (2 * hw.bandwidth))  # 2 GPUs aggregate
    assert np.isclose(b["k2"][0], target.routed_expert_one * 2 / (2 * hw.bandwidth))
    assert np.isclose(b["draft_bias"][0], qwen_setup["draft"].total * 2 / hw.bandwidth)  # tied, one GPU
    for name in ("bias", "k2", "draft_bias"):
        assert np.isclose(b[name][1], 5 * b[name][0])
    assert b["lam"] == (0.2, 1.0) and b["s"] == (1.0, 2.0)
    per_gpu = parameter_bounds(target, qwen_setup["draft"], hw, bandwidth_scope="per_gpu", t_reject_max=0.01)
    assert np.isclose(per_gpu["bias"][0], 2 * b["bias"][0]) and per_gpu["reject_k"] == (0.0, 0.01)


def test_run_fit_outputs(qwen_setup, synthetic_measurements):
    frame = synthetic_measurements.assign(note="kept")
    record, predictions, metrics = run_fit(
        frame, qwen_setup["target"], qwen_setup["draft"], qwen_setup["hardware"], n_starts=2
    )
    assert set(record["params"]) == set(PARAM_NAMES)
    assert len(predictions) == 228 and predictions["in_fit"].sum() == 21 and "note" in predictions
    assert {"mse_fit", "mse_all", "mape_heldout"} <= set(metrics)


def test_run_fit_rejects_bad_tables(qwen_setup, paper_grid):
    with pytest.raises(ValueError, match="missing column"):
        run_fit(pd.DataFrame({"B": [1]}), qwen_setup["target"], qwen_setup["draft"], qwen_setup["hardware"])
    frame = paper_grid.assign(speedup=1.5).head(5)
    with pytest.raises(ValueError, match="at least 10"):
        run_fit(frame, qwen_setup["target"], qwen_setup["draft"], qwen_setup["hardware"], stride=1)


def test_the_knee_counts_tokens_for_the_weights_bytes(qwen_setup, synthetic_measurements):
    # 4-byte weights turn compute-bound at twice the rows of 2-byte ones (Eq. 1: M = RP b / 2)
    from moesd.fit import knee_tokens

    assert knee_tokens(100.0, 2.0) == 100.0 and knee_tokens(100.0, 4.0) == 200.0
    frame = synthetic_measurements
    args = (frame, qwen_setup["target"], qwen_setup["draft"], qwen_setup["hardware"])
    record, predictions, _ = run_fit(*args, n_starts=1, bytes_per_param=4.0)
    rp = qwen_setup["hardware"].ridge_point
    assert record["ridge_point"] == rp and record["ridge_tokens"] == 2 * rp
    again = compute_speedup(record["params"], frame.B, frame.gamma, frame.K, frame.E, frame.sigma, 2 * rp)
    assert np.allclose(predictions["speedup_pred"], again)
