"""The smoke experiment through a real Slurm: a one-node cluster started here
(tests/slurm_cluster.py: munged, MariaDB, slurmdbd, slurmctld, slurmd from Debian's packages,
installed by workflow/scripts/setup_slurm.sh), `snakemake --executor slurm` with a copy of
profiles/slurm that adds the partition and account as the README tells a user to, every job
completed, and the resources each job requested read back from Slurm's accounting.

Runs with `python -m pytest -m slurm`; needs root and the packages, and skips without them
unless MOESD_REQUIRE_SLURM=1 (CI), where a missing set-up fails."""

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from moesd.config import latency_slices, routing_platform, validate_config
from moesd.paths import REPO_ROOT
from moesd.resources import job_resources

from .slurm_cluster import ACCOUNT, PARTITION, SECOND_PARTITION, local_cluster
from .snakemake_run import copy_checkout

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SUBMITTED = {  # the smoke plan's jobs that are not localrules, and the stage whose resources they take
    "environment": "environment",
    "engine_check_model": None,
    "profile_step": None,  # latency.profile, on in the smoke experiment
    "train_models": None,
    "prompts": None,
    "measure_acceptance": "acceptance",
    "measure_routing": "routing",
    "measure_latency": "latency",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from local_cluster(tmp_path_factory)


PLATFORMS = {  # two platforms of one threads each, one per partition (the node's two CPUs run one of each at once)
    "platforms": [
        {"name": "cpu-a", "threads": 1, "slurm": {"partition": PARTITION}},
        {"name": "cpu-b", "threads": 1, "slurm": {"partition": SECOND_PARTITION}},
    ]
}


def test_the_smoke_experiment_runs_through_slurm(cluster, tmp_path):
    """The smoke experiment on two platforms, each its own partition: every job completed, each
    asking for its own resources and its platform's partition, and slices of the two platforms
    ran at the same time (accounting's start and end times)."""
    root = tmp_path / "checkout"
    root.mkdir()
    copy_checkout(root)
    profile = yaml.safe_load((REPO_ROOT / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"] += [f"slurm_partition={PARTITION}", f"slurm_account={ACCOUNT}"]  # the user's part
    (tmp_path / "mycluster").mkdir()
    (tmp_path / "mycluster/config.yaml").write_text(yaml.safe_dump(profile))
    (root / "config/two-partitions.yaml").write_text(yaml.safe_dump(PLATFORMS))
    env = cluster.env | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{cluster.env['PATH']}"}
    # a cluster's CPU platforms are nodes of their own: the one-at-a-time timing of this machine
    # (profiles/default's cpu_timing=1, and moesd.timing's lock) is lifted so that the two
    # partitions' jobs can overlap
    env |= {"MOESD_TIMING_LOCK": "off"}
    args = ["--profile", str(tmp_path / "mycluster"), "--configfile", "config/smoke.yaml", "config/two-partitions.yaml",
            "--resources", "cpu_timing=2", "--slurm-init-seconds-before-status-checks", "5"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=root, env=env, capture_output=True, text=True, timeout=2400
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert (root / "figures/smoke/claims.md").is_file()

    jobs = cluster.jobs()
    assert jobs and all(j["State"] == "COMPLETED" and j["ExitCode"] == "0:0" for j in jobs), jobs
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        rule = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        by_rule.setdefault(rule, []).append(job)
    assert set(by_rule) == set(SUBMITTED), sorted(by_rule)  # the light rules ran on the "login node"
    config = validate_config(yaml.safe_load((root / "config/smoke.yaml").read_text()) | PLATFORMS)
    slices = {key.replace("/", "_"): key for key in latency_slices(config)}  # the comment joins wildcards with _
    assert sorted(j["Comment"].split("_wildcards_", 1)[1] for j in by_rule["measure_latency"]) == sorted(slices)
    for rule, stage in SUBMITTED.items():
        for job in by_rule[rule]:
            wildcards = job["Comment"].split("_wildcards_", 1)[1] if "_wildcards_" in job["Comment"] else None
            if rule == "measure_latency":  # one job per platform and slice, each with its slice's resources
                want = job_resources(config, stage, slices[wildcards])
            elif rule == "environment":  # one probe per platform, on it
                want = job_resources(config, stage, platform=wildcards)
            elif rule == "measure_acceptance":  # one job per pair
                want = job_resources(config, stage, wildcards)
            elif rule == "measure_routing":  # one job, on the first platform that holds its models
                want = job_resources(config, stage, platform=routing_platform(config))
            else:
                want = job_resources(config, stage) if stage else {"cpus_per_task": 2, "mem_mb": 8000, "runtime": 60}
            assert (job["Partition"], job["Account"]) == (want.get("slurm_partition", PARTITION), ACCOUNT), job
            assert job["ReqCPUS"] == str(want["cpus_per_task"]), job
            assert job["ReqMem"] == f"{want['mem_mb']}M", job
            hours, minutes = divmod(want["runtime"], 60)
            assert job["Timelimit"] == f"{hours:02d}:{minutes:02d}:00", job
            assert "gres/gpu" not in job["ReqTRES"]  # a CPU experiment asks for no GPU
    spans = {
        partition: [
            (datetime.fromisoformat(j["Start"]), datetime.fromisoformat(j["End"]))
            for j in by_rule["measure_latency"]
            if j["Partition"] == partition
        ]
        for partition in (PARTITION, SECOND_PARTITION)
    }
    assert len(spans[PARTITION]) == len(spans[SECOND_PARTITION]) == len(slices) // 2
    overlap = [(a, b) for a in spans[PARTITION] for b in spans[SECOND_PARTITION] if a[0] < b[1] and b[0] < a[1]]
    assert overlap, spans  # the two platforms' slices ran side by side


def test_the_cluster_allocates_its_gpu(cluster, tmp_path):
    """The node's GPU generic resource is one the scheduler allocates: what a GPU rule's
    `gpu: N` becomes (--gpus=N) reaches a job."""
    out = tmp_path / "gpu.out"
    submit = ["sbatch", "--parsable", "--wait", "--gpus=1", "-p", PARTITION, "-A", ACCOUNT, "-o", str(out),
              "--comment", "gpu_check", "--wrap", "echo $SLURM_JOB_GPUS"]  # fmt: skip
    result = subprocess.run(submit, env=cluster.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    job = next(j for j in cluster.jobs(include=job_id) if j["JobID"] == job_id)
    assert "gres/gpu=1" in job["AllocTRES"] and job["State"] == "COMPLETED"
