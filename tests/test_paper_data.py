import numpy as np
import pandas as pd
from moesd.paths import PAPER_DIR
from moesd.theory import alpha_from_sigma


def test_tables_1_2_speedup_is_ratio():
    table = pd.read_csv(PAPER_DIR / "tables_1_2.csv")
    # Table 1: 8 rows x 3 gammas, Table 2: 12 rows x 3 gammas: 60 cells in all
    assert len(table) == 60
    assert table.groupby("table").size().to_dict() == {1: 24, 2: 36}
    assert np.all(np.abs(table["T_AR"] / table["T_SD"] - table["speedup"]) <= 0.006 + 1e-9)  # rounding to 2 decimals


def test_tables_sigma_inverts_to_alpha_in_unit_interval():
    table = pd.read_csv(PAPER_DIR / "tables_1_2.csv")
    alpha = alpha_from_sigma(table["sigma"].to_numpy(), table["gamma"].to_numpy())
    assert np.all((alpha > 0) & (alpha < 1))
    qwen = table[(table.model == "Qwen2") & (table.dataset == "humaneval") & (table.temperature == 0)]
    assert np.all(np.abs(alpha_from_sigma(qwen.sigma.to_numpy(), qwen.gamma.to_numpy()) - 0.95) < 0.03)


def test_headline_cell():
    table = pd.read_csv(PAPER_DIR / "tables_1_2.csv")
    best = table.loc[table["speedup"].idxmax()]
    assert (best.device, best.dataset, best.temperature, best.gamma, best.speedup) == (
        "2xH800",
        "humaneval",
        0.0,
        4,
        2.29,
    )
