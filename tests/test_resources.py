"""What each measuring job asks a cluster for (moesd.resources), from the config."""

import copy

import pytest
from moesd.config import load_config, validate_config
from moesd.paths import REPO_ROOT
from moesd.resources import GPU_STAGES, MAX_RUNTIME, MIN_RUNTIME, job_resources, model_gb


@pytest.fixture(scope="module")
def paper():
    return load_config(REPO_ROOT / "config/paper.yaml")


def test_gpus_are_the_tensor_parallel_size_of_what_a_job_loads(paper):
    assert {s: job_resources(paper, s)["gpu"] for s in GPU_STAGES} == {
        "acceptance": 1, "acceptance_vllm": 2, "routing": 1, "latency": 1, "e2e_vllm": 2, "environment": 1,
    }  # fmt: skip
    four = copy.deepcopy(paper)
    four["pairs"][1]["tensor_parallel_size"] = 4  # OPT-30B over 4 GPUs, as the paper's 4xL40
    assert job_resources(four, "e2e_vllm")["gpu"] == job_resources(four, "acceptance_vllm")["gpu"] == 4
    assert job_resources(four, "e2e_vllm")["cpus_per_task"] == 32


def test_host_memory_holds_the_largest_checkpoint(paper):
    assert 110 < model_gb("hf:Qwen/Qwen2-57B-A14B-Instruct@main") < 120  # 57.4 B parameters in bf16
    assert 55 < model_gb("hf:facebook/opt-30b@main") < 65
    assert job_resources(paper, "latency")["mem_mb"] > 1000 * model_gb("hf:Qwen/Qwen2-57B-A14B-Instruct@main")
    arch_only = copy.deepcopy(paper)
    arch_only["latency"]["models"] = [m for m in paper["latency"]["models"] if m["spec"].startswith("arch:")]
    assert job_resources(arch_only, "latency")["mem_mb"] < 20_000  # random weights start on the GPU


def test_runtime_grows_with_the_grid_within_bounds(paper):
    """Each latency slice's time limit follows its own grid (the e2e pair's batch sizes here),
    within [MIN_RUNTIME, MAX_RUNTIME]; a model's slice takes far less than the whole stage as one
    job, which hits the 24 h bound."""
    from moesd.config import latency_slices

    small = copy.deepcopy(paper)
    small["latency"]["e2e"]["batch_sizes"] = [1]
    assert (
        MIN_RUNTIME
        <= job_resources(small, "latency", "e2e-qwen2")["runtime"]
        < job_resources(paper, "latency", "e2e-qwen2")["runtime"]
    )
    runtimes = {s: job_resources(paper, "latency", s)["runtime"] for s in latency_slices(paper)}
    assert all(MIN_RUNTIME <= r <= MAX_RUNTIME for r in runtimes.values())
    assert runtimes["model-qwen2-57b-a14b"] < job_resources(paper, "latency")["runtime"] == MAX_RUNTIME
    assert all(job_resources(paper, s)["runtime"] <= MAX_RUNTIME for s in GPU_STAGES)


def test_a_cpu_experiment_asks_for_no_gpu():
    config = validate_config({})
    for stage in GPU_STAGES:
        res = job_resources(config, stage)
        assert res["gpu"] == 0 and res["cpus_per_task"] == 2 and res["mem_mb"] < 8000, (stage, res)
    with pytest.raises(ValueError, match="no resources for stage 'plots'"):
        job_resources(config, "plots")
