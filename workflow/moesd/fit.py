"""Algorithm 1 of the paper: the 10-parameter speedup model and its least-squares fit.

ComputeSpeedup(params, B, gamma, K, E, sigma) combines the roofline surrogate G (Eq. 11), the
activated experts N(t) (Eq. 8) and the tokens per expert T_exp (Eq. 10); the fit is
scipy.optimize.least_squares, method "trf", with the bounds of App. C.2, on a stride subset of
the measurements (App. C.3), evaluated on the held-out rest.

Two readings of Algorithm 1's line 11 (it and Eq. 4 disagree; docs/open_choices.md), chosen by `variant`:
    "eq4" (default): sigma (gamma+1) ar / (gamma draft + verify + reject), consistent with Eq. 4.
    "printed":       sigma (gamma+1) ar / (draft + ar + verify + reject), line 11 as printed.
The default is eq4: the printed form cannot exceed sigma (gamma+1) / 2 once verify >= ar, i.e.
2.25 at sigma = 0.90, gamma = 4, below the paper's own 2.29x (C1).
Tokens scored by the verification forward, `verify_tokens`: "gamma" (B gamma, as printed;
default) or "gamma_plus_one" (B (gamma+1), what a verifier that also scores the bonus
position processes).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from moesd.architectures import ParamCount
from moesd.hardware import Hardware
from moesd.paper import FIT_VARIANTS, PAPER_BATCH_SIZES, PAPER_K_VALUES, PAPER_M, TABLE3_STRIDES
from moesd.theory import expected_active_experts, roofline_g, verified_tokens

PARAM_NAMES = ("bias", "k1", "k2", "k3", "draft_bias", "draft_k", "reject_bias", "reject_k", "lam", "s")
TIME_PARAMS = PARAM_NAMES[:8]  # seconds; lam and s are dimensionless
VARIANTS = FIT_VARIANTS
REQUIRED_COLUMNS = ("B", "gamma", "K", "E", "sigma", "speedup")
SORT_KEYS = ["K", "gamma", "B"]  # App. C.3: sort by K, then gamma, then B


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _step_time(p, tokens, k, e, lam_rp):
    """Target forward time for `tokens` tokens through the router (Algorithm 1, lines 3-4, 6-7)."""
    n = expected_active_experts(e, k, tokens)  # Eq. 8
    per_expert = tokens * k / n  # Eq. 10: T_exp = t K / N
    return (
        p["bias"]
        + p["k1"] * roofline_g(tokens, lam_rp, p["s"])
        + p["k2"] * n
        + p["k3"] * roofline_g(per_expert, lam_rp, p["s"])
    )


def stage_times(params, B, gamma, K, E, ridge_point, verify_tokens="gamma"):
    """Algorithm 1's four stage times (ar, verify, draft, reject), broadcast over the inputs."""
    p = dict(zip(PARAM_NAMES, params, strict=True)) if not isinstance(params, dict) else params
    B, gamma, K, E = (np.asarray(x, float) for x in (B, gamma, K, E))
    lam_rp = p["lam"] * ridge_point
    ar = _step_time(p, B, K, E, lam_rp)  # AR step: B tokens
    verify = _step_time(p, B * verified_tokens(gamma, verify_tokens), K, E, lam_rp)
    draft = p["draft_bias"] + p["draft_k"] * roofline_g(B, lam_rp, p["s"])  # dense draft: roofline only
    reject = p["reject_bias"] + p["reject_k"] * B
    return ar, verify, draft, reject


def compute_speedup(params, B, gamma, K, E, sigma, ridge_point, variant="eq4", verify_tokens="gamma"):
    """ComputeSpeedup of Algorithm 1 (line 11 in the chosen variant)."""
    _check_choice("variant", variant, VARIANTS)
    ar, verify, draft, reject = stage_times(params, B, gamma, K, E, ridge_point, verify_tokens)
    gamma = np.asarray(gamma, float)
    tokens_per_round = np.asarray(sigma, float) * (gamma + 1)  # Eq. 5: S/R = sigma (gamma+1)
    if variant == "printed":
        return tokens_per_round * ar / (draft + ar + verify + reject)
    return tokens_per_round * ar / (gamma * draft + verify + reject)  # Eq. 4


def parameter_bounds(
    target: ParamCount,
    draft: ParamCount,
    hardware: Hardware,
    *,
    bytes_per_param: float = 2.0,
    dense_convention: str = "non_routed",
    bandwidth_scope: str = "aggregate",
    t_reject_max: float | None = None,
) -> dict[str, tuple[float, float]]:
    """App. C.2 bounds, in seconds for the time parameters.

    bias in [V_dense b / BW, 5x], k2 in [V_exp b / BW, 5x], draft_bias in [V_draft b / BW_1, 5x]
    (the draft on one device), k1 > 0, k3 >= 0, draft_k >= 0, reject_* in [0, T_rej],
    lambda in [0.2, 1], s in [1, 2]. T_rej is the largest measured rejection time; without
    one, the upper bound of bias (a rejection never costs a whole target step).
    """
    bw = hardware.target_bandwidth(bandwidth_scope)
    bias_lo = target.dense_params(dense_convention) * bytes_per_param / bw
    k2_lo = max(target.routed_expert_one, 1) * bytes_per_param / bw if target.is_moe else bias_lo * 1e-3
    draft_lo = draft.dense_params("non_routed") * bytes_per_param / hardware.bandwidth
    t_rej = t_reject_max if t_reject_max and t_reject_max > 0 else 5 * bias_lo
    return {
        "bias": (bias_lo, 5 * bias_lo),
        "k1": (0.0, np.inf),
        "k2": (k2_lo, 5 * k2_lo),
        "k3": (0.0, np.inf),
        "draft_bias": (draft_lo, 5 * draft_lo),
        "draft_k": (0.0, np.inf),
        "reject_bias": (0.0, t_rej),
        "reject_k": (0.0, t_rej),
        "lam": (0.2, 1.0),
        "s": (1.0, 2.0),
    }


@dataclass
class FitResult:
    params: dict[str, float]
    cost: float  # least_squares cost: 1/2 sum of squared residuals on the fit subset
    seconds: float
    n_starts: int
    nfev: int
    success: bool
    bounds: dict = field(default_factory=dict)


def _initial_guesses(bounds, ridge_point, n_starts, seed):
    """Deterministic starts: bounded parameters spread over their interval, the unbounded
    growth terms scaled so that k G(lambda RP) is a fraction of the fixed cost. (The paper does
    not state its initial guess.)"""
    rng = np.random.default_rng(seed)
    guesses = []
    for i in range(n_starts):
        u = 0.5 if i == 0 else rng.uniform(0.05, 0.95)
        x = {}
        for name in ("bias", "k2", "draft_bias", "reject_bias", "reject_k", "lam"):
            lo, hi = bounds[name]
            x[name] = lo + (0.5 if i == 0 else rng.uniform(0.05, 0.95)) * (hi - lo)
        x["reject_bias"] = min(x["reject_bias"], bounds["reject_bias"][1] * 0.1)
        x["reject_k"] = min(x["reject_k"], bounds["reject_k"][1] * 0.001)
        x["s"] = 1.0 + (0.02 if i == 0 else 10 ** rng.uniform(-3, -0.5))
        knee = x["s"] ** (x["lam"] * ridge_point)
        frac = 0.3 if i == 0 else 10 ** rng.uniform(-2, 0)
        x["k1"] = frac * bounds["bias"][0] / knee
        x["k3"] = frac * u * bounds["k2"][0] / knee
        x["draft_k"] = frac * bounds["draft_bias"][0] / knee
        guesses.append(np.array([x[n] for n in PARAM_NAMES]))
    return guesses


def fit_speedup_model(
    frame: pd.DataFrame,
    bounds: dict[str, tuple[float, float]],
    ridge_point: float,
    *,
    variant: str = "eq4",
    verify_tokens: str = "gamma",
    n_starts: int = 8,
    seed: int = 0,
    max_nfev: int = 100,
) -> FitResult:
    """argmin 1/2 sum_i (ComputeSpeedup(params, M_i) - M_i.speedup)^2 over the rows of FRAME.

    Time parameters are optimised in units of the bias lower bound (the speedup is invariant to
    a common time scale, so this only conditions the problem); the best of N_STARTS
    deterministic starts is kept. MAX_NFEV caps each start: near an exact fit trf crawls, and
    the cost has long stopped changing in the digits that matter (100 and 300 give the same
    held-out MAPE on the default run's tables, three times faster).
    """
    _check_choice("variant", variant, VARIANTS)
    if len(frame) < len(PARAM_NAMES):
        raise ValueError(f"the fit needs at least {len(PARAM_NAMES)} measurements, got {len(frame)}")
    unit = bounds["bias"][0] or 1.0
    scale = np.array([unit if n in TIME_PARAMS else 1.0 for n in PARAM_NAMES])
    lo = np.array([bounds[n][0] for n in PARAM_NAMES]) / scale
    hi = np.array([bounds[n][1] for n in PARAM_NAMES]) / scale
    cols = {c: frame[c].to_numpy(float) for c in REQUIRED_COLUMNS}

    def residuals(x):
        predicted = compute_speedup(
            x * scale,
            cols["B"],
            cols["gamma"],
            cols["K"],
            cols["E"],
            cols["sigma"],
            ridge_point,
            variant,
            verify_tokens,
        )
        return np.nan_to_num(predicted - cols["speedup"], nan=1e6, posinf=1e6, neginf=-1e6)

    start = time.perf_counter()
    best, nfev = None, 0
    for x0 in _initial_guesses(bounds, ridge_point, n_starts, seed):
        x0 = np.clip(x0 / scale, lo, hi)
        result = least_squares(residuals, x0, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=max_nfev)
        nfev += result.nfev
        if best is None or result.cost < best.cost:
            best = result
    seconds = time.perf_counter() - start
    params = {n: float(v) for n, v in zip(PARAM_NAMES, best.x * scale, strict=True)}
    return FitResult(params, float(best.cost), seconds, n_starts, nfev, bool(best.success), bounds)


def stride_subset(frame: pd.DataFrame, stride: int) -> pd.Series:
    """App. C.3: sort by K, gamma, B and take every stride-th row from 0; m = ceil(n / stride).

    Returns a boolean mask aligned with FRAME's index (True = used for fitting).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    order = frame.sort_values(SORT_KEYS, kind="stable").index
    mask = pd.Series(False, index=frame.index)
    mask.loc[order[::stride]] = True
    return mask


def evaluate(frame: pd.DataFrame, predicted: np.ndarray, in_fit: pd.Series) -> dict:
    """Fit quality: mean squared error on the fitting subset and on all rows (Table 3 of the paper
    does not state its "MSE"'s scale or points, so both are reported, with the sums), and the mean
    absolute percentage error of the predicted speedup on the held-out rows."""
    measured = frame["speedup"].to_numpy(float)
    err = predicted - measured
    fit = in_fit.to_numpy(bool)
    held = ~fit
    return {
        "m": int(fit.sum()),
        "n": len(frame),
        "mse_fit": float(np.mean(err[fit] ** 2)),
        "mse_all": float(np.mean(err**2)),
        "sse_fit": float(np.sum(err[fit] ** 2)),
        "sse_all": float(np.sum(err**2)),
        "mse_heldout": float(np.mean(err[held] ** 2)) if held.any() else float("nan"),
        "mape_heldout": float(np.mean(np.abs(err[held]) / measured[held]) * 100) if held.any() else float("nan"),
        "mape_all": float(np.mean(np.abs(err) / measured) * 100),
    }


def knee_tokens(ridge_point: float, bytes_per_param: float) -> float:
    """Tokens per weight matrix at which a forward turns compute-bound: M rows do 2 M flop per
    weight of b bytes, which passes the ridge point RP (Eq. 1, flop/byte) at M = RP b / 2.
    Algorithm 1's lambda RP reads RP as that token count, exact for the paper's 2-byte weights;
    fp32 weights (b = 4) double it."""
    return ridge_point * bytes_per_param / 2


def check_table(frame: pd.DataFrame, source: str = "table") -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)} (needs {', '.join(REQUIRED_COLUMNS)})")
    if frame.empty:
        raise ValueError(f"{source}: no rows")
    text = [c for c in REQUIRED_COLUMNS if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise ValueError(f"{source}: column(s) {', '.join(text)} hold non-numbers")
    bad = frame[list(REQUIRED_COLUMNS)].isna().any(axis=1) | (frame["speedup"] <= 0)
    if bad.any():
        raise ValueError(f"{source}: {int(bad.sum())} row(s) with missing values or speedup <= 0")
    ranges = {  # what each quantity can be (Eq. 2-5): counts are whole and positive, sigma in (0, 1]
        "B >= 1, whole": (frame["B"] >= 1) & (frame["B"] % 1 == 0),
        "gamma >= 1, whole": (frame["gamma"] >= 1) & (frame["gamma"] % 1 == 0),
        "1 <= K <= E, whole": (frame["K"] >= 1) & (frame["K"] <= frame["E"]) & (frame["K"] % 1 == 0),
        "0 < sigma <= 1": (frame["sigma"] > 0) & (frame["sigma"] <= 1),
        "finite speedup": np.isfinite(frame["speedup"]),
    }
    for rule, ok in ranges.items():
        if not ok.all():
            row = int(np.flatnonzero(~ok.to_numpy())[0])
            raise ValueError(f"{source}: row {row} breaks {rule} ({int((~ok).sum())} row(s) do)")


def run_fit(
    table: pd.DataFrame,
    target: ParamCount,
    draft: ParamCount,
    hardware: Hardware,
    *,
    stride: int = 11,
    variant: str = "eq4",
    verify_tokens: str = "gamma",
    dense_convention: str = "non_routed",
    bandwidth_scope: str = "aggregate",
    bytes_per_param: float = 2.0,
    n_starts: int = 8,
    seed: int = 0,
) -> tuple[dict, pd.DataFrame, dict]:
    """Fit on the stride subset of TABLE, predict every row: (params record, predictions, metrics)."""
    check_table(table)
    t_rej = float(table["t_reject"].max()) if "t_reject" in table.columns else None
    bounds = parameter_bounds(
        target,
        draft,
        hardware,
        bytes_per_param=bytes_per_param,
        dense_convention=dense_convention,
        bandwidth_scope=bandwidth_scope,
        t_reject_max=t_rej,
    )
    in_fit = stride_subset(table, stride)
    knee = knee_tokens(hardware.ridge_point, bytes_per_param)
    result = fit_speedup_model(
        table[in_fit],
        bounds,
        knee,
        variant=variant,
        verify_tokens=verify_tokens,
        n_starts=n_starts,
        seed=seed,
    )
    predicted = compute_speedup(
        result.params,
        table["B"],
        table["gamma"],
        table["K"],
        table["E"],
        table["sigma"],
        knee,
        variant,
        verify_tokens,
    )
    diverged = [name for name, value in result.params.items() if not np.isfinite(value)]
    if diverged or not np.isfinite(np.asarray(predicted, dtype=float)).all():
        what = f"parameter(s) {', '.join(diverged)}" if diverged else "predictions"
        raise ValueError(f"fit: {what} not finite numbers (the optimiser diverged); try more --n-starts")
    predictions = table.assign(speedup_pred=np.asarray(predicted), in_fit=in_fit.to_numpy())
    metrics = evaluate(table, np.asarray(predicted), in_fit) | {"fit_seconds": result.seconds, "stride": stride}
    record = {
        "params": result.params,
        "bounds": {k: list(v) for k, v in bounds.items()},
        "variant": variant,
        "verify_tokens": verify_tokens,
        "ridge_point": hardware.ridge_point,
        "ridge_tokens": knee,  # the RP Algorithm 1 reads, in tokens: knee_tokens(ridge_point, bytes_per_param)
        "hardware": {
            "name": hardware.name,
            "gpus": hardware.gpus,
            "source": hardware.source,
            "flops": hardware.flops,
            "bandwidth": hardware.bandwidth,
        },
        "target_experts": target.n_experts,
        "target_top_k": target.top_k,
        "dense_convention": dense_convention,
        "bandwidth_scope": bandwidth_scope,
        "bytes_per_param": bytes_per_param,
        "stride": stride,
        "m": int(in_fit.sum()),
        "cost": result.cost,
        "n_starts": n_starts,
        "nfev": result.nfev,
        "success": result.success,
        "seconds": result.seconds,
    }
    return record, predictions, metrics


def sparsity_grid(k_values=PAPER_K_VALUES, gammas=(2, 4), batch_sizes=PAPER_BATCH_SIZES, n_experts=64) -> pd.DataFrame:
    """The paper's sparsity-sweep design (App. C.2): K x gamma x B rows (6 x 2 x 19 = 228)."""
    rows = [(k, g, b) for k in k_values for g in gammas for b in batch_sizes]
    return pd.DataFrame(rows, columns=["K", "gamma", "B"]).assign(E=n_experts)


def fit_quality(table: pd.DataFrame, target, draft, hardware, strides=TABLE3_STRIDES, **options) -> pd.DataFrame:
    """Table 3 analog: fit on each stride subset, evaluate on all rows; one row per m.

    Strides whose subset has fewer points than parameters are skipped (as m >= 10 in the paper).
    """
    rows = []
    for stride in strides:
        in_fit = stride_subset(table, stride)
        if in_fit.sum() < len(PARAM_NAMES):
            continue
        _, _, metrics = run_fit(table, target, draft, hardware, stride=stride, **options)
        involved = sorted(table.loc[in_fit, "B"].unique())
        rows.append(metrics | {"batch_sizes_involved": " ".join(str(int(b)) for b in involved)})
    if not rows:
        largest = max(math.ceil(len(table) / s) for s in strides)
        raise ValueError(
            f"--strides {' '.join(map(str, strides))}: at most {largest} of {len(table)} rows to fit, and Algorithm 1 "
            f"needs {len(PARAM_NAMES)} (one per parameter); use smaller strides"
        )
    return pd.DataFrame(rows)


def auto_stride(n: int, strides=TABLE3_STRIDES, n_params: int = len(PARAM_NAMES)) -> int:
    """The Table 3 stride whose m = ceil(n / stride) is closest to the paper's 21 with m >= 10,
    preferring a subset that leaves points out (for the held-out error)."""
    usable = [s for s in strides if math.ceil(n / s) >= n_params]
    if not usable:
        raise ValueError(f"{n} measurements: Algorithm 1 needs at least {n_params} (one per parameter)")
    return min(usable, key=lambda s: (math.ceil(n / s) == n, abs(math.ceil(n / s) - PAPER_M), s))


def model_curves(table: pd.DataFrame, record: dict, points: int = 64) -> pd.DataFrame:
    """The fitted model on a dense batch-size grid per K and gamma (the lines of Fig. 4)."""
    grid = np.unique(np.geomspace(1, table["B"].max(), points).round())
    settings = table.groupby(["K", "gamma"], as_index=False).agg(E=("E", "first"), sigma=("sigma", "first"))
    curves = settings.merge(pd.DataFrame({"B": grid}), how="cross")
    curves["speedup_pred"] = compute_speedup(
        record["params"],
        curves["B"],
        curves["gamma"],
        curves["K"],
        curves["E"],
        curves["sigma"],
        record.get("ridge_tokens", record["ridge_point"]),
        record["variant"],
        record["verify_tokens"],
    )
    return curves
