import numpy as np
import pandas as pd
import pytest
from moesd.acceptance import alpha_mle, per_position, summarise
from moesd.theory import alpha_from_sigma, sigma_from_alpha


def truncated_geometric(alpha, gamma, n, seed=0):
    rng = np.random.default_rng(seed)
    draws = rng.random((n, gamma)) < alpha
    return np.cumprod(draws, axis=1).sum(axis=1)


@pytest.mark.parametrize("alpha", [0.2, 0.6, 0.95])
def test_alpha_estimators_recover_iid_alpha(alpha):
    gamma = 4
    n = truncated_geometric(alpha, gamma, 20000)
    assert abs(alpha_mle(n, gamma) - alpha) < 0.01
    sigma = np.mean(n + 1) / (gamma + 1)
    assert abs(sigma - sigma_from_alpha(alpha, gamma)) < 0.01
    assert abs(alpha_from_sigma(sigma, gamma) - alpha) < 0.02
    for i, rate in enumerate(per_position(n, gamma)):
        reached = np.sum(n >= i)
        assert abs(rate - alpha) < 4 * np.sqrt(alpha * (1 - alpha) / reached) + 1e-9


def test_summary_columns_and_values():
    rounds = pd.DataFrame(
        {
            "target": "t",
            "draft": "d",
            "dataset": "humaneval",
            "temperature": 0.0,
            "gamma": 2,
            "prompt_index": [0, 0, 1, 1],
            "round": [0, 1, 0, 1],
            "accepted": [2, 0, 1, 2],
        }
    )
    row = summarise(rounds).iloc[0]
    assert list(summarise(rounds).columns)[:5] == ["target", "draft", "dataset", "temperature", "gamma"]
    assert row.mean_accepted_length == pytest.approx((3 + 1 + 2 + 3) / 4)
    assert row.sigma == pytest.approx(row.mean_accepted_length / 3)
    assert row.alpha == pytest.approx(5 / (5 + 2))  # 5 successes, 2 rounds stopped by a rejection
    assert row.per_position_acceptance == "0.7500;0.6667"
    assert (row.n_rounds, row.n_prompts) == (4, 2)
