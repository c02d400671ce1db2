"""The Tables 1-2 analog: peaks per pair and setting, with the paper's cell beside each gamma."""

import pandas as pd
import pytest
from moesd.figures.tables import peak_tables


def test_peaks_stand_beside_the_papers_cells():
    rows = [
        {"model": "moe", "family": "f", "spec": "f", "K": 8, "E": 64, "draft": "d", "dataset": "humaneval",
         "temperature": 0.0, "gamma": g, "B": b, "t_ar": 0.01, "t_sd": 0.01 / s, "sigma": 0.8, "speedup": s}
        for g in (2, 4) for b, s in ((1, 1.2), (8, 1.9), (32, 1.4))
    ]  # fmt: skip
    columns = ["name", "backend", "K", "K_native", "draft", "dataset", "temperature", "gamma", "B", "t_ar", "t_sd"]
    e2e = pd.DataFrame(columns=[*columns, "sigma"])
    peaks, markdown = peak_tables(pd.DataFrame(rows), e2e.assign(speedup=[], e2e_time=[]), reference_k=8)
    assert list(peaks["B_peak"]) == [8, 8] and list(peaks["speedup"]) == [1.9, 1.9]
    header = next(line for line in markdown.splitlines() if line.startswith("| platform"))
    assert (
        header.index("model") < header.index("gamma = 2") < header.index("paper, gamma = 2") < header.index("gamma = 4")
    )
    row = next(line for line in markdown.splitlines() if "| moe" in line)
    assert "(B=8)" in row and "/ 0.90 / 2.29" in row  # the paper's 2xH800 HumanEval T=0 gamma 4 cell, 2.29x
    # a platform named as one of the paper's stands beside that platform's own cell, a row each
    both = pd.concat([pd.DataFrame(rows).assign(platform=name) for name in ("4xL40", "cpu")], ignore_index=True)
    _, markdown = peak_tables(both, e2e.assign(speedup=[], e2e_time=[], platform=[]), reference_k=8)
    lines = [line for line in markdown.splitlines() if "| moe" in line]
    assert len(lines) == 2 and lines[0].startswith("| 4xL40") and "/ 0.90 / 2.25" in lines[0]  # Table 2's 4xL40
    assert lines[1].startswith("| cpu") and "/ 0.90 / 2.29" in lines[1]  # no paper platform: the headline's


def test_each_engine_has_its_own_end_to_end_peaks():
    composed = pd.DataFrame(
        [{"model": "moe", "family": "f", "spec": "f", "K": 8, "E": 64, "draft": "d", "dataset": "humaneval",
          "temperature": 0.0, "gamma": 4, "B": 1, "t_ar": 0.01, "t_sd": 0.01, "sigma": 0.8, "speedup": 1.0}]
    )  # fmt: skip
    e2e = pd.DataFrame(
        [{"name": "p", "backend": backend, "K": k, "K_native": 8, "draft": "d", "dataset": "humaneval",
          "temperature": 0.0, "gamma": 4, "B": b, "t_ar": 0.01, "t_sd": 0.01 / s, "sigma": 0.8, "speedup": s,
          "e2e_time": "decode"}
         for backend, k, b, s in (("ours", 8, 4, 1.5), ("ours", 8, 16, 1.2), ("vllm", 8, 16, 2.0),
                                  ("vllm", 8, 4, 1.1), ("vllm", 1, 4, 9.0))]
    )  # fmt: skip
    peaks, markdown = peak_tables(composed, e2e, reference_k=8)
    by_source = peaks.set_index("source")
    assert by_source.loc["e2e ours", "B_peak"] == 4 and by_source.loc["e2e vllm", "B_peak"] == 16  # K=1 is Fig. 4's
    assert "## e2e ours" in markdown and "## e2e vllm" in markdown


def test_fig2_marks_the_papers_printed_peak():
    from moesd.figures.fig2_speedup import paper_peak

    assert paper_peak(4) == 2.29 and paper_peak(2) is not None  # Table 2, 2xH800, HumanEval, T = 0
    assert paper_peak(7) is None  # the paper printed gamma 2, 3 and 4 only


def test_fig4_shows_an_end_to_end_k_sweep_sigma_adjusted():
    from moesd.figures.fig4_sparsity import k_sweep_e2e, sparsity_fit_figure

    e2e = pd.DataFrame(
        [{"name": n, "backend": "vllm", "target": "hf:Q/q@c", "dataset": "humaneval", "temperature": t, "gamma": 4,
          "B": b, "K": k, "K_native": 8, "sigma": sigma, "speedup": s}
         for n in ("sweep", "plain") for t in (0.0, 1.0) for b in (1, 8)
         for k, sigma, s in (((8, 0.8, 2.0), (2, 0.4, 1.5)) if n == "sweep" else ((8, 0.8, 2.0),))]
    )  # fmt: skip
    swept = k_sweep_e2e(e2e, 0.0)
    assert set(swept["name"]) == {"sweep"} and set(swept["temperature"]) == {0.0}
    assert swept.set_index(["K", "B"])["speedup"].to_dict() == pytest.approx(
        {(8, 1): 2.0, (8, 8): 2.0, (2, 1): 3.0, (2, 8): 3.0}
    )
    predictions = pd.DataFrame(
        [
            {"K": k, "gamma": 4, "B": b, "speedup": 1.5, "speedup_pred": 1.4, "in_fit": True}
            for k in (2, 8)
            for b in (1, 8)
        ]
    )
    fig = sparsity_fit_figure(predictions, None, "caption", measured=swept)
    crosses = [c for ax in fig.axes for c in ax.collections if c.get_label() == "end to end, vllm"]
    assert len(crosses) == 2  # one per K panel


def test_figures_scale_to_the_point_estimates_and_mark_clipped_intervals():
    """One disturbed point's interval reaching 30x once set the axis and flattened every curve: the
    limits come from the point estimates, and a triangle marks each interval clipped at an edge."""
    from moesd.figures.style import band, error_bars, plt, scale_to_points

    rows = pd.DataFrame(
        {
            "B": [1, 2, 4],
            "speedup": [1.0, 1.2, 1.1],
            "speedup_ci_low": [0.95, 1.1, 0.01],
            "speedup_ci_high": [1.1, 30.0, 1.2],
        }
    )
    fig, (ax, other) = plt.subplots(1, 2)
    ax.plot(rows["B"], rows["speedup"])
    band(ax, rows, "B", "speedup", color="C0")
    bottom, top = scale_to_points(ax)
    assert top == pytest.approx(1.26) and bottom == pytest.approx(0.94) and ax.get_ylim() == (bottom, top)
    marks = {line.get_marker(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines[1:]}
    assert marks == {"^": ([2.0], [top]), "v": ([4.0], [bottom])}
    other.scatter(rows["B"], rows["speedup"])
    error_bars(other, rows, "B", "speedup", color="k")
    assert scale_to_points(other, bottom=0, top=2.0) == (0, 2.0)  # a fixed floor, a least top
    assert [line.get_marker() for line in other.lines] == ["^"]
    plt.close(fig)
