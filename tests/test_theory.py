import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from moesd import theory

alphas = st.floats(min_value=1e-6, max_value=1 - 1e-6)
gammas = st.integers(min_value=1, max_value=12)


def test_sigma_known_values():
    # Eq. 5 by hand: alpha = 0.5, gamma = 2: (1 + 0.5 + 0.25) / 3
    assert math.isclose(theory.sigma_from_alpha(0.5, 2), 1.75 / 3)
    assert theory.sigma_from_alpha(1.0, 4) == 1.0
    assert math.isclose(theory.sigma_from_alpha(0.0, 4), 0.2)
    assert math.isclose(theory.mean_accepted_length(0.5, 2), 1.75)


def test_sigma_vectorised_shapes():
    out = theory.sigma_from_alpha(np.array([[0.1, 0.5, 0.9]]), np.array([[2], [4]]))
    assert out.shape == (2, 3)
    assert np.all(np.diff(out, axis=1) > 0)


@settings(max_examples=300, deadline=None)
@given(alphas, gammas)
def test_alpha_sigma_round_trip(alpha, gamma):
    sigma = theory.sigma_from_alpha(alpha, gamma)
    assert abs(theory.alpha_from_sigma(sigma, gamma) - alpha) < 1e-9


def test_alpha_from_sigma_outside_range_is_nan():
    assert math.isnan(theory.alpha_from_sigma(0.1, 4))  # below 1 / (gamma + 1)
    assert math.isnan(theory.alpha_from_sigma(1.2, 4))


def test_paper_alpha_from_table_sigma():
    # Eq. 5 applied to Table 2's sigma 0.90 at gamma 4 (Qwen2, HumanEval, T=0): alpha ~ 0.95
    assert abs(theory.alpha_from_sigma(0.90, 4) - 0.95) < 0.01


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 256), st.integers(1, 64), st.integers(1, 500))
def test_active_experts_monotone_and_bounded(e, k, t):
    k = min(k, e)
    n_t = theory.expected_active_experts(e, k, t)
    n_next = theory.expected_active_experts(e, k, t + 1)
    assert n_t <= e + 1e-9
    assert n_next >= n_t - 1e-12
    assert n_t >= min(k, e) - 1e-9  # one token activates K experts


def test_active_experts_values():
    assert theory.expected_active_experts(64, 8, 0) == 0
    assert math.isclose(theory.expected_active_experts(64, 8, 1), 8)
    assert math.isclose(theory.expected_active_experts(8, 2, 2), 8 * (1 - 0.75**2))
    assert theory.expected_active_experts(1, 1, 5) == 1  # dense


def test_saturation_tokens_reproduce_paper_table():
    # Eq. 9 evaluated at tau = 0.95 and 0.99 for the paper's models (derived, not printed in the paper)
    cases = {
        (8 / 64, 0.95): 23,
        (2 / 8, 0.95): 11,
        (6 / 64, 0.95): 31,
        (4 / 60, 0.95): 44,
        (8 / 64, 0.99): 35,
        (2 / 8, 0.99): 17,
        (6 / 64, 0.99): 47,
        (4 / 60, 0.99): 67,
    }
    for (rho, tau), expected in cases.items():
        assert theory.saturation_tokens(rho, tau) == expected
    sweep = theory.saturation_tokens(np.array([1, 2, 4, 8, 16, 32]) / 64, 0.95)
    assert list(sweep) == [191, 95, 47, 23, 11, 5]
    for rho in (0.01, 0.125, 0.4):
        t = theory.saturation_tokens(rho, 0.95)
        assert theory.expected_active_experts(1, rho, t) >= 0.95  # E = 1 normalises
        assert theory.expected_active_experts(1, rho, t - 1) < 0.95


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 400), st.floats(0.001, 0.999), st.floats(0.001, 0.999))
def test_tokens_per_expert_decreases_as_rho_decreases(t, r1, r2):
    # App. B: for T > 1, T_exp decreases as rho decreases
    lo, hi = sorted((r1, r2))
    if hi - lo < 1e-6:
        return
    assert theory.tokens_per_expert(t, lo) < theory.tokens_per_expert(t, hi)
    assert theory.monotonicity_f(t, lo) < 1  # Eq. 13
    assert theory.tokens_per_expert_drho(t, lo) > 0  # Eq. 12


def test_tokens_per_expert_limits():
    assert theory.tokens_per_expert(16, 1.0) == 16  # dense: every token in the one expert
    assert abs(theory.tokens_per_expert(16, 1e-9) - 1) < 1e-6
    # it is t K / N(t)
    e, k, t = 64, 8, 12
    assert math.isclose(theory.tokens_per_expert(t, k / e), t * k / theory.expected_active_experts(e, k, t))


@settings(max_examples=200, deadline=None)
@given(st.floats(1.0, 400.0), st.floats(1.0001, 2.0))
def test_roofline_g_continuity_and_slope(lam_rp, s):
    eps = 1e-6
    left, at, right = theory.roofline_g(np.array([lam_rp - eps, lam_rp, lam_rp + eps]), lam_rp, s)
    jump = 2 * math.log(s) * eps  # what a continuous function may move over eps
    assert math.isclose(left, at, rel_tol=jump) and math.isclose(right, at, rel_tol=jump)
    slope_left = (at - left) / eps
    slope_right = (right - at) / eps
    assert math.isclose(slope_left, slope_right, rel_tol=1e-3)  # C1 at the joint
    assert math.isclose(slope_right, math.log(s) * s**lam_rp, rel_tol=1e-3)
    # linear above the joint: equal increments
    g = theory.roofline_g(np.array([lam_rp + 1, lam_rp + 2, lam_rp + 3]), lam_rp, s)
    assert math.isclose(g[2] - g[1], g[1] - g[0], rel_tol=1e-9)
    assert math.isclose(theory.roofline_g(lam_rp / 2, lam_rp, s), s ** (lam_rp / 2))


def test_speedup_and_efficiency():
    # memory-bound ideal: verification costs a plain step, draft and rejection free
    assert math.isclose(theory.speedup(1.0, 1.0, 0.0, 0.0, 1.0, 4), 5.0)
    # Eq. 4 by hand
    value = theory.speedup(10.0, 15.0, 1.0, 0.5, 0.9, 4)
    assert math.isclose(value, 0.9 * 5 / (4 * 0.1 + 1.5 + 0.05))
    assert math.isclose(theory.target_efficiency(10.0, 15.0), 10 / 15)
    assert math.isclose(theory.ridge_point(312e12, 2.039e12), 153.0, rel_tol=1e-3)
