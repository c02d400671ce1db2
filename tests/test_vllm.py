"""vLLM beside our engine (moesd.backends.vllm). The checks run everywhere; the side-by-side
decoding needs the vLLM environment (the vllm_env fixture: `bash workflow/scripts/setup_vllm.sh`)
and skips without it, unless MOESD_REQUIRE_VLLM=1 (CI), where a missing environment fails."""

import os
import random
import sys
import time
from pathlib import Path

import pytest
import torch
from moesd.backends.vllm import (
    SETUP_COMMAND,
    VllmError,
    VllmRequest,
    VllmResult,
    _environment,
    check,
    run,
    split_problem,
    vllm_python,
)
from moesd.decode import GenerationConfig, decode
from moesd.models.loading import load_model

from tests.tiny_models import save_tiny


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm")
    heads = dict(hidden_size=64, num_attention_heads=2)  # head_dim 32: vLLM's CPU attention has no 8
    kv = dict(heads, num_key_value_heads=1)
    return {
        "moe": save_tiny("qwen2_moe", root / "moe", seed=0, **kv),
        "draft": save_tiny("qwen2", root / "draft", seed=1, **kv),
        "mixtral": save_tiny("mixtral", root / "mixtral", seed=2, **kv),
        "opt": save_tiny("opt_pre_ln", root / "opt", seed=3, **heads),
        "other_vocab": save_tiny("qwen2", root / "other", vocab=128, seed=4, **kv),
    }


def ragged_prompts(n: int = 6, vocab: int = 96, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(3, 17))] for _ in range(n)]


def test_requests_vllm_cannot_serve_fail_in_one_line_before_loading(checkpoints, tmp_path, monkeypatch):
    ok = VllmRequest(target=checkpoints["moe"], draft=checkpoints["draft"], prompts=ragged_prompts(), mode="sd")
    check(ok)
    cases = [
        (dict(draft=checkpoints["other_vocab"]), "vocabulary 128 differs from the target's 96"),
        (dict(tensor_parallel_size=os.cpu_count() + 1), "--tensor-parallel-size"),
        (dict(draft=None), "--mode sd needs --draft"),
        (dict(method="medusa"), "--speculative-method must be one of draft_model, eagle"),
        (dict(target=tmp_path), "no config.json"),
        (dict(prompts=[[1, 2, 96]]), "prompt 0: empty or token ids outside the target's vocabulary 96"),
        (dict(gamma=0), "--gamma must be >= 1"),
        (dict(draft_sampling="typical"), "--draft-sampling must be one of probabilistic, greedy"),
    ]
    for change, message in cases:
        request = VllmRequest(**(vars(ok) | change))
        with pytest.raises(VllmError, match=message.replace("(", r"\(")) as info:
            check(request)
        assert "\n" not in str(info.value)
    narrow = save_tiny("qwen2", tmp_path / "narrow", hidden_size=32, num_attention_heads=2, num_key_value_heads=1)
    with pytest.raises(VllmError, match="--draft: head size 16; vLLM's CPU attention needs at least 32"):
        check(VllmRequest(**(vars(ok) | {"draft": narrow})))
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 96}')
    with pytest.raises(VllmError, match="architecture 'gpt2' is not one the vLLM backend supports"):
        check(VllmRequest(**(vars(ok) | {"target": tmp_path})))
    monkeypatch.setenv("MOESD_VLLM_PYTHON", str(tmp_path / "no-python"))
    with pytest.raises(VllmError, match=f"no vLLM environment: .*no-python does not exist .*{SETUP_COMMAND}"):
        run(ok)


@pytest.mark.slow  # spawns and kills a process group (about 2.5 s)
def test_the_worker_leaves_no_process_behind(tmp_path):
    """vLLM's engine core and tensor-parallel workers are the worker's children: when it times out
    (or ends), its whole process group goes with it."""
    import subprocess

    from moesd.backends.vllm import _run_group

    script = f"sleep 300 & echo $! > {tmp_path}/child; sleep 300"
    with pytest.raises(subprocess.TimeoutExpired):
        _run_group(["bash", "-c", script], dict(os.environ), str(tmp_path), timeout=2)
    child = int((tmp_path / "child").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    script = f"sleep 300 >/dev/null 2>&1 & echo $! > {tmp_path}/child; exit 0"  # a clean exit leaving a child
    assert _run_group(["bash", "-c", script], dict(os.environ), str(tmp_path), timeout=10).returncode == 0
    child = int((tmp_path / "child").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_heads_that_do_not_split_over_the_ranks_are_named():
    """Qwen2-0.5B's 14 heads (2 KV heads) split over 2 ranks, not 4: vLLM 0.32 runs the draft on
    the target's ranks, so config/paper.yaml's qwen2 pair cannot run at tensor parallel 4."""
    qwen_05b = {"num_attention_heads": 14, "num_key_value_heads": 2}
    assert split_problem(qwen_05b, 2) is None
    assert split_problem(qwen_05b, 4) == "14 attention heads do not split over tensor parallel 4"
    assert split_problem({"num_attention_heads": 32, "num_key_value_heads": 4}, 8) is None  # KV heads replicated
    assert split_problem({"num_attention_heads": 12, "num_key_value_heads": 3}, 2) == (
        "3 key-value heads neither split over nor replicate across tensor parallel 2"
    )


def test_each_rank_gets_as_many_math_threads_as_cores(monkeypatch):
    """Snakemake sets OMP_NUM_THREADS, MKL_NUM_THREADS, ... to a job's threads; a CPU rank bound
    to one core with two MKL threads spinning on it decoded 20-30x slower (the rehearsal)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "4")  # what Snakemake sets for a 4-thread job
    ranks = {
        tp: _environment(VllmRequest(target=Path("t"), prompts=[[1]], tensor_parallel_size=tp)) for tp in (1, 2, 4)
    }
    assert [ranks[tp]["VLLM_CPU_OMP_THREADS_BIND"] for tp in (1, 2, 4)] == ["0-3", "0-1|2-3", "0|1|2|3"]
    assert [ranks[tp]["MKL_NUM_THREADS"] for tp in (1, 2, 4)] == ["4", "2", "1"]
    assert all(env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] for env in ranks.values())
    cuda = _environment(VllmRequest(target=Path("t"), prompts=[[1]], device="cuda", tensor_parallel_size=2))
    assert cuda["MKL_NUM_THREADS"] == "4"  # a GPU job's host threads are the scheduler's


def test_the_engines_sockets_go_with_the_workers_scratch_folder(checkpoints, monkeypatch, tmp_path):
    """vLLM opens its IPC sockets in VLLM_RPC_BASE_PATH (the system's temporary folder unless
    set) and leaves them there: every run used to leave a few in /tmp. The worker's scratch folder,
    removed after the run, now holds them."""
    import json
    import subprocess

    from moesd.backends import vllm as backend

    seen = {}

    def fake_worker(command, env, folder, timeout):
        seen.update(folder=folder, base=env["VLLM_RPC_BASE_PATH"])
        (Path(folder) / "socket").write_text("")  # what the engine leaves
        result = {"passes": [{"outputs": [[1]], "seconds": [0.1], "metrics": {}}]}
        Path(command[-1]).write_text(json.dumps(result))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.delenv("VLLM_RPC_BASE_PATH", raising=False)
    monkeypatch.setenv("MOESD_VLLM_PYTHON", sys.executable)
    monkeypatch.setattr(backend, "_run_group", fake_worker)
    result = backend.run(VllmRequest(target=checkpoints["moe"], prompts=[[1, 2]], max_new_tokens=1))
    assert result.outputs == [[1]] and seen["base"] == seen["folder"] and not Path(seen["folder"]).exists()
    monkeypatch.setenv("VLLM_RPC_BASE_PATH", str(tmp_path))  # the user's own choice stands
    backend.run(VllmRequest(target=checkpoints["moe"], prompts=[[1, 2]], max_new_tokens=1))
    assert seen["base"] == str(tmp_path)


def test_generate_names_the_missing_vllm_environment(tmp_path, monkeypatch, checkpoints):
    from moesd.cli import main

    monkeypatch.setenv("MOESD_VLLM_PYTHON", str(tmp_path / "none"))
    args = ["generate", "--backend", "vllm", "--target", f"dir:{checkpoints['moe']}", "--prompts", "random:2:5"]
    with pytest.raises(SystemExit) as info:
        main(args + ["--out", str(tmp_path / "out.jsonl")])
    assert info.value.code != 0 and not (tmp_path / "out.jsonl").exists()
    with pytest.raises(SystemExit):  # an arch: spec has no weights for vLLM to load
        main(
            [
                "generate",
                "--backend",
                "vllm",
                "--target",
                "arch:qwen2-0.5b",
                "--prompts",
                "random:2:5",
                "--out",
                str(tmp_path / "o"),
            ]
        )


def test_a_failed_worker_reports_its_root_error():
    from moesd.backends.vllm import _cause

    log = "\n".join(
        [
            "(MainProcess) WARNING [base.py] ValueError: Tokenizer not available when `skip_tokenizer_init=True`",
            "(Worker) ERROR [multiproc_executor.py] RuntimeError: Unsupported CPU attention configuration: head_dim=8",
            "(EngineCore) ERROR [core.py] RuntimeError: Worker failed with error 'Unsupported CPU attention'",
            "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above)",
        ]
    )
    assert _cause(log) == "RuntimeError: Unsupported CPU attention configuration: head_dim=8"
    assert _cause("EngineDeadError: EngineCore encountered an issue.").startswith("EngineDeadError")
    assert _cause("killed") == "killed"
    pydantic = "\n".join(  # vLLM's config check, as `moesd generate --tensor-parallel-size 2` met it
        [
            "pydantic_core._pydantic_core.ValidationError: 1 validation error for SpeculativeConfig",
            "  Value error, Total number of attention heads (1) must be divisible by tensor parallel size (2). "
            "[type=value_error, input_value=ArgsKwargs((), {...}), input_type=ArgsKwargs]",
            "    For further information visit https://errors.pydantic.dev/2.12/v/value_error",
        ]
    )
    assert _cause(pydantic) == (
        "ValidationError: SpeculativeConfig: Total number of attention heads (1) must be divisible by tensor "
        "parallel size (2)."
    )


def test_a_failed_worker_keeps_its_whole_log_beside_the_jobs(tmp_path, monkeypatch):
    from moesd.backends.vllm import _keep_log

    monkeypatch.setenv("MOESD_WORKER_LOGS", str(tmp_path / "logs/workers"))
    path = _keep_log("line 1\nline 2\n")
    assert path.parent == tmp_path / "logs/workers" and path.read_text() == "line 1\nline 2\n"


def test_acceptance_from_vllm_counters():
    metrics = {
        "vllm:spec_decode_num_drafts": 10,
        "vllm:spec_decode_num_draft_tokens": 40,
        "vllm:spec_decode_num_accepted_tokens": 22,
        "vllm:spec_decode_num_accepted_tokens_per_pos": [9, 6, 4, 3],
    }
    acceptance = VllmResult([], [], metrics).acceptance()
    assert acceptance["alpha"] == pytest.approx(22 / 40)
    assert acceptance["sigma"] == pytest.approx((22 + 10) / (10 * 5))  # tokens per round over gamma + 1


def ours(target, prompts, max_new, draft=None, gamma=4):
    config = GenerationConfig(max_new_tokens=max_new, temperature=0.0, gamma=gamma, stop_at_eos=False)
    model = load_model(f"dir:{target}", device="cpu", dtype=torch.float32)
    drafter = load_model(f"dir:{draft}", device="cpu", dtype=torch.float32) if draft else None
    return decode(model, prompts, config, draft=drafter, mode="sd" if draft else "ar").output_ids


# an engine as the rehearsal starts it (config/rehearsal.yaml's vllm): eager, the engine core in the
# worker's process; about half the start of vLLM's default. These tests check outputs, not speed; the
# default start (torch.compile, vLLM's process layout) is the one test_greedy_outputs_agree_... takes.
QUICK_START = {"enforce_eager": True, "in_process": True}


def vllm(target, prompts, max_new, **kwargs):
    request = VllmRequest(
        target=target, prompts=prompts, max_new_tokens=max_new, batch_size=4, **(QUICK_START | kwargs)
    )
    return run(request, timeout=600)


DEFAULT_START = {"enforce_eager": False, "in_process": False}  # vLLM's own: the paper's run


@pytest.fixture(scope="module")
def vllm_ar(checkpoints):
    """vLLM's greedy AR outputs of the tiny MoE on the ragged prompts, one rank (12 new tokens), from
    vLLM's default start (compiled, its own process layout): the path a real run takes."""
    from moesd.backends.vllm import VllmError

    try:
        vllm_python()
    except VllmError:
        return None  # the tests that use it ask for vllm_env, which skips or fails
    return vllm(checkpoints["moe"], ragged_prompts(), 12, **DEFAULT_START).outputs


def test_greedy_outputs_agree_across_engines_and_modes(checkpoints, vllm_env, vllm_ar):
    prompts, new = ragged_prompts(), 12
    reference = ours(checkpoints["moe"], prompts, new)
    assert ours(checkpoints["moe"], prompts, new, draft=checkpoints["draft"]) == reference
    assert vllm_ar == reference
    sd = vllm(checkpoints["moe"], prompts, new, draft=checkpoints["draft"], mode="sd", gamma=4, **DEFAULT_START)
    assert sd.outputs == reference
    acceptance = sd.acceptance()
    per_position = acceptance["accepted_per_position"]
    assert acceptance["rounds"] > 0 and 0 <= acceptance["accepted"] <= acceptance["drafted"]
    assert all(a >= b for a, b in zip(per_position, per_position[1:], strict=False))  # non-increasing


@pytest.mark.parametrize("family", ["mixtral", "opt"])
def test_vllm_matches_our_engine_on_other_families(checkpoints, family, vllm_env):
    prompts = ragged_prompts(seed=1)
    assert vllm(checkpoints[family], prompts, 10).outputs == ours(checkpoints[family], prompts, 10)


def test_k_overridden_through_vllm_is_the_edited_config(checkpoints, tmp_path, vllm_env, vllm_ar):
    """The sparsity sweep as the paper did it (Sec. 4.3): vLLM's hf_overrides of num_experts_per_tok
    decode as our engine does on a copy whose config.json was edited, and unlike the native K."""
    import json
    import shutil

    edited = shutil.copytree(checkpoints["moe"], tmp_path / "k1")
    config = json.loads((edited / "config.json").read_text())
    assert config["num_experts_per_tok"] == 2
    (edited / "config.json").write_text(json.dumps(config | {"num_experts_per_tok": 1}))
    prompts = ragged_prompts()
    swept = vllm(checkpoints["moe"], prompts, 12, hf_overrides={"num_experts_per_tok": 1}).outputs
    assert swept == ours(edited, prompts, 12) and swept != vllm_ar


def test_tensor_parallel_equals_one_rank(checkpoints, vllm_env, vllm_ar):
    if os.cpu_count() < 2:
        pytest.skip("tensor parallelism needs two cores")
    assert vllm(checkpoints["moe"], ragged_prompts(), 12, tensor_parallel_size=2).outputs == vllm_ar


def test_a_model_drafting_for_itself_accepts_every_draft_at_t1(checkpoints, vllm_env):
    """vLLM's sampled acceptance is the standard rule, min(1, p/q): a model drafting for itself
    (p = q) accepts every draft at T = 1 as at T = 0. On vLLM's CPU build this needs moesd's plugin
    (workflow/vllm_plugin, docs/vllm.md): without it 2.4 % of the drafts were accepted."""
    from moesd.backends.vllm import run_passes

    model, prompts = checkpoints["draft"], ragged_prompts(8)
    request = VllmRequest(target=model, draft=model, prompts=prompts, mode="sd", gamma=4, batch_size=8,
                          max_new_tokens=32, draft_sampling="probabilistic", **QUICK_START)  # fmt: skip
    passes = [{"prompts": prompts, "temperature": t, "seed": 0, "max_new_tokens": 32} for t in (0.0, 1.0)]
    for temperature, result in zip((0.0, 1.0), run_passes(request, passes, timeout=600), strict=True):
        counts = result.acceptance()
        assert counts["drafted"] > 0 and counts["accepted"] / counts["drafted"] >= 0.9, (temperature, counts)


def test_the_plugins_expansion_is_vllms_per_token_expansion():
    """workflow/vllm_plugin's expand_batch_to_tokens (it stands in for a Triton kernel that does
    nothing on vLLM's CPU build): each request's value repeated for each of its tokens."""
    import importlib.util

    from moesd.paths import REPO_ROOT

    spec = importlib.util.spec_from_file_location("plugin", REPO_ROOT / "workflow/vllm_plugin/moesd_vllm_plugin.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    x, cu = torch.tensor([0.5, 0.0, 2.0]), torch.tensor([2, 5, 6])
    assert plugin.expand_batch_to_tokens(x, cu, 6).tolist() == [0.5, 0.5, 0.0, 0.0, 0.0, 2.0]
    assert plugin.expand_batch_to_tokens(x, cu, 6, replace_from=0.0, replace_to=1.0).tolist()[2:5] == [1.0] * 3
