"""The paper's theory, one function per equation (Eq. 1-14 of arXiv 2505.19645).

Every function is numpy-vectorised: scalars and arrays broadcast against each other and the
result has the broadcast shape (a 0-d array is returned as a Python float).

Symbols:
    alpha   per-token acceptance probability of a draft token (Leviathan et al.)
    sigma   tokens produced per round over the maximum gamma + 1 (Eq. 5)
    gamma   draft tokens proposed per round
    E, K    routed experts per layer, experts activated per token (top-K); rho = K / E
    t       tokens passing through a router in one forward (B for an AR step, B * gamma to verify)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "sigma_from_alpha",
    "alpha_from_sigma",
    "mean_accepted_length",
    "expected_active_experts",
    "saturation_tokens",
    "tokens_per_expert",
    "tokens_per_expert_drho",
    "monotonicity_f",
    "roofline_g",
    "speedup",
    "target_efficiency",
    "ridge_point",
    "VERIFY_TOKENS",
    "verified_tokens",
]

# Tokens per sequence the verification forward scores (the paper leaves it open,
# docs/open_choices.md): "gamma", as Eq. 2 and Algorithm 1 print it, or "gamma_plus_one", what
# our engine and vLLM verify (the last accepted token plus gamma drafts, so the bonus token is
# scored too). Configs choose: fit.verify_tokens (the paper's model) and analysis.verify_tokens
# (the run's composed speedups).
VERIFY_TOKENS = ("gamma", "gamma_plus_one")


def _out(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def _expected_tokens_per_round(alpha, gamma):
    """sum_{i=0}^{gamma} alpha^i = (1 - alpha^(gamma+1)) / (1 - alpha), stable at alpha -> 1."""
    alpha, gamma = np.broadcast_arrays(np.asarray(alpha, float), np.asarray(gamma, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_a = np.log(alpha)
        # -expm1(n log a) = 1 - a^n without cancellation near a = 1
        ratio = np.expm1((gamma + 1) * log_a) / np.expm1(log_a)
    return np.where(alpha == 1.0, gamma + 1, np.where(alpha == 0.0, 1.0, ratio))


def sigma_from_alpha(alpha, gamma):
    """Eq. 5: sigma = [(1 - alpha^(gamma+1)) / (1 - alpha)] / (gamma + 1).

    alpha in [0, 1]; sigma in [1 / (gamma + 1), 1].
    """
    return _out(_expected_tokens_per_round(alpha, gamma) / (np.asarray(gamma, float) + 1))


def alpha_from_sigma(sigma, gamma, *, iterations: int = 200):
    """Inverse of Eq. 5 (numeric): the alpha in [0, 1] whose sigma_from_alpha equals sigma.

    Eq. 5 is strictly increasing in alpha, so bisection converges to machine precision
    (200 halvings of [0, 1] reach the float64 spacing). sigma outside
    [1 / (gamma + 1), 1] has no solution and gives NaN.
    """
    sigma, gamma = np.broadcast_arrays(np.asarray(sigma, float), np.asarray(gamma, float))
    lo = np.zeros(sigma.shape)
    hi = np.ones(sigma.shape)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = sigma_from_alpha(mid, gamma) < sigma
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    alpha = 0.5 * (lo + hi)
    valid = (sigma >= 1.0 / (gamma + 1) - 1e-12) & (sigma <= 1.0 + 1e-12)
    return _out(np.where(valid, alpha, np.nan))


def mean_accepted_length(alpha, gamma):
    """Expected tokens per round including the bonus token: sigma * (gamma + 1) (Eq. 5)."""
    return _out(_expected_tokens_per_round(alpha, gamma))


def expected_active_experts(n_experts, top_k, n_tokens):
    """Eq. 8: N(t) = E * (1 - ((E - K) / E)^t), distinct experts hit by t i.i.d. tokens.

    (Eq. 6-7: N = E * Pr(X), Pr(X) = 1 - ((E - K)/E)^t.) A dense layer is E = K = 1: N = 1.
    """
    e = np.asarray(n_experts, float)
    k = np.asarray(top_k, float)
    t = np.asarray(n_tokens, float)
    return _out(e * (1 - ((e - k) / e) ** t))


def saturation_tokens(rho, tau=0.95):
    """Eq. 9: T_thres = ceil(log_(1-rho)(1 - tau)), tokens after which N(t) >= tau * E.

    rho = K / E in (0, 1]; a dense layer (rho = 1) saturates with one token.
    """
    rho = np.asarray(rho, float)
    tau = np.asarray(tau, float)
    with np.errstate(divide="ignore"):
        t = np.log1p(-tau) / np.log1p(-np.minimum(rho, 1.0))
    # guard against log ratios like 22.9999999 -> 23 that are exact integers in theory
    t = np.ceil(np.round(t, 9))
    return _out(np.where(rho >= 1.0, 1.0, np.maximum(t, 1.0)))


def tokens_per_expert(n_tokens, rho):
    """Eq. 10: average tokens per activated expert, T_exp(t; rho) = rho t / (1 - (1 - rho)^t).

    It is t * K / N(t). rho -> 0 gives 1 (every token its own expert); rho = 1 gives t (dense).
    """
    t = np.asarray(n_tokens, float)
    rho = np.asarray(rho, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = rho * t / -np.expm1(t * np.log1p(-np.minimum(rho, 1.0)))
    value = np.where(rho >= 1.0, t, value)
    return _out(np.where(rho <= 0.0, 1.0, value))


def tokens_per_expert_drho(n_tokens, rho):
    """Eq. 12: d T_exp / d rho = T (1 - F(rho; T)) / (1 - (1 - rho)^T)^2, with F of Eq. 13."""
    t = np.asarray(n_tokens, float)
    rho = np.asarray(rho, float)
    return _out(t * (1 - monotonicity_f(t, rho)) / (1 - (1 - rho) ** t) ** 2)


def monotonicity_f(n_tokens, rho):
    """Eq. 13: F(rho; T) = (1 - rho)^(T-1) (rho T + 1 - rho); F < 1 for T > 1 (Eq. 14)."""
    t = np.asarray(n_tokens, float)
    rho = np.asarray(rho, float)
    return _out((1 - rho) ** (t - 1) * (rho * t + 1 - rho))


def roofline_g(t, lam_rp, s):
    """Eq. 11: roofline surrogate G(t; lambda*RP, s).

    s^t for t <= lambda*RP, else its tangent s^(lambda*RP) (1 + ln(s) (t - lambda*RP)):
    exponential-like while memory-bound, linear once compute-bound, C1-continuous at the joint.
    """
    t = np.asarray(t, float)
    lam_rp = np.asarray(lam_rp, float)
    s = np.asarray(s, float)
    knee = np.power(s, lam_rp)
    below = np.power(s, np.minimum(t, lam_rp))
    above = knee * (1 + np.log(s) * (t - lam_rp))
    return _out(np.where(t <= lam_rp, below, above))


def speedup(t_target_1, t_target_gamma, t_draft_1, t_reject, sigma, gamma):
    """Eq. 3-4: T_AR / T_SD = sigma (gamma + 1) / [gamma T_D/T_T1 + T_Tg/T_T1 + T_rej/T_T1].

    Eq. 2: T_SD = R (gamma T_D(B,1) + T_T(B,gamma) + T_reject); T_AR = S T_T(B,1); S/R is
    sigma (gamma + 1) by Eq. 5. t_target_gamma is the verification forward, whatever number of
    tokens per sequence it scores (the engine scores gamma + 1).
    """
    t1 = np.asarray(t_target_1, float)
    tg = np.asarray(t_target_gamma, float)
    td = np.asarray(t_draft_1, float)
    tr = np.asarray(t_reject, float)
    gamma = np.asarray(gamma, float)
    denominator = gamma * td / t1 + tg / t1 + tr / t1
    return _out(np.asarray(sigma, float) * (gamma + 1) / denominator)


def target_efficiency(t_target_1, t_target_gamma):
    """Target efficiency T_T(B,1) / T_T(B,gamma) (§2.3), the reciprocal of Eq. 4's main term."""
    return _out(np.asarray(t_target_1, float) / np.asarray(t_target_gamma, float))


def ridge_point(peak_flops, bandwidth):
    """Eq. 1: RP = peak compute (FLOP/s) / peak memory bandwidth (byte/s), in FLOP/byte."""
    return _out(np.asarray(peak_flops, float) / np.asarray(bandwidth, float))


def verified_tokens(gamma, verify_tokens: str):
    """Tokens per sequence in one verification forward: gamma or gamma + 1 (VERIFY_TOKENS)."""
    if verify_tokens not in VERIFY_TOKENS:
        raise ValueError(f"verify_tokens must be one of {VERIFY_TOKENS}, got {verify_tokens!r}")
    return gamma + 1 if verify_tokens == "gamma_plus_one" else gamma
