import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from moesd.cli import main
from moesd.models.spec import ModelSpec


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fit_writes_params_predictions_metrics(tmp_path, capsys, synthetic_measurements):
    table = tmp_path / "sweep.csv"
    synthetic_measurements.assign(t_reject=1e-3).to_csv(table, index=False)
    code, out, _ = run_cli(
        capsys,
        "fit",
        str(table),
        "--target",
        "qwen2-57b-a14b",
        "--draft",
        "qwen2-0.5b",
        "--hardware",
        "H800",
        "--gpus",
        "2",
        "--stride",
        "11",
        "--n-starts",
        "2",
        "--out",
        str(tmp_path / "fit"),
    )
    assert code == 0 and "m=21 of 228" in out
    params = json.loads((tmp_path / "fit/params.json").read_text())
    assert params["hardware"]["gpus"] == 2 and params["variant"] == "eq4"
    assert params["bounds"]["reject_k"] == [0.0, 1e-3]  # T_rej from the table's t_reject
    predictions = pd.read_csv(tmp_path / "fit/predictions.csv")
    assert len(predictions) == 228 and predictions["in_fit"].sum() == 21
    assert {"speedup", "speedup_pred", "t_reject"} <= set(predictions.columns)
    metrics = json.loads((tmp_path / "fit/metrics.json").read_text())
    assert metrics["mape_heldout"] < 2.0

    # the fitted model as a tool
    code, out, _ = run_cli(
        capsys,
        "predict",
        "--target",
        "qwen2-57b-a14b",
        "--draft",
        "qwen2-0.5b",
        "--hardware",
        "2xH800",
        "--sigma",
        "0.9",
        "--gamma",
        "2",
        "4",
        "--params",
        str(tmp_path / "fit/params.json"),
        "--out",
        str(tmp_path / "pred.csv"),
    )
    assert code == 0 and "peak_B" in out and "best_gamma" in out
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == 2 * 19 and pred["model"].iloc[0] == "fitted (eq4)"


def test_predict_roofline(capsys):
    code, out, _ = run_cli(
        capsys,
        "predict",
        "--target",
        "qwen2-57b-a14b",
        "--draft",
        "qwen2-0.5b",
        "--hardware",
        "2xA800",
        "--sigma",
        "0.9",
        "--gamma",
        "4",
        "--batch-sizes",
        "1,8,32,100",
    )
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("roofline")]
    assert [int(r[2]) for r in rows] == [1, 8, 32, 100]
    speedups = [float(r[-1]) for r in rows]
    assert speedups[2] > speedups[0]  # MoE: SD pays more at moderate batch than at B = 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "fit",
                "/nonexistent.csv",
                "--target",
                "qwen2-57b-a14b",
                "--draft",
                "qwen2-0.5b",
                "--hardware",
                "H800",
                "--out",
                "x",
            ],
            "/nonexistent.csv: no such file",
        ),
        (
            [
                "predict",
                "--target",
                "qwen9",
                "--draft",
                "qwen2-0.5b",
                "--hardware",
                "H800",
                "--sigma",
                "0.9",
                "--gamma",
                "4",
            ],
            "unknown architecture 'qwen9'",
        ),
        (
            [
                "predict",
                "--target",
                "opt-30b",
                "--draft",
                "opt-350m",
                "--hardware",
                "B300",
                "--sigma",
                "0.9",
                "--gamma",
                "4",
            ],
            "unknown hardware 'B300'",
        ),
        (
            [
                "predict",
                "--target",
                "opt-30b",
                "--draft",
                "opt-350m",
                "--hardware",
                "H800",
                "--sigma",
                "1.5",
                "--gamma",
                "4",
            ],
            "--sigma must be in (0, 1]",
        ),
        (
            [
                "predict",
                "--target",
                "opt-30b:ffn_dim",
                "--draft",
                "opt-350m",
                "--hardware",
                "H800",
                "--sigma",
                "0.5",
                "--gamma",
                "4",
            ],
            "is not key=value",
        ),
        (
            [
                "generate",
                "--target",
                "arch:qwen2-0.5b",
                "--prompts",
                "random:2:4",
                "--tensor-parallel-size",
                "2",
                "--out",
                "x",
            ],
            "--tensor-parallel-size, --speculative-method and --draft-sampling are vLLM's",
        ),
        (
            [
                "generate",
                "--target",
                "arch:qwen2-0.5b",
                "--prompts",
                "random:2:4",
                "--draft-sampling",
                "greedy",
                "--out",
                "x",
            ],
            "--draft-sampling are vLLM's",
        ),
        (["probe-hardware", "--buffer-mib", "0", "--out", "env.json"], "--buffer-mib must be >= 1, got 0"),
    ],
)
def test_bad_input_gives_one_line(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.strip().startswith("moesd: error:") and message in err
    assert len(err.strip().splitlines()) == 1


def test_fit_rejects_table_without_columns(tmp_path, capsys):
    table = tmp_path / "t.csv"
    pd.DataFrame({"B": [1, 2], "speedup": [1.0, 1.1]}).to_csv(table, index=False)
    code, _, err = run_cli(
        capsys,
        "fit",
        str(table),
        "--target",
        "opt-30b",
        "--draft",
        "opt-350m",
        "--hardware",
        "A800",
        "--out",
        str(tmp_path),
    )
    assert code == 2 and "missing column(s) gamma, K, E, sigma" in err


def test_params_and_module_entry_point_import_no_torch():
    # a fresh interpreter, to see what building the parser and a light command import
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "moesd", "params", "qwen2-57b-a14b"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "57,408,658,944" in out.stdout and "14,249,270,784" in out.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "moesd.cli" in imported and "moesd.models.spec" in imported  # the trace covers the command
    assert not {name for name in imported if name == "torch" or name.startswith("torch.")}


def test_params_applies_the_spec_overrides(capsys):
    """One parser for every spec form: an override reaches the counts (K = 4 activates fewer
    parameters than the native 8), and the short and full forms agree."""
    counts = {}
    for spec in ("qwen2-57b-a14b", "qwen2-57b-a14b:num_experts_per_tok=4", "arch:qwen2-57b-a14b:num_experts_per_tok=4"):
        code, out, _ = run_cli(capsys, "params", spec)
        assert code == 0, spec
        counts[spec] = {line.split()[0]: line.split(None, 1)[1].strip() for line in out.splitlines() if line.strip()}
    native, k4, full = counts.values()
    assert native["active"] == "14,249,270,784" and k4["active"] == "11,166,457,344" and k4 == full
    assert native["total"] == k4["total"] and (native["E,"], k4["E,"]) == ("K 64, 8", "K 64, 4")
    # a value that is no JSON stays a string, as specs keep it
    assert ModelSpec.of_architecture("qwen2-57b-a14b:torch_dtype=float16").overrides == {"torch_dtype": "float16"}


def test_probe_hardware_writes_env(tmp_path, capsys):
    env = tmp_path / "env.json"
    env.write_text(json.dumps({"kept": 1}))
    code, out, _ = run_cli(
        capsys, "probe-hardware", "--copy-mib", "8", "--matmul-n", "128", "--repeats", "2", "--out", str(env)
    )
    data = json.loads(env.read_text())
    assert code == 0 and data["kept"] == 1 and data["hardware_probe"]["bandwidth"] > 0
    assert data["environment"]["packages"]["torch"].startswith("2.13.0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_a_missing_gpu_stops_in_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "probe-hardware", "--device", "cuda", "--out", str(tmp_path / "env.json"))
    assert code == 2 and err.strip() == "moesd: error: --device cuda: this torch sees no CUDA device"
    config = tmp_path / "c.yaml"
    config.write_text("latency:\n  device: cuda\n")
    code, _, err = run_cli(
        capsys, "latency", "--config", str(config), "--run-dir", str(tmp_path), "--prompts", str(tmp_path), "--out",
        str(tmp_path / "latency"),
    )  # fmt: skip
    assert code == 2 and "latency.device: cuda, but this torch sees no CUDA device" in err
    assert not (tmp_path / "latency").exists()


def test_simulate_fit_quality_and_plot(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("simulation:\n  k_values: [4, 8]\n  gammas: [2, 4]\n  batch_sizes: [1, 4, 16, 32, 64, 100]\n")
    sweep = tmp_path / "sweep.csv"
    code, out, _ = run_cli(capsys, "simulate", "--config", str(config), "--out", str(sweep))
    assert code == 0 and "24 simulated points" in out
    table = pd.read_csv(sweep)
    assert set(table["source"]) == {"roofline simulation"} and set(table["K"]) == {4, 8}
    models = ["--target", "qwen2-57b-a14b", "--draft", "qwen2-0.5b", "--hardware", "2xH800", "--n-starts", "2"]
    code, out, _ = run_cli(capsys, "fit-quality", str(sweep), *models, "--strides", "2", "1", "--out", str(tmp_path))
    quality = pd.read_csv(tmp_path / "fit_quality.csv")
    assert code == 0 and list(quality["m"]) == [12, 24]
    assert quality["mse_all"].max() < 0.01  # Algorithm 1 contains the roofline as a special case
    assert "| m |" in (tmp_path / "fit_quality.md").read_text().replace("|   m |", "| m |")
    code, _, _ = run_cli(capsys, "fit", str(sweep), *models, "--stride", "2", "--out", str(tmp_path / "fit"))
    assert code == 0 and (tmp_path / "fit/predictions.csv").is_file()
    stem = tmp_path / "grid"
    code, _, _ = run_cli(
        capsys, "plot-fit", str(tmp_path / "fit/predictions.csv"), "--caption", "c", "--out", str(stem)
    )
    assert code == 0 and stem.with_suffix(".png").stat().st_size > 0 and stem.with_suffix(".pdf").is_file()


def test_analysis_commands_fail_in_one_line_on_missing_tables(tmp_path, capsys):
    config = tmp_path / "analysis.json"
    config.write_text(json.dumps({"experiment": "x", "pairs": []}))
    env = tmp_path / "env.json"
    env.write_text(json.dumps({"hardware_probe": {"device_name": "cpu", "flops": 1e11, "bandwidth": 2e10}}))
    cases = [
        (["speedup", "--config", str(config), "--latency", str(tmp_path / "none"), "--env", str(env)], "forward.csv"),
        (["fit-run", "--config", str(config), "--speedup", str(tmp_path / "c.csv"), "--env", str(env)], "c.csv"),
        (  # a missing table is an error, not eleven "not measurable" verdicts
            ["claims", "--config", str(config), "--speedup", str(tmp_path / "none"), "--fit", str(tmp_path / "none")],
            "claims input " + str(tmp_path / "none" / "composed.csv") + " does not exist",
        ),
    ]
    for argv, message in cases:
        code, _, err = run_cli(
            capsys,
            *argv,
            "--out",
            str(tmp_path / "out"),
            *(["--tables", str(tmp_path)] if argv[0] == "fit-run" else []),
        )
        assert code == 2 and err.startswith("moesd: error:") and message in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing written before the check
