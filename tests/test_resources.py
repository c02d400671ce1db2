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
    """A job asks for the GPUs of what it loads on its platform: vLLM's slices the platform's GPUs
    (its tensor-parallel size), our engine's one; and for the platform's GPU model."""
    from moesd.config import acceptance_vllm_slices, e2e_vllm_slices

    gpus = {s: job_resources(paper, "e2e_vllm", s)["gpu"] for s in e2e_vllm_slices(paper)}
    assert gpus["2xH800/qwen2"] == 2 and gpus["4xL40/mixtral-eagle"] == 4 and gpus["4xA800/opt"] == 4
    assert {job_resources(paper, "acceptance_vllm", s)["gpu"] for s in acceptance_vllm_slices(paper)} == {2, 4}
    assert job_resources(paper, "latency", "1xH200/e2e-opt")["gpu"] == 1  # our engine: one device of the platform
    assert job_resources(paper, "e2e_vllm", "4xL40/opt")["gpu_model"] == "l40"
    assert job_resources(paper, "e2e_vllm", "4xL40/opt")["cpus_per_task"] == 32
    two = copy.deepcopy(paper)
    two["pairs"][1]["tensor_parallel_size"] = 2  # a pair's own size holds on every platform
    assert job_resources(two, "e2e_vllm", "4xA800/opt")["gpu"] == 2


def test_host_memory_holds_the_largest_checkpoint(paper):
    assert 110 < model_gb("hf:Qwen/Qwen2-57B-A14B-Instruct@main") < 120  # 57.4 B parameters in bf16
    assert 55 < model_gb("hf:facebook/opt-30b@main") < 65
    qwen2 = 1000 * model_gb("hf:Qwen/Qwen2-57B-A14B-Instruct@main")
    assert job_resources(paper, "latency", "1xH200/model-qwen2-57b-a14b")["mem_mb"] > qwen2
    assert (
        job_resources(paper, "latency", "1xH200/model-qwen2-57b-a14b-sweep-K8")["mem_mb"] < 20_000
    )  # arch: on the GPU
    assert job_resources(paper, "latency", "1xH200/model-opt-350m")["mem_mb"] < 20_000  # a draft's job is small


def test_runtime_grows_with_the_grid_within_bounds(paper):
    """Each latency slice's time limit follows its own grid (the e2e pair's batch sizes here),
    within [MIN_RUNTIME, MAX_RUNTIME]; a model's slice takes far less than the whole stage as one
    job, which hits the 24 h bound."""
    from moesd.config import latency_slices

    small = copy.deepcopy(paper)
    small["latency"]["e2e"]["batch_sizes"] = [1]
    assert (
        MIN_RUNTIME
        <= job_resources(small, "latency", "1xH200/e2e-opt")["runtime"]
        < job_resources(paper, "latency", "1xH200/e2e-opt")["runtime"]
    )
    runtimes = {s: job_resources(paper, "latency", s)["runtime"] for s in latency_slices(paper)}
    assert all(MIN_RUNTIME <= r <= MAX_RUNTIME for r in runtimes.values())
    assert runtimes["1xH200/model-qwen2-57b-a14b"] < job_resources(paper, "latency")["runtime"] == MAX_RUNTIME
    assert all(job_resources(paper, s)["runtime"] <= MAX_RUNTIME for s in GPU_STAGES)


def test_a_cpu_experiment_asks_for_no_gpu():
    config = validate_config({})
    for stage in GPU_STAGES:
        res = job_resources(config, stage)
        assert res["gpu"] == 0 and res["cpus_per_task"] == 2 and res["mem_mb"] < 8000, (stage, res)
    with pytest.raises(ValueError, match="no resources for stage 'plots'"):
        job_resources(config, "plots")


def test_a_cpu_jobs_memory_grows_with_its_batch_and_context_and_a_local_run_stops_at_its_limit():
    """Issue 27: batch sizes of 4096 at a 32k context passed validation and filled memory minutes
    later. The estimate now adds the largest batch's KV cache, logits and activations, and a
    local run whose job cannot fit stops in one line with the estimate."""
    from moesd.config import latency_slices
    from moesd.resources import check_host_memory

    config = load_config(REPO_ROOT / "config/config.yaml")
    base = {s: job_resources(config, "latency", s)["mem_mb"] for s in latency_slices(config)}
    big = copy.deepcopy(config)
    big["latency"]["batch_sizes"] = [1, 4096]
    big["latency"]["context"].update(source="humaneval", max_length=32000)  # drawn lengths up to 32k
    big["latency"]["models"] = [m for m in big["latency"]["models"] if m["name"] != "dense"]  # 2048 positions
    grown = {
        s: job_resources(validate_config(big), "latency", s)["mem_mb"] for s in latency_slices(validate_config(big))
    }
    assert grown["local/model-moe"] > 100 * base["local/model-moe"] and max(base.values()) < 8000
    assert grown["local/reject"] == base["local/reject"]  # the rejection rule loads no model
    check_host_memory({"latency slice a": {"mem_mb": 4000}}, available_mb=8000)
    with pytest.raises(ValueError, match=r"latency slice b: estimated to need 9.0 GB of host memory .* has 8.0 GB"):
        check_host_memory({"latency slice a": {"mem_mb": 4000}, "latency slice b": {"mem_mb": 9000}}, 8000)


def test_a_cpu_job_of_our_engine_counts_the_packed_copy_of_its_weights():
    """On the CPU moesd.models.linear keeps each weight and a copy packed for oneDNN: our
    engine's job asks for both; a GPU job (no packing) for the weights once."""
    from moesd.resources import HOST_BASE_MB, PACKED_COPIES

    config = load_config(REPO_ROOT / "config/config.yaml")
    spec = next(m["spec"] for m in config["latency"]["models"] if m["name"] == "moe")
    weights_mb = model_gb(spec, 4) * 1000
    mem = job_resources(config, "latency", "local/model-moe")["mem_mb"]
    assert PACKED_COPIES == 2 and mem >= HOST_BASE_MB["cpu"] + 2 * weights_mb
    single = job_resources(config, "latency", "local/model-draft")["mem_mb"]
    assert single < mem - weights_mb  # the draft is smaller; the MoE's second copy is counted


def test_only_estimates_of_known_sizes_can_stop_a_plan():
    """A hub model moesd does not know counts as a 30 GB guess in its job's request, but the plan's
    memory check leaves its job alone (the hub test's tiny models once stopped their own plan)."""
    from moesd.config import latency_slices
    from moesd.resources import estimate_known

    config = load_config(REPO_ROOT / "config/config.yaml")
    assert all(estimate_known(config, "latency", s) for s in latency_slices(config))
    unknown = copy.deepcopy(config)
    unknown["latency"]["models"][0]["spec"] = "hf:someone/unknown-moe@main"
    assert not estimate_known(unknown, "latency", "local/model-moe")


def test_common_rounds_hold_every_batch_sizes_cache_and_a_gpu_holds_one(paper):
    """latency.rounds.interleave: the component grid's working memory is the caches of every batch
    size at once where a model's batch sizes share rounds (auto on a CPU, batch_sizes anywhere),
    one batch size's where they do not (tokens, auto on a GPU: the paper's models there fit only so)."""
    from moesd.config.memory import working_gb

    spec = ["arch:qwen2-57b-a14b"]

    def working(device, interleave):
        config = copy.deepcopy(paper)
        config["latency"]["device"], config["latency"]["rounds"]["interleave"] = device, interleave
        return working_gb(config, "latency", spec, 2.0, "timing")

    grid = paper["latency"]["batch_sizes"]
    assert working("cuda", "auto") == working("cuda", "tokens") == working("cpu", "tokens")
    assert working("cpu", "auto") == working("cuda", "batch_sizes") > working("cpu", "tokens")
    assert working("cpu", "auto") / working("cpu", "tokens") > 0.9 * sum(grid) / max(grid)
