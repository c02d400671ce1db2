import os

if "PYTEST_XDIST_WORKER" in os.environ:  # the quick loop's workers share the cores: one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from moesd.architectures import describe
from moesd.fit import compute_speedup, parameter_bounds, sparsity_grid
from moesd.hardware import load_hardware
from moesd.theory import sigma_from_alpha

QUICK_LOOP = "not slow"


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config):
    """Workers for `-n auto` (pyproject's addopts): the edit-test loop, `-m "not slow"`, runs on every core.

    Any other selection, the README's full command among them, runs in this one process, so a test that
    times something (the slow ones) never shares the cores with another test.
    """
    if " ".join(config.option.markexpr.split()) != QUICK_LOOP:
        return 0
    return len(os.sched_getaffinity(0))


@pytest.fixture(scope="session")
def paper_grid():
    """The paper's sparsity-sweep grid (6 K x 2 gamma x 19 B = 228 rows), sigma at alpha = 0.9."""
    frame = sparsity_grid()
    return frame.assign(sigma=sigma_from_alpha(0.9, frame["gamma"]))


@pytest.fixture(scope="session")
def qwen_setup():
    """Bounds and a known parameter set inside them for Qwen2-57B + Qwen2-0.5B on 2xH800."""
    target, draft = describe("qwen2-57b-a14b"), describe("qwen2-0.5b")
    hardware = load_hardware("2xH800")
    bounds = parameter_bounds(target, draft, hardware)
    rp = hardware.ridge_point
    true = {
        "bias": 2.0 * bounds["bias"][0],
        "k2": 1.5 * bounds["k2"][0],
        "draft_bias": 3.0 * bounds["draft_bias"][0],
        "lam": 0.5,
        "s": 1.02,
        "reject_bias": 1e-4,
        "reject_k": 2e-6,
    }
    knee = true["s"] ** (true["lam"] * rp)
    true |= {"k1": 0.5 * true["bias"] / knee, "k3": 0.5 * true["k2"] / knee, "draft_k": 0.3 * true["draft_bias"] / knee}
    return {"target": target, "draft": draft, "hardware": hardware, "bounds": bounds, "true": true, "rp": rp}


@pytest.fixture(scope="session")
def synthetic_measurements(qwen_setup, paper_grid):
    """228 speedups from the known parameters with 1 % multiplicative noise."""
    frame = paper_grid.copy()
    clean = compute_speedup(qwen_setup["true"], frame.B, frame.gamma, frame.K, frame.E, frame.sigma, qwen_setup["rp"])
    rng = np.random.default_rng(1234)
    return frame.assign(speedup=clean * (1 + 0.01 * rng.standard_normal(len(frame))), speedup_clean=clean)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the checkout to run Snakemake in (one per test module)."""
    from .snakemake_run import copy_checkout

    return copy_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """family -> folder of a tiny random model saved by transformers."""
    from .tiny_models import FAMILIES, save_tiny

    root = tmp_path_factory.mktemp("tiny")
    return {family: save_tiny(family, root / family, seed=i) for i, family in enumerate(FAMILIES)}


def pytest_collection_modifyitems(items):
    """A test that decodes through vLLM (it takes the vllm_env fixture) is marked `vllm` and
    `slow`: each starts vLLM engines for about a minute, so the edit-test loop leaves them out."""
    for item in items:
        if "vllm_env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vllm)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def vllm_env():
    """The vLLM environment's python; the test skips without it, unless MOESD_REQUIRE_VLLM=1
    (CI), where a missing environment fails."""
    from moesd.backends.vllm import SETUP_COMMAND, VllmError, vllm_python

    try:
        return vllm_python()
    except VllmError as error:
        if os.environ.get("MOESD_REQUIRE_VLLM") == "1":
            pytest.fail(f"MOESD_REQUIRE_VLLM=1 but {error}")
        pytest.skip(f"vLLM environment absent: set it up with `{SETUP_COMMAND}`")
