"""The Snakemake workflow, run for real in a copy of the checkout (minutes; the dry-run checks are
in test_workflow_plan.py)."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from moesd.cli import main
from moesd.figures import MEASURED_FIGURES, NOTEBOOKS
from moesd.paths import REPO_ROOT

from .snakemake_run import OVERLAYS, copy_checkout, snakemake

pytestmark = pytest.mark.slow  # every test here runs jobs (`python -m pytest -m "not slow"` skips them)


SMOKE_OUTPUTS = {
    "figures/smoke/theory": [
        "active_experts.png",
        "active_experts.pdf",
        "active_experts.caption.md",
        "tokens_per_expert.png",
        "roofline_speedup.png",
        "saturation.csv",
        "roofline_speedup.csv",
        "fit_quality.csv",
        "fit_quality.md",
        "sparsity_fit.png",
        "sparsity_fit.pdf",
    ],
    "figures/smoke/engine_check": ["model_0.csv"],
    "figures/smoke": [
        *(f"{name}.{ext}" for name in MEASURED_FIGURES for ext in ("png", "pdf", "caption.md")),
        "tables_1_2.csv",
        "tables_1_2.md",
        "fit_quality.csv",
        "fit_quality.md",
        "claims.md",
        "claims.csv",
        *(f"notebooks/{name}.ipynb" for name in NOTEBOOKS),
    ],
    "figures/smoke/acceptance": ["routing.png", "routing.pdf", "routing.caption.md"],
    "data/runs/smoke": [
        "config.json",
        "env.json",
        "env/local.json",
        "theory/simulated_sweep.csv",
        "theory/fit/params.json",
        "models/manifest.json",
        "models/target/model.safetensors",
        "models/target/tokenizer.json",
        "models/draft/model.safetensors",
        "prompts/stats.csv",
        "prompts/tiny-moe/humaneval.jsonl",
        "acceptance/rounds.csv",
        "acceptance/summary.csv",
        "acceptance/routing.csv",
        "speedup/composed.csv",
        "speedup/e2e.csv",
        "speedup/missing.csv",
        "speedup/step_profile.csv",
        "fit/params.json",
        "fit/predictions.csv",
        "fit/curves.csv",
        "fit/metrics.csv",
    ],
}


@pytest.fixture(scope="module")
def smoke_run(checkout):
    result = snakemake(checkout, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "moesd: experiment smoke done; wall time" in result.stdout + result.stderr
    return checkout


def test_engines_side_by_side_on_this_machine(checkout, vllm_env):
    """config/engines.yaml over the smoke sizes: the trained pair's acceptance and e2e speedup per
    batch size through both engines (same prompts), one e2e table with a backend column, the
    engines figure and table, and the claims beside them."""
    import pandas as pd

    result = snakemake(checkout, "--cores", "2", "--configfile", "config/smoke.yaml", "config/engines.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    run = checkout / "data/runs/engines"
    ours, vllm = pd.read_csv(run / "acceptance/summary.csv"), pd.read_csv(run / "acceptance/summary_vllm.csv")
    assert list(vllm.columns) == list(ours.columns) and set(vllm["backend"]) == {"vllm"}
    keys = ["target", "draft", "dataset", "temperature", "gamma"]
    assert sorted(map(tuple, vllm[keys].values)) == sorted(map(tuple, ours[keys].values))
    assert vllm["sigma"].between(1 / 5, 1).all() and (vllm["n_rounds"] > 0).all()
    raw = pd.read_csv(run / "latency/e2e_vllm.csv")
    assert (raw["status"] == "ok").all() and set(raw["backend"]) == {"vllm"}
    points = raw.drop_duplicates(["mode", "B", "temperature"])
    assert (points["peak_running"] == points["B"]).all()  # vLLM ran exactly B sequences at once
    assert (raw["prefill_seconds"] < raw["seconds"]).all()
    e2e = pd.read_csv(run / "speedup/e2e.csv")
    per_engine = e2e.groupby("backend")[["temperature", "B"]].apply(lambda f: sorted(map(tuple, f.values)))
    assert per_engine["ours"] == per_engine["vllm"] and len(per_engine["ours"]) == 6  # 2 temperatures x 3 B
    table = pd.read_csv(checkout / "figures/engines/engines.csv")
    assert len(table) == 6 and (table["vllm_over_ours"] > 0).all()
    for name in ("engines.png", "engines.md", "claims.md", "fig6_e2e.png", "tables_1_2.md"):
        assert (checkout / "figures/engines" / name).is_file(), name
    assert "## e2e vllm" in (checkout / "figures/engines/tables_1_2.md").read_text()


def test_smoke_run_produces_every_output_then_nothing_to_do(smoke_run):
    for folder, names in SMOKE_OUTPUTS.items():
        for name in names:
            path = smoke_run / folder / name
            assert path.is_file() and path.stat().st_size > 0, path
    assert not list((smoke_run / "data/runs/smoke").rglob(".*.tmp"))  # no half-written files
    again = snakemake(smoke_run, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    composed = smoke_run / "data/runs/smoke/speedup/composed.csv"
    kept, times = composed.read_bytes(), composed.stat()
    composed.unlink()  # a deleted intermediate table is made again, not overlooked
    plan = snakemake(smoke_run, "-n", "--configfile", "config/smoke.yaml")
    composed.write_bytes(kept)
    os.utime(composed, ns=(times.st_atime_ns, times.st_mtime_ns))  # as it was, for the tests after this one
    assert plan.returncode == 0 and "rule speedup:" in plan.stdout + plan.stderr


def test_smoke_tables_are_well_formed(smoke_run):
    import pandas as pd

    run = smoke_run / "data/runs/smoke"
    summary = pd.read_csv(run / "acceptance/summary.csv")
    assert {
        "target",
        "draft",
        "dataset",
        "temperature",
        "gamma",
        "alpha",
        "alpha_eq5",
        "sigma",
        "mean_accepted_length",
        "per_position_acceptance",
        "n_rounds",
        "n_prompts",
    } <= set(summary.columns)
    assert len(summary) == 2 * 2 * 2  # datasets x temperatures x gammas
    assert summary["alpha"].between(0, 1).all() and (summary["n_prompts"] == 8).all()
    assert ((summary["sigma"] >= 1 / (summary["gamma"] + 1) - 1e-9) & (summary["sigma"] <= 1)).all()
    routing = pd.read_csv(run / "acceptance/routing.csv")
    assert {"humaneval", "random"} <= set(routing["inputs"]) and {"batch", "sequence"} == set(routing["mode"])
    stats = pd.read_csv(run / "prompts/stats.csv")
    assert set(stats["dataset"]) == {"humaneval", "mtbench"} and (stats["min_tokens"] > 0).all()
    forward = pd.read_csv(run / "latency/forward.csv")
    assert (forward["status"] == "ok").all()
    # every model x K x B x s point: moe with K in {2, 8}, dense; s = 1..gamma_max+1; each point 3 to 9
    # kept rounds (latency.rounds: disturbed rounds measured again, rounds added up to 3 x repeats)
    points = forward.groupby(["model", "K", "B", "s"])
    assert points.ngroups == 3 * 3 * 5 and points.size().between(3, 9).all()
    assert (points["rounds_taken"].first() <= 9).all() and (points["remeasured"].first() >= 0).all()
    kept = points.size().to_numpy()
    assert (points["rounds_taken"].first().to_numpy() == kept + points["remeasured"].first().to_numpy()).all()
    assert {
        "model",
        "role",
        "B",
        "s",
        "K",
        "E",
        "context_len",
        "repeat",
        "seconds",
        "expert_impl",
        "dtype",
        "device",
        "distinct_experts_mean",
    } <= set(forward.columns)
    moe = forward[forward["model"] == "moe"]
    assert set(moe["K"]) == {2, 8} and (moe["distinct_experts_mean"] >= moe["K"]).all()
    assert set(pd.read_csv(run / "latency/draft.csv")["s"]) == {1}
    e2e = pd.read_csv(run / "latency/e2e.csv")
    assert {
        "target",
        "draft",
        "dataset",
        "temperature",
        "gamma",
        "B",
        "mode",
        "acceptance_source",
        "seconds",
        "tokens",
        "sigma",
    } <= set(e2e.columns)
    assert set(e2e["mode"]) == {"ar", "sd"} and e2e["acceptance_source"].str.startswith("forced alpha=").any()
    assert (e2e["prefill_seconds"] > 0).all() and (e2e["prefill_seconds"] < e2e["seconds"]).all()
    assert set(e2e["dtype"]) == set(forward["dtype"])  # one dtype for the stage (latency.dtype)
    assert (e2e["acceptance_source"] == "real").any()
    assert set(e2e["temperature"]) == {0.0, 1.0}
    assert set(e2e["batching"]) == {"continuous"}  # the default: SD runs to B x max_new_tokens in all
    assert (e2e["tokens"] >= e2e["B"] * e2e["max_new_tokens"]).all()


def test_smoke_analysis_outputs(smoke_run):
    import json

    import pandas as pd

    run, figures = smoke_run / "data/runs/smoke", smoke_run / "figures/smoke"
    composed = pd.read_csv(run / "speedup/composed.csv")
    # 2 datasets x 2 temperatures x gammas {2, 4} x B {1, 4, 8} x targets (moe K 2 and 8, dense)
    assert len(composed) == 2 * 2 * 2 * 3 * 3
    # well formed, not timed: tiny smoke models make the ratios noise, so only their sign is checked
    assert (composed[["speedup", "target_efficiency", "t_ar", "t_sd"]] > 0).all().all()
    for column in ("speedup", "target_efficiency"):  # intervals from the resampled raw repeats
        low, high = composed[f"{column}_ci_low"], composed[f"{column}_ci_high"]
        assert ((low <= composed[column] + 1e-12) & (composed[column] <= high + 1e-12)).all()
    replicates = pd.read_csv(run / "speedup/composed_bootstrap.csv")
    n = json.loads((run / "config/analysis.json").read_text())["analysis"]["bootstrap_resamples"]
    assert n == 50  # config/smoke.yaml's, not the default's 200
    assert replicates["replicate"].nunique() == n and len(replicates) == n * len(composed)
    assert set(pd.read_csv(run / "speedup/e2e.csv")["temperature"]) == {0.0, 1.0}
    profile = pd.read_csv(run / "speedup/step_profile.csv")  # latency.profile: moe at its native K, dense, draft
    assert len(profile) == 2 * 2 + 2 * 2 + 2 and (profile["bandwidth_fraction"] > 0).all()
    assert (profile[["weights", "attention", "dispatch"]] >= 0).all().all()
    bandwidth = pd.read_csv(run / "speedup/bandwidth.csv")  # one AR step per target, K and B
    assert len(bandwidth) == 3 * 3 and (bandwidth["bandwidth_fraction"] > 0).all()
    moe = bandwidth[bandwidth["model"] == "moe"]
    assert (moe.groupby("K")["weight_bytes"].apply(lambda w: w.is_monotonic_increasing)).all()  # more experts
    params = json.loads((run / "fit/params.json").read_text())
    assert {key.split("/")[1] for key in params} == {"eq4", "printed"}
    claims = pd.read_csv(figures / "claims.csv")
    assert list(claims["claim"]) == [f"C{i}" for i in range(1, 11)] + ["Eq. 8"]
    assert set(claims["verdict"]) <= {"reproduced", "not reproduced", "inconclusive", "not measurable"}
    measured = claims[claims["verdict"].isin(["reproduced", "not reproduced", "inconclusive"])]
    resampled = measured[~measured["claim"].isin(["C8", "Eq. 8"])]
    assert resampled["support"].between(0, 1).all()  # every timing verdict carries its support
    assert (claims.loc[claims["verdict"] == "reproduced", "margin"] > 0).all()  # and every decided one its margin
    assert (claims.loc[claims["verdict"] == "not reproduced", "margin"] <= 0).all()
    assert (claims["reason"].fillna("").str.len() > 0).all()
    peaks = pd.read_csv(figures / "tables_1_2.csv")
    assert {"B_peak", "t_ar", "t_sd", "sigma", "speedup", "source"} <= set(peaks.columns)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_ran_against_the_smoke_run(smoke_run, name):
    import nbformat

    executed = nbformat.read(smoke_run / f"figures/smoke/notebooks/{name}.ipynb", as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    drawing = [cell for cell in executed.cells if cell.cell_type == "code" and "_figure(" in cell.source]
    pngs = [o for cell in drawing for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert drawing and len(pngs) == len(drawing)  # every figure drawn, and shown once
    assert any("verdict" in str(o.get("data", {})) and "support" in str(o.get("data", {})) for o in outputs)
    assert executed.cells[0].cell_type == "markdown" and "What to look for" in executed.cells[0].source
    committed = nbformat.read(REPO_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in committed.cells if cell.cell_type == "code")  # stripped
    assert committed.metadata["language_info"]["name"] == "python"


def test_acceptance_stage_is_deterministic(smoke_run, tmp_path):
    run = smoke_run / "data/runs/smoke"
    argv = ["acceptance", "--config", str(run / "config.json"), "--run-dir", str(run)]
    assert main([*argv, "--prompts", str(run / "prompts"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "rounds.csv").read_text() == (run / "acceptance/rounds.csv").read_text()
    assert (tmp_path / "summary.csv").read_text() == (run / "acceptance/summary.csv").read_text()


def test_two_platforms_of_this_machine_give_c9_in_one_run(smoke_run, tmp_path):
    """config/platforms-cpu.yaml over the smoke experiment: every latency slice and the probe run
    once per platform (1 and 2 threads), every table row names its platform, the two probes give
    two ridge points, and C9 is judged from them in one run (on a copy of the smoke run: its
    trained pair and prompts are reused)."""
    root = copy_checkout(tmp_path)
    # the trained pair and the prompts with their stage configs (the platforms change neither);
    # every stage the platforms change runs again (a copy keeps no Snakemake metadata to tell)
    for part in ("models", "prompts", "config/models.json", "config/prompts.json"):
        source, target = smoke_run / "data/runs/smoke" / part, root / "data/runs/smoke" / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    args = ["claims", "--cores", "2", "--configfile", "config/smoke.yaml", "config/platforms-cpu.yaml"]
    result = snakemake(root, *args)
    assert result.returncode == 0, result.stderr[-4000:]
    run = root / "data/runs/smoke"
    per_platform = {  # each platform's slices
        name: sorted(p.parent.name for p in (run / "latency/slices" / name).glob("*/forward.csv"))
        for name in ("cpu-1t", "cpu-2t")
    }
    assert per_platform["cpu-1t"] == per_platform["cpu-2t"] and len(per_platform["cpu-1t"]) == 7, per_platform
    ridge = {
        name: json.loads((run / f"env/{name}.json").read_text())["hardware_probe"]["ridge_point"]
        for name in ("cpu-1t", "cpu-2t")
    }
    assert ridge["cpu-1t"] != ridge["cpu-2t"]
    for table in ("latency/forward.csv", "latency/e2e.csv", "speedup/composed.csv", "speedup/e2e.csv"):
        frame = pd.read_csv(run / table)
        assert set(frame["platform"]) == {"cpu-1t", "cpu-2t"}, table
    composed = pd.read_csv(run / "speedup/composed.csv")
    assert dict(composed.groupby("platform")["ridge_point"].first()) == pytest.approx(ridge)
    claims = pd.read_csv(root / "figures/smoke/claims.csv").set_index("claim")
    assert claims.loc["C9", "verdict"] in ("reproduced", "not reproduced", "inconclusive"), claims.loc["C9", "reason"]
    assert "cpu-1t (ridge" in claims.loc["C9", "run"] and "cpu-2t (ridge" in claims.loc["C9", "run"]


def test_a_slice_that_left_failed_points_runs_again_until_they_are_measured(smoke_run):
    """A point of the dense model's slice failed (its stored point and the slice's table as the
    job writes them): the next `snakemake` plans that slice again (its failed tries changed), the
    job measures that point alone (attempts 2), and the run after says there is nothing to do."""
    run = smoke_run / "data/runs/smoke/latency/slices/local/model-dense"
    store = sorted((run / "points").glob("forward_*.json"))
    record = json.loads(store[0].read_text())
    failed = {k: v for k, v in record.items() if k not in ("per_s", "remeasured", "rounds_taken", "steal", "switches")}
    store[0].write_text(json.dumps(failed | {"seconds": [], "distinct_experts": [], "status": "error: injected"}))
    table = pd.read_csv(run / "forward.csv")
    point = table["B"] == record["B"]
    rows = table[point & (table["repeat"] == 0)].assign(repeat=-1, seconds=float("nan"), status="error: injected")
    pd.concat([table[~point], rows]).to_csv(run / "forward.csv", index=False)
    untouched = {p: p.read_text() for p in store[1:]}

    plan = snakemake(smoke_run, "-n", "--configfile", "config/smoke.yaml")
    text = plan.stdout + plan.stderr
    assert plan.returncode == 0 and "wildcards: platform=local, slice=model-dense" in text, text[-3000:]
    assert "slice=model-moe-K2" not in text  # the other slices stand
    result = snakemake(smoke_run, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    again = json.loads(store[0].read_text())
    assert again["status"] == "ok" and again["attempts"] == 2
    assert {p: p.read_text() for p in store[1:]} == untouched  # the measured points are not measured again
    table = pd.read_csv(run / "forward.csv")
    assert (table["status"] == "ok").all() and set(table.loc[table["B"] == record["B"], "attempts"]) == {2}
    missing = pd.read_csv(smoke_run / "data/runs/smoke/speedup/missing.csv")
    assert missing.empty and "Missing points" not in (smoke_run / "figures/smoke/claims.md").read_text()
    after = snakemake(smoke_run, "-n", "--configfile", "config/smoke.yaml")
    assert "Nothing to be done" in after.stdout + after.stderr, (after.stdout + after.stderr)[-3000:]


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO_ROOT / "config").glob("*.yaml")))
def test_no_rule_writes_a_tracked_file(checkout, config):
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    configs = ([f"config/{OVERLAYS[config]}"] if config in OVERLAYS else []) + [f"config/{config}"]
    result = snakemake(checkout, "--summary", "--configfile", *configs)
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = {line.split("\t", 1)[0] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert len(outputs) > 10 and not outputs & set(tracked.stdout.splitlines())


def test_rule_files_stand_alone_in_any_include_order(checkout, tmp_path):
    root = tmp_path / "reordered"
    shutil.copytree(checkout, root, ignore=shutil.ignore_patterns("runs", ".snakemake"))
    snakefile = (root / "Snakefile").read_text()
    includes = [line for line in snakefile.splitlines() if line.startswith("include:") and "common.smk" not in line]
    text = snakefile
    for line in includes:
        text = text.replace(line + "\n", "")
    first = next(line for line in snakefile.splitlines() if line.startswith("include:") and "common.smk" in line)
    text = text.replace(first + "\n", first + "\n" + "\n".join(reversed(includes)) + "\n")
    assert text != snakefile and len(includes) >= 9
    (root / "Snakefile").write_text(text)
    assert snakemake(root, "-n").returncode == 0
    assert snakemake(root, "-n", "--configfile", "config/synthetic.yaml").returncode == 0


def test_the_installed_package_finds_its_schema(tmp_path):
    # a wheel installed into a folder, imported without the editable install (python -S skips .pth files)
    import sysconfig

    source = tmp_path / "source"  # a copy: the build writes build/ and egg-info beside the sources
    shutil.copytree(
        REPO_ROOT / "workflow", source / "workflow", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source)
    wheel = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path, source],
        capture_output=True,
        text=True,
    )
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site]
    assert subprocess.run([*install, *tmp_path.glob("moesd-*.whl")], capture_output=True).returncode == 0
    path = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    code = "import moesd.config as c; c.validate_config({}); print(c.__file__)"
    env = os.environ | {"PYTHONPATH": path, "MOESD_DATA": str(REPO_ROOT / "data")}
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith(str(site))  # the installed copy, not the checkout


HUB_EXPERIMENT = """
experiment: hubtest
pairs:
  - {name: tiny-moe, target: "hf:tiny/target@main", draft: "hf:tiny/draft@main"}
acceptance: {datasets: [humaneval], temperatures: [0.0, 1.0], gammas: [2, 4], batch_size: 2, max_new_tokens: 4, max_prompts: 2}
routing: {datasets: [humaneval]}
"""


def test_hub_models_are_downloaded_once_then_loaded_offline(checkout, tmp_path):
    """The download stage in the workflow: the download rule resolves the pair's hub specs on a
    local hub, writes the lock beside the configs, and the acceptance stage loads the locked
    commits with the hub offline; with the hub gone, a rerun of the stage still works."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from .hub_server import LocalHub
    from .tiny_models import save_tiny

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["def f(x):\n    return x + 1"] * 20, trainer)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_HOME": str(tmp_path / "hf")}
    config = tmp_path / "hubtest.yaml"
    config.write_text(HUB_EXPERIMENT)
    summary = checkout / "data/runs/hubtest/acceptance/summary.csv"
    with LocalHub() as hub:
        for name, seed in (("target", 1), ("draft", 2)):
            folder = save_tiny("qwen2", tmp_path / name, vocab=300, seed=seed)
            bpe.save(str(folder / "tokenizer.json"))
            hub.publish(f"tiny/{name}", folder)
        env["HF_ENDPOINT"] = hub.url
        args = ["--cores", "2", str(summary.relative_to(checkout)), "--configfile", "config/smoke.yaml", str(config)]
        result = snakemake(checkout, *args, env=env)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        commits = {f"tiny/{n}@main": hub.repos[f"tiny/{n}"]["refs"]["main"] for n in ("target", "draft")}
    assert json.loads((checkout / "config/hubtest.lock.json").read_text()) == commits
    manifest = json.loads((checkout / "data/runs/hubtest/download/manifest.json").read_text())
    assert [m["commit"] for m in manifest["models"]] == list(commits.values())
    assert len(pd.read_csv(summary)) == 4  # 2 temperatures x 2 gammas
    summary.unlink()  # the hub is gone: the stage reruns on the cached, locked commits
    result = snakemake(checkout, *args, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "rule download" not in result.stdout + result.stderr and summary.is_file()


def test_an_experiments_files_replace_the_default_experiment(checkout, tmp_path):
    """--configfile replaces config/config.yaml instead of being merged over it: a key the
    experiment leaves out takes the schema's default, never the default experiment's choice;
    without a config file the default experiment runs, and --config still overrides it."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("experiment: mine\n")
    runs = {}
    for name, args in (("mine", ["--configfile", str(mine)]), ("default", [])):
        result = snakemake(checkout, "--cores", "1", f"data/runs/{name}/config.json", *args)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = json.loads((checkout / f"data/runs/{name}/config.json").read_text())
    shutil.rmtree(checkout / "data/runs")
    assert runs["default"]["routing"]["random_models"] and runs["default"]["engine_check"]["repeats"] == 5
    assert runs["mine"]["routing"]["random_models"] == [] and runs["mine"]["engine_check"]["repeats"] == 20
