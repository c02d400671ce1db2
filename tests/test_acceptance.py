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


def test_forced_acceptance_realises_the_measured_sigma():
    # per-position rates 0.95, 0.6, 0.6, 0.6 (gamma 4): rounds of n accepted drafts in proportion
    from moesd.latency.e2e import forced_alpha

    gamma, rates = 4, [0.95, 0.6, 0.6, 0.6]
    reach = np.cumprod([1.0, *rates])  # P(n >= i)
    p_n = [reach[i] - (reach[i + 1] if i < gamma else 0.0) for i in range(gamma + 1)]
    rounds = np.repeat(np.arange(gamma + 1), np.round(np.array(p_n) * 100000).astype(int))
    rows = pd.DataFrame(
        {"prompt_index": np.arange(len(rounds)) % 50, "round": 0, "accepted": rounds, "distinct_fraction": 1.0}
    ).assign(target="t", draft="d", dataset="humaneval", temperature=0.0, gamma=gamma)
    summary = summarise(rows)
    measured = float(summary["sigma"].iloc[0])
    assert measured == pytest.approx(0.614, abs=0.002)
    pair = {"name": "p", "target": "t", "draft": "d"}
    alpha = forced_alpha(summary, pair, {"dataset": "humaneval", "temperature": 0.0, "gamma": gamma})
    assert sigma_from_alpha(alpha, gamma) == pytest.approx(measured, abs=1e-6)  # Eq. 5 gives back the measured sigma
    mle = float(summary["alpha"].iloc[0])
    assert sigma_from_alpha(mle, gamma) < measured - 0.03  # forcing the MLE would accept less (0.579)


def test_vllm_counters_give_the_summary_of_the_rounds_they_count():
    """Per-position accepted counts (vLLM's counters) determine every summary estimator: the
    rounds rebuilt from them summarise exactly as the rounds themselves."""
    import numpy as np
    from moesd.acceptance import rounds_from_counters, summary_row

    rng = np.random.default_rng(0)
    n = np.minimum(rng.geometric(0.35, size=500) - 1, 4)  # accepted per round, gamma 4
    counters = [int((n >= i).sum()) for i in range(1, 5)]  # rounds whose i-th draft was accepted
    rebuilt = rounds_from_counters(float(len(n)), [float(c) for c in counters])
    assert sorted(rebuilt) == sorted(n)
    assert summary_row({}, rebuilt, 4, 10, 0.5) == summary_row({}, n, 4, 10, 0.5)
