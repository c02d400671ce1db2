"""The workflow's plan: lint, dry runs and the rule files, each in a second or two (no job runs;
the runs themselves are in test_workflow.py, marked slow)."""

import re
import shutil
import subprocess
import sys

import pytest
import yaml
from moesd.paths import REPO_ROOT

from .snakemake_run import SNAKEMAKE, job_counts, planned_jobs, planned_resources, snakemake


def test_lint_is_clean(checkout):
    result = snakemake(checkout, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_the_plan_imports_no_torch(checkout):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *SNAKEMAKE[1:], "-n"], cwd=checkout, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "moesd.config" in imported and "moesd.figures" in imported  # the trace covers the Snakefile's parse
    assert not {name for name in imported if name == "torch" or name.startswith("torch.")}


def test_bad_config_stops_before_any_job(checkout, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fit:\n  stride: 0\n")
    result = snakemake(checkout, "-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "config error: fit.stride: 0 is less than the minimum of 1" in result.stdout + result.stderr
    twice = tmp_path / "twice.yaml"  # Snakemake's own reading keeps the last of two keys; the Snakefile refuses
    twice.write_text("fit:\n  stride: 2\nfit:\n  stride: 3\n")
    result = snakemake(checkout, "-n", "--configfile", str(twice))
    assert result.returncode != 0 and "the key 'fit' twice in one mapping (line 3)" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "name", ["..", *(pytest.param(n, marks=pytest.mark.slow) for n in (".", "../notebooks", "a/b", "-n"))]
)  # the schema's pattern refuses each (test_config's mutations); one dry run shows the workflow stops
def test_an_experiment_name_is_one_safe_folder(checkout, tmp_path, name):
    """experiment ".." once made the notebook rule's output the tracked notebook itself, which
    Snakemake deletes before running the job."""
    config = tmp_path / "c.yaml"
    config.write_text(f"experiment: {name!r}\n")
    result = snakemake(checkout, "-n", "--configfile", str(config))
    assert result.returncode != 0 and "config error: experiment:" in result.stdout + result.stderr


@pytest.mark.slow  # two more dry runs; the quick loop keeps the Slurm plan of paper.yaml
@pytest.mark.parametrize("experiment", ["paper", "synthetic"])
def test_gpu_experiments_plan_their_jobs_with_a_gpu(checkout, experiment):
    result = snakemake(checkout, "-n", "--configfile", f"config/{experiment}.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    plans = planned_resources(result)
    assert plans["measure_latency"]["gpu"] == "1" and plans["environment"]["gpu"] == "1"  # the probe times the GPU
    for stage in ("speedup", "fit_run", "measured_figures", "claims_report"):
        assert plans[stage].get("gpu", "0") == "0", stage  # the analysis runs anywhere, from the tables


FANNED_OUT = ("measure_latency", "measure_e2e_vllm", "measure_acceptance", "measure_acceptance_vllm", "environment")


def test_the_slurm_profile_resources_arrive(checkout):
    """config/paper.yaml through the Slurm profile: the paper's four platforms (and the H200 of
    the component timings) in one DAG, every measuring stage fanned out (latency per platform,
    model and K; vLLM per platform, pair and K; our acceptance per pair), each slice's job asking
    for its own GPUs, memory, runtime and its platform's GPU model; every other submitted job the
    profile's defaults; the workflow profile (profiles/default, read on every run) replaces none."""
    from moesd.config import acceptance_slices, acceptance_vllm_slices, e2e_vllm_slices, latency_slices, load_config
    from moesd.resources import job_resources

    result = snakemake(checkout, "-n", "--profile", "profiles/slurm", "--configfile", "config/paper.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    config = load_config(checkout / "config/paper.yaml")
    jobs = planned_jobs(result)
    counts = {rule: sum(job["rule"] == rule for job in jobs) for rule in {job["rule"] for job in jobs}}
    assert {rule: counts[rule] for rule in FANNED_OUT} == {
        "measure_latency": 13, "measure_e2e_vllm": 17, "measure_acceptance": 2, "measure_acceptance_vllm": 10,
        "environment": 5,
    }  # fmt: skip
    assert all(counts[rule] == 1 for rule in ("gather_latency", "gather_e2e_vllm", "gather_acceptance", "speedup"))
    slices = {"measure_latency": ("latency", latency_slices(config)), "measure_e2e_vllm": ("e2e_vllm", e2e_vllm_slices(config)),
              "measure_acceptance": ("acceptance", acceptance_slices(config)),
              "measure_acceptance_vllm": ("acceptance_vllm", acceptance_vllm_slices(config))}  # fmt: skip
    for rule, (stage, table) in slices.items():
        planned = [job for job in jobs if job["rule"] == rule]
        ids = [
            "/".join(v for k, v in job["wildcards"].items() if k in ("platform", "slice", "pair")) for job in planned
        ]
        assert sorted(ids) == sorted(table), rule  # one job per slice
        for key, job in zip(ids, planned, strict=True):
            wanted = {k: str(v) for k, v in job_resources(config, stage, key).items()}
            assert {k: job["resources"][k] for k in wanted} == wanted, (rule, key)
    by_id = {"/".join(job["wildcards"].values()): job["resources"] for job in jobs if job["rule"] == "measure_e2e_vllm"}
    assert by_id["2xH800/qwen2"]["gpu"] == "2" and by_id["4xL40/opt"]["gpu"] == "4"  # TP = the platform's GPUs
    assert by_id["4xL40/opt"]["gpu_model"] == "l40" and by_id["2xA800/opt"]["gpu_model"] == "a800"
    latency = {
        "/".join(job["wildcards"].values()): job["resources"] for job in jobs if job["rule"] == "measure_latency"
    }
    assert int(latency["1xH200/model-qwen2-57b-a14b"]["mem_mb"]) > 115_000  # Qwen2-57B-A14B's bf16 weights
    assert int(latency["1xH200/model-qwen2-0.5b"]["mem_mb"]) < 20_000  # the draft's job asks for the draft's memory
    assert all(job["gpu"] == "1" for job in latency.values())  # our engine: one device
    plans = planned_resources(result)
    for rule in ("prompts", "engine_check_model"):  # submitted, with the Slurm profile's defaults
        assert (plans[rule]["mem_mb"], plans[rule]["runtime"], plans[rule]["cpus_per_task"]) == ("8000", "60", "2")
        assert plans[rule].get("gpu", "0") == "0"


def test_every_rule_is_submitted_or_local_by_decision(checkout):
    """The light rules are localrules (no sbatch job per stage config or figure); the measuring
    and training rules are submitted; a new rule must be put in one group or the other."""

    text = "\n".join(
        p.read_text() for p in [checkout / "Snakefile", *sorted((checkout / "workflow/rules").glob("*.smk"))]
    )
    rules = set(re.findall(r"^rule (\w+):", text, re.M))
    local = set(re.findall(r"^    (\w+),$", text.split("localrules:")[1].split("\n\n")[0], re.M))
    submitted = {"environment", "engine_check_model", "train_models", "prompts", "measure_acceptance",
                 "measure_acceptance_vllm", "measure_routing", "measure_latency", "measure_e2e_vllm",
                 "profile_step"}  # fmt: skip
    assert local | submitted == rules and not local & submitted, (rules - local - submitted, local & submitted)
    profile = yaml.safe_load((checkout / "profiles/default/config.yaml").read_text())
    assert not {"default-resources", "set-resources", "cores", "executor", "jobs"} & set(profile)
    assert profile["resources"] == ["cpu_timing=1"]  # the one global limit: timed jobs take turns


def test_timed_jobs_take_turns_through_a_resource(checkout):
    """Every job that times on the CPU cores asks for cpu_timing, which the workflow profile
    allows once: vLLM's e2e job waits for our engine's sweep without reading its table."""
    result = snakemake(checkout, "-n", "--configfile", "config/smoke.yaml", "config/engines.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    plans = planned_resources(result)
    for rule in ("measure_latency", "measure_e2e_vllm", "environment", "engine_check_model", "profile_step"):
        assert plans[rule].get("cpu_timing") == "1", rule
    for rule in ("measure_acceptance", "prompts", "train_models"):
        assert "cpu_timing" not in plans[rule], rule
    e2e_vllm = (result.stdout + result.stderr).split("rule measure_e2e_vllm:")[1].split("\n\n")[0]
    assert "latency/e2e.csv" not in e2e_vllm.split("output:")[0]


@pytest.mark.slow
def test_gpu_check_script_plans_its_jobs(checkout):
    script = (checkout / "workflow/scripts/gpu_check.sh").read_text()
    command = next(line for line in script.splitlines() if line.strip().startswith("snakemake "))
    args = command.split("||")[0].split()[1:]
    for configs in (["config/gpu_check.yaml"], ["config/gpu_check.yaml", "config/gpu_check-cpu.yaml"]):  # cuda, cpu
        result = snakemake(checkout, "-n", *[a for arg in args for a in (configs if "CONFIGS" in arg else [arg])])
        assert result.returncode == 0, result.stderr[-2000:]
        planned = set(job_counts(result))
        assert {"environment", "measure_latency", "speedup"} <= planned, planned


@pytest.mark.slow
def test_compared_runs_reach_the_claims(checkout, tmp_path):
    table = checkout / "data/runs/other-gpu/speedup/composed.csv"
    table.parent.mkdir(parents=True)
    table.write_text("model,family,spec,K,E,B,dataset,temperature,gamma,speedup,hardware,ridge_point\n")
    extra = tmp_path / "compare.yaml"
    extra.write_text("analysis:\n  compare_runs: [other-gpu]\n")
    try:
        result = snakemake(checkout, "claims", "-n", "--configfile", str(extra))
    finally:
        shutil.rmtree(checkout / "data/runs")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--compare data/runs/other-gpu/speedup/composed.csv" in result.stdout + result.stderr


def test_the_rule_files_follow_the_houses_conventions():
    """Globals and functions live in common.smk; rules take named params helpers, not lambdas,
    and their threads from the config; the Snakefile states its minimum Snakemake and leaves
    sys.path alone (the package is installed)."""
    snakefile = (REPO_ROOT / "Snakefile").read_text()
    assert "min_version(" in snakefile and "sys.path" not in snakefile
    for path in [REPO_ROOT / "Snakefile", *sorted((REPO_ROOT / "workflow/rules").glob("*.smk"))]:
        text = path.read_text()
        assert "lambda" not in text, path.name
        assert not re.search(r"^\s*threads: \d", text, re.M), path.name
        if path.name != "common.smk":
            assert not re.search(r"^(def \w+|[A-Za-z_]\w* = )", text, re.M), f"{path.name}: a global outside common.smk"


@pytest.mark.slow  # the paper plan's dry run (about 10 s)
def test_a_lock_path_reaches_the_shell_as_one_quoted_word(checkout, tmp_path):
    """download.lock is a path of the user's (any characters): the download job's command line
    carries it quoted, so `$(touch pwned)` is a file name, never a command, and a space no split."""
    overlay = tmp_path / "lock.yaml"
    overlay.write_text(yaml.safe_dump({"download": {"lock": "$(touch pwned) my;lock.json"}}))
    result = snakemake(checkout, "download", "-n", "-p", "--configfile", "config/paper.yaml", str(overlay))
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    command = next(line for line in text.splitlines() if "moesd download" in line)
    assert "--lock '$(touch pwned) my;lock.json'" in command, command
    assert not (checkout / "pwned").exists()


@pytest.mark.slow  # one more dry run
def test_a_local_job_beyond_this_machines_memory_stops_the_plan(checkout, tmp_path):
    overlay = tmp_path / "big.yaml"
    context = {"source": "fixed", "length": 1024, "max_length": 1024}  # config.yaml times a fixed context
    overlay.write_text(yaml.safe_dump({"latency": {"batch_sizes": [1, 4096], "context": context}}))
    result = snakemake(checkout, "-n", "--configfile", "config/config.yaml", str(overlay))
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "plan error: latency slice local/model-moe: estimated to need" in text, text
    assert "Traceback" not in text
