"""Bad input stops early in one line: every integer option of every command takes a
positive integer (a warm-up count: >= 0), each named in its one-line error; the fit's tables hold
what Eq. 2-5's quantities can be; nothing is written where a run stopped."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from moesd.cli import main

BASE = {
    "engine-check": ["engine-check", "--model", "arch:qwen2-0.5b"],
    "generate": ["generate", "--target", "arch:qwen2-0.5b", "--prompts", "random:2:4", "--out", "OUT"],
    "predict": ["predict", "--target", "opt-30b", "--draft", "opt-350m", "--hardware", "A800", "--sigma", "0.9"],
    "fit": ["fit", "TABLE", "--target", "opt-30b", "--draft", "opt-350m", "--hardware", "A800", "--out", "OUT"],
    "fit-quality": [
        "fit-quality",
        "TABLE",
        "--target",
        "opt-30b",
        "--draft",
        "opt-350m",
        "--hardware",
        "A800",
        "--out",
        "OUT",
    ],  # fmt: skip
    "probe-hardware": ["probe-hardware", "--out", "OUT"],
}
POSITIVE = [
    ("engine-check", "--batch-sizes"),
    ("engine-check", "--tokens"),
    ("engine-check", "--context"),
    ("engine-check", "--repeats"),
    ("engine-check", "--threads"),
    ("generate", "--gamma"),
    ("generate", "--batch-size"),
    ("generate", "--max-new-tokens"),
    ("generate", "--tensor-parallel-size"),
    ("predict", "--gamma"),
    ("predict", "--gpus"),
    ("fit", "--stride"),
    ("fit", "--n-starts"),
    ("fit", "--gpus"),
    ("fit-quality", "--strides"),
    ("probe-hardware", "--matmul-n"),
    ("probe-hardware", "--repeats"),
]
NOT_POSITIVE = ["0", "-3", "2.5", "abc", ""]


def run(capsys, tmp_path, argv):
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("TABLE", str(tmp_path / "table.csv")) for a in argv]
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    return code, err


def one_line(code, err, *needles):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize("value", NOT_POSITIVE)
@pytest.mark.parametrize("command, option", POSITIVE)
def test_integer_options_take_positive_integers(capsys, tmp_path, command, option, value):
    code, err = run(capsys, tmp_path, [*BASE[command], option, value])
    one_line(code, err, f"argument {option}", "positive integer")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["-1", "1.5", "x"])
def test_warmup_takes_a_count(capsys, tmp_path, value):
    code, err = run(capsys, tmp_path, [*BASE["engine-check"], "--warmup", value])
    one_line(code, err, "argument --warmup", "integer >= 0")


def _table(**changes) -> pd.DataFrame:
    rows = [
        {"B": b, "gamma": g, "K": 1, "E": 1, "sigma": 0.8, "speedup": 1.0 + 0.01 * b}
        for b in (1, 4, 16)
        for g in (2, 4)
    ]
    table = pd.DataFrame(rows)
    for column, value in changes.items():
        table[column] = table[column].astype(object if isinstance(value, str) else float)
        table.loc[2, column] = value
    return table


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sigma": 1.7}, "0 < sigma <= 1"),
        ({"sigma": -0.3}, "0 < sigma <= 1"),
        ({"sigma": 0.0}, "0 < sigma <= 1"),
        ({"B": -4}, "B >= 1, whole"),
        ({"B": 2.5}, "B >= 1, whole"),
        ({"gamma": 0}, "gamma >= 1, whole"),
        ({"gamma": -2}, "gamma >= 1, whole"),
        ({"K": 3}, "1 <= K <= E, whole"),
        ({"K": 0}, "1 <= K <= E, whole"),
        ({"speedup": np.inf}, "finite speedup"),
        ({"speedup": -1.0}, "speedup <= 0"),
        ({"speedup": np.nan}, "missing values"),
        ({"speedup": "fast"}, "column(s) speedup hold non-numbers"),
        ({"sigma": "high"}, "column(s) sigma hold non-numbers"),
    ],
)
@pytest.mark.parametrize("command", ["fit", "fit-quality"])
def test_fit_tables_hold_what_the_quantities_can_be(capsys, tmp_path, command, change, message):
    _table(**change).to_csv(tmp_path / "table.csv", index=False)
    code, err = run(capsys, tmp_path, BASE[command] + ["--n-starts", "1"])
    one_line(code, err, "table.csv", message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sigma", ["1.7", "-0.3", "0", "nan"])
def test_predict_takes_sigma_in_range(capsys, tmp_path, sigma):
    code, err = run(capsys, tmp_path, [*BASE["predict"][:-1], sigma, "--gamma", "4"])
    one_line(code, err, "--sigma must be in (0, 1]")


def test_strict_json_has_no_nan(tmp_path):
    from moesd.io import write_json

    write_json(tmp_path / "a.json", {"mape": float("nan"), "x": [1.0, float("inf")], "n": np.float64(2.0)}, strict=True)
    text = (tmp_path / "a.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"mape": None, "x": [1.0, None], "n": 2.0}


@pytest.mark.parametrize(
    "content, message",
    [(b"", "table.csv: empty (not even a header row)"), (b'a,b\n1,"2\n', "table.csv: not a CSV table"),
     (b"\xff\xfe\x00bad", "table.csv: not a CSV table")],
)  # fmt: skip
@pytest.mark.parametrize("command", ["fit", "fit-quality"])
def test_a_table_that_is_no_table_is_named(capsys, tmp_path, command, content, message):
    (tmp_path / "table.csv").write_bytes(content)
    code, err = run(capsys, tmp_path, BASE[command])
    one_line(code, err, message)


def test_a_missing_table_is_named(capsys, tmp_path):
    code, err = run(capsys, tmp_path, BASE["fit"])
    one_line(code, err, "table.csv: no such file")


def test_a_second_timed_measurement_on_the_same_cores_waits(tmp_path, monkeypatch, capsys):
    """A timed command finding another holding the CPU timing lock (an orphaned job of a killed
    Snakemake, say) says so in one line naming it and waits; the lock goes with its holder."""
    import os
    import subprocess
    import sys
    import tempfile
    import threading

    from moesd.timing import exclusive_timing, lock_path

    monkeypatch.setenv("MOESD_TIMING_LOCK", str(tmp_path / "timing.lock"))
    code = "from moesd.timing import exclusive_timing\nimport time\nwith exclusive_timing('cpu'):\n"
    code += "    print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    done = threading.Event()

    def second():
        with exclusive_timing("cpu"):
            done.set()

    try:
        assert holder.stdout.readline().strip() == "held" and lock_path().parent == tmp_path
        monkeypatch.setenv("TMPDIR", str(tmp_path / "elsewhere"))  # a job's own TMPDIR: the same cores, one lock
        monkeypatch.setattr(tempfile, "tempdir", None)
        with exclusive_timing("cuda:0"):  # a GPU measurement takes no CPU lock
            pass
        waiting = threading.Thread(target=second)
        waiting.start()
        assert not done.wait(1.0)  # blocked behind the holder
    finally:
        holder.kill()
        holder.wait()
    assert done.wait(10)  # the killed holder's lock went with it
    waiting.join()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pid {holder.pid}" in err and "moesd: waiting: another measurement" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--target", "arch:qwen2-0.5b:num_hidden_layers=1", "--prompts", "random:1:4", "--device", "tpu",
          "--out", "OUT"], "argument --device: must be cpu, cuda or cuda:N, got 'tpu'"),
        (["probe-hardware", "--device", "gpu", "--out", "OUT"], "argument --device: must be cpu, cuda or cuda:N"),
        (["generate", "--target", "arch:opt-350m:num_hidden_layers=1", "--prompts", "random:1:2040",
          "--max-new-tokens", "20", "--out", "OUT"], "reach 2060 positions, beyond the target's 2048 (learned"),
        (["params", "qwen2-0.5b:hidden_size=abc"], "hidden_size='abc' must be a positive integer"),
        (["params", "qwen2-57b-a14b:num_experts_per_tok=100"], "num_experts_per_tok"),
        (["params", "qwen2-57b-a14b:num_experts_per_tok=0"], "num_experts_per_tok"),
        (["params", "qwen2-57b-a14b:num_hidden_layers=-2"], "num_hidden_layers"),
        (["params", "qwen2-57b-a14b:num_experts=2.5"], "num_experts"),
    ],
)  # fmt: skip
def test_devices_positions_and_overrides(capsys, tmp_path, argv, message):
    code, err = run(capsys, tmp_path, argv)
    one_line(code, err, message)
    assert not (tmp_path / "out").exists()


def test_cuda_asked_of_a_machine_without_it(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for argv in (BASE["generate"] + ["--device", "cuda"], BASE["probe-hardware"] + ["--device", "cuda:1"]):
        code, err = run(capsys, tmp_path, argv)
        one_line(code, err, "this torch sees no CUDA device")


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty (no keys)"),
        ("latency: [\n", "line 2, column 1: not YAML"),
        ("latency:\n  repeats: 3\n bad indent: 1\n", "line 3"),
        ("- a list\n", "<top level>: must be a mapping"),
    ],
)
def test_config_files_that_are_no_config(capsys, tmp_path, content, message):
    (tmp_path / "c.yaml").write_text(content)
    code, err = run(capsys, tmp_path, ["latency", "--config", str(tmp_path / "c.yaml"), "--run-dir", str(tmp_path),
                                      "--prompts", str(tmp_path), "--out", "OUT"])  # fmt: skip
    one_line(code, err, "c.yaml" if "top level" not in message else "config error", message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "no hardware_probe object"),
        ('{"hardware_probe": {"flops": 1}}', "lacks device_name, bandwidth"),
        ("not json", "no hardware_probe object"),
    ],
)
def test_hardware_probe_files_that_are_no_probe(capsys, tmp_path, content, message):
    (tmp_path / "env.json").write_text(content)
    argv = BASE["predict"] + ["--gamma", "4"]
    argv[argv.index("A800")] = f"probe:{tmp_path / 'env.json'}"
    code, err = run(capsys, tmp_path, argv)
    one_line(code, err, message)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"input_ids": null, "text": "hi"}', "is text, but the model has no tokenizer files"),
        ('{"input_ids": []}', "input_ids must be a non-empty list"),
        ('{"input_ids": [1, -2]}', "input_ids must be a non-empty list"),
        ('{"input_ids": [1, true]}', "input_ids must be a non-empty list"),
        ('{"input_ids": [1, 99999999]}', "outside the vocabulary"),
        ('{"text": ""}', "text must be a non-empty string"),
        ('{"prompt": "hi"}', 'needs an "input_ids" or a "text" field'),
        ("[1, 2, 3]", 'needs an "input_ids" or a "text" field'),
        ("{not json", "not JSON"),
    ],
)
def test_prompt_files_that_are_no_prompts(capsys, tmp_path, line, message):
    (tmp_path / "p.jsonl").write_text(line + "\n")
    argv = ["generate", "--target", "arch:qwen2-0.5b:num_hidden_layers=1", "--prompts", str(tmp_path / "p.jsonl"),
            "--out", "OUT"]  # fmt: skip
    code, err = run(capsys, tmp_path, argv)
    one_line(code, err, message)
    assert not (tmp_path / "out").exists()


def test_messages_name_what_the_user_wrote(capsys, tmp_path):
    code, err = run(capsys, tmp_path, ["params", "qwen2-0.5b:seed=abc"])
    one_line(code, err, "seed must be an integer, got 'abc'")  # the closing quote kept
    _table().to_csv(tmp_path / "table.csv", index=False)
    code, err = run(capsys, tmp_path, BASE["fit-quality"] + ["--strides", "500", "--n-starts", "1"])
    one_line(code, err, "--strides 500: at most 1 of 6 rows to fit, and Algorithm 1 needs 10")
    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "env.json").write_text('{"hardware_probe": {"device_name": "x", "flops": 1e12, "bandwidth": 1e11}}')
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "composed.csv", index=False)
    argv = ["fit-run", "--config", str(tmp_path / "c.json"), "--speedup", str(tmp_path / "composed.csv"), "--env",
            str(tmp_path / "env.json"), "--out", "OUT", "--tables", "OUT"]  # fmt: skip
    code, err = run(capsys, tmp_path, argv)
    one_line(code, err, "composed.csv: missing column(s) model, family, spec")


def _stage_tables(tmp_path):
    """The run's tables as header-only files of the right kind (moesd.columns), and an analysis
    config: the commands that read them accept them, so a test can spoil one at a time."""
    from moesd.columns import TABLES

    for folder, names in {"speedup": ("composed", "e2e"), "fit": ("predictions", "curves", "metrics")}.items():
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / f"{name}.csv").write_text(",".join(TABLES[name][1]) + "\n")
    (tmp_path / "routing.csv").write_text(",".join(TABLES["routing"][1]) + "\n")
    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "env.json").write_text('{"hardware_probe": {"device_name": "x", "flops": 1e12, "bandwidth": 1e11}}')


WRONG_COLUMNS = [
    ("claims", "speedup/composed.csv", "composed speedups table"),
    ("claims", "speedup/e2e.csv", "end-to-end speedups table"),
    ("claims", "fit/metrics.csv", "metrics table"),
    ("claims", "fit/predictions.csv", "predictions table"),
    ("claims", "routing.csv", "routing table"),
    ("figures", "speedup/composed.csv", "composed speedups table"),
    ("figures", "speedup/e2e.csv", "end-to-end speedups table"),
    ("figures", "fit/predictions.csv", "predictions table"),
    ("plot-routing", "routing.csv", "routing table"),
    ("plot-engines", "speedup/e2e.csv", "end-to-end speedups table"),
    ("fit-run", "speedup/composed.csv", "composed speedups table"),
]
STAGE_ARGV = {
    "claims": "claims --config c.json --speedup speedup --fit fit --routing routing.csv --out out/claims.md",
    "figures": "figures --config c.json --speedup speedup --fit fit --env env.json --out out",
    "plot-routing": "plot-routing routing.csv --out out/fig1",
    "plot-engines": "plot-engines speedup/e2e.csv --env env.json --out out/engines",
    "fit-run": "fit-run --config c.json --speedup speedup/composed.csv --env env.json --out out --tables out",
}


@pytest.mark.parametrize("command, spoiled, what", WRONG_COLUMNS)
def test_a_table_of_the_wrong_kind_names_its_missing_columns(capsys, tmp_path, monkeypatch, command, spoiled, what):
    _stage_tables(tmp_path)
    (tmp_path / spoiled).write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, tmp_path, STAGE_ARGV[command].split())
    one_line(code, err, f"{spoiled}: missing column(s)", what)
    assert not (tmp_path / "out").exists()


LATENCY_CSV = "model,B,s,status,repeat,seconds,prefill_seconds,median\nm,1,1,ok,0,0.010,,0.010\nm,1,1,ok,1,0.011,,0.010\nm,2,1,ok,0,0.020,,0.020\nm,4,1,error: out of memory,-1,,,\n"
SUMMARY_CSV = "target,draft,dataset,temperature,gamma,alpha,sigma,backend,platform\nt,d,humaneval,0.0,4,0.7,0.8,ours,local\nt,d,mtbench,0.0,4,0.6,0.7,ours,local\n"


@pytest.mark.parametrize(
    "kind, text, message",
    [
        (
            "latency",
            LATENCY_CSV.replace("m,2,1,ok,0,0.020", "m,2,1,ok,0,nan"),
            r"line 4: seconds = nan is no finite, non-negative time",
        ),
        ("latency", LATENCY_CSV.replace("0.011", "-0.011"), r"line 3: seconds = -0.011 is no finite"),
        ("latency", LATENCY_CSV.replace("0.011", "inf"), r"line 3: seconds = inf is no finite"),
        ("latency", LATENCY_CSV[: LATENCY_CSV.index("m,2,1,ok,0,0.0") + 10], r"line 4: seconds = nan"),  # cut mid-row
        ("latency", LATENCY_CSV + "m,1,1,ok,1,0.012,,0.010\n", r"line 6: a setting given twice"),
        ("acceptance", SUMMARY_CSV.replace("0.8,ours", "1.3,ours"), r"line 2: sigma = 1.3 is not within \[0, 1\]"),
        ("acceptance", SUMMARY_CSV.replace("0.6,0.7", ",0.7"), r"line 3: alpha = nan is not within"),
        ("acceptance", SUMMARY_CSV + SUMMARY_CSV.splitlines()[1] + "\n", r"line 4: a setting given twice"),
    ],
    ids=["nan", "negative", "inf", "truncated", "duplicate", "sigma above 1", "alpha missing", "duplicate setting"],
)
def test_a_damaged_table_is_one_line_naming_file_and_row(tmp_path, kind, text, message):
    """Damaged tables that once became numbers (NaN changed 64 of 72 speedups; negative seconds gave
    a speedup of -1.82): each stops where a stage reads it, naming the file and the row."""
    from moesd.io import read_table

    path = tmp_path / f"{kind}.csv"
    path.write_text(LATENCY_CSV if kind == "latency" else SUMMARY_CSV)
    assert len(read_table(path, kind))  # the whole table reads (a failed point's NaN is its status)
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        read_table(path, kind)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda text: text[: text.index("t,d,mtbench")], r"1 row\(s\) where its writer wrote 2 since it was written"),
        (lambda text: text.replace("0.7,0.8", "0.7,0.9"), r"its bytes changed since it was written"),
    ],
    ids=["cut at a row", "edited"],
)
def test_a_table_cut_at_a_row_boundary_or_edited_reads_as_damaged(tmp_path, change, message):
    """A truncated acceptance summary once dropped MT-bench from the speedups, and a truncated e2e
    table gave 5 speedups instead of 8: every table write_csv writes carries its rows and checksum
    (.NAME.check), which read_table compares. A table made by hand has no record and reads."""
    from moesd.io import check_file, read_table, write_csv

    path = tmp_path / "summary.csv"
    write_csv(path, pd.read_csv(io.StringIO(SUMMARY_CSV)))
    assert len(read_table(path, "acceptance")) == 2 and check_file(path).is_file()
    path.write_text(change(path.read_text()))
    with pytest.raises(ValueError, match=message) as caught:
        read_table(path, "acceptance")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    check_file(path).unlink()  # the user's way to read an edited table as it is
    assert len(read_table(path, "acceptance")) >= 1


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_umasks_permissions(tmp_path, umask, mode):
    """Written atomically through a temporary file (mkstemp's 0600), an output still gets what
    the umask allows, as a plain open() would give it."""
    import os
    import stat

    from moesd.io import write_csv, write_text

    old = os.umask(umask)
    try:
        write_text(tmp_path / "a.md", "x\n")
        write_csv(tmp_path / "b.csv", pd.DataFrame({"x": [1]}))
    finally:
        os.umask(old)
    for name in ("a.md", "b.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_the_environment_record_names_a_moved_data_folder(monkeypatch):
    """env.json says where the architectures and datasheets were read from (MOESD_DATA)."""
    from moesd.io import environment

    monkeypatch.delenv("MOESD_DATA", raising=False)
    record = environment()
    assert record["moesd_data"] is None and record["data_dir"].endswith("data")
    monkeypatch.setenv("MOESD_DATA", "/elsewhere/data")
    assert environment()["moesd_data"] == "/elsewhere/data"


def test_a_test_cluster_of_nodes_on_one_machine_takes_no_timing_lock(tmp_path, monkeypatch):
    from moesd.timing import exclusive_timing, lock_path

    monkeypatch.setenv("MOESD_TIMING_LOCK", "off")
    with exclusive_timing("cpu"), exclusive_timing("cpu"):  # a second one does not wait
        pass
    assert not lock_path().exists()


def test_a_whole_summary_that_lacks_a_setting_the_config_asks_for_is_not_composed():
    """A summary written whole but without MT-bench (an acceptance config narrowed since, a hand
    edit with its record removed) passes the row and checksum record; the speedup stage checks it
    against the config's acceptance section and names the first absent setting, in one line."""
    from moesd.config import validate_config
    from moesd.speedup import acceptance_settings, sigma_table

    summary = pd.read_csv(io.StringIO(SUMMARY_CSV))
    config = validate_config(
        {"acceptance": {"datasets": ["humaneval", "mtbench"], "temperatures": [0.0], "gammas": [4]}}
    )
    wanted = acceptance_settings(config["acceptance"])
    assert wanted == [("humaneval", 0.0, 4), ("mtbench", 0.0, 4)]
    assert len(sigma_table(summary, "t", "d", wanted)) == len(summary)
    with pytest.raises(
        ValueError, match=r"target 't', draft 'd': no sigma at dataset mtbench, temperature 0, gamma 4"
    ) as caught:
        sigma_table(summary[summary["dataset"] != "mtbench"], "t", "d", wanted)
    assert "1 of 2 settings absent" in str(caught.value) and "\n" not in str(caught.value)
