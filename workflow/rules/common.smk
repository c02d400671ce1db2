# Shared by every file of rules. The run's folders, the files one stage writes and another reads,
# the config values rules read, and the input and params functions. Every global of the workflow
# is defined here, so that no rule file depends on another's (the include order does not matter).
import json
import re
import sys
import time
from pathlib import Path

from moesd.columns import LATENCY_TABLES
from moesd.config import (
    STAGE_SECTIONS,
    acceptance_slices,
    acceptance_vllm_slices,
    e2e_vllm_slices,
    latency_slices,
    lock_path,
    routing_platform,
)
from moesd.config.platforms import platform_names, platform_of
from moesd.download import hub_specs
from moesd.latency.retries import failed_tries
from moesd.figures import MEASURED_FIGURES, NOTEBOOKS, THEORY_FIGURES
from moesd.prompt_sets import dataset_name
from moesd.resources import (
    GPU_STAGES,
    check_host_memory,
    estimate_known,
    job_resources,
    stage_threads,
    timing_resources,
)

START = time.time()  # the invocation's wall time, printed on success
EXP = config["experiment"]
FIGURES = f"figures/{EXP}"
RUNS = f"data/runs/{EXP}"
LOGS = f"logs/{EXP}"

# `--sdm conda`: the measuring rules run in the CUDA build's environment where the experiment
# times a GPU, every other rule (and a CPU experiment's) in the CPU one.
MEASURE_ENV = "../../envs/gpu.yaml" if config["latency"]["device"] == "cuda" else "../../envs/cpu.yaml"

# What each measuring job asks a cluster for (GPUs = the tensor-parallel size of what it loads,
# host memory, CPUs, a time limit from its grid's size): moesd.resources, from the config.
RESOURCES = {"routing": job_resources(config, "routing", platform=routing_platform(config))}  # one job, one device
RESOURCES["engine_check"] = timing_resources(config, "engine_check")  # the profile's defaults, one timed job at a time

# Each job's CPU threads, from the config section of its stage (moesd.resources.stage_threads).
THREADS = {stage: stage_threads(config, stage) for stage in (*GPU_STAGES, "engine_check", "models")}

# Jobs that only write a record, plot or fit small tables run where Snakemake runs (the login node
# under --executor slurm), not as one cluster job each; the measuring and training jobs are submitted.
localrules:
    all,
    reference_environment,
    environments,
    download,
    stage_config,
    resolved_config,
    theory_figures,
    simulate_sweep,
    fit_simulated,
    fit_quality_simulated,
    plot_fit_simulated,
    theory,
    engine_check,
    models,
    plot_routing,
    acceptance,
    gather_acceptance,
    gather_acceptance_vllm,
    latency,
    gather_latency,
    gather_e2e_vllm,
    speedup,
    fit_run,
    fit,
    measured_figures,
    engines_figure,
    figures,
    claims_report,
    claims,
    notebook,
    notebooks,

# The config sections (or dotted parts of one) each command-line stage reads: a stage reruns when
# its sections change, not when another stage's do.


# Files one stage writes and another reads, named here so that no rule file depends on another's
# rules (the include order does not matter).
MODELS_MANIFEST = [f"{RUNS}/models/manifest.json"] if uses_trained_pair(config) else []
PROMPTS_STATS = f"{RUNS}/prompts/stats.csv"
ACCEPTANCE_SUMMARY = [f"{RUNS}/acceptance/summary.csv"] if config["pairs"] else []
ACCEPTANCE_ROUNDS = [f"{RUNS}/acceptance/rounds.csv"] if config["pairs"] else []
ROUTING = [f"{RUNS}/acceptance/routing.csv"] if config["pairs"] else []
ROUTING_FIGURES = [f"{FIGURES}/acceptance/routing.{ext}" for ext in ("png", "pdf")] if config["pairs"] else []
# the download stage (rules/download.smk): only where the experiment names hf: specs
HUB_SPECS = hub_specs(config)
HUB_MANIFEST = f"{RUNS}/download/manifest.json"
HUB = [HUB_MANIFEST] if HUB_SPECS else []
HUB_LOCK = str(lock_path(config))
LATENCY = {name: f"{RUNS}/latency/{name}.csv" for name in LATENCY_TABLES}
# The latency stage fans out: one job per platform and slice (one model at one K, the rejection
# rule, our engine's end-to-end pairs, one each; moesd.config.latency_slices: ids
# "<platform>/<part>", a folder each under latency/slices/), each with its own resources,
# gathered into the LATENCY tables.
LATENCY_SLICES = latency_slices(config)
LATENCY_SLICE_TABLES = {name: f"{RUNS}/latency/slices/{{platform}}/{{slice}}/{name}.csv" for name in LATENCY_TABLES}
LATENCY_SLICE_RESOURCES = {s: job_resources(config, "latency", s) for s in LATENCY_SLICES}
LATENCY_PARTS = sorted({part["local"] for part in LATENCY_SLICES.values()})
E2E_VLLM = f"{RUNS}/latency/e2e_vllm.csv"  # latency.e2e.backends: vllm (rule measure_e2e_vllm)
E2E_VLLM_TABLE = [E2E_VLLM] if "vllm" in config["latency"]["e2e"]["backends"] else []
# vLLM's end-to-end points and the acceptance stage fan out too (moesd.config.slices): vLLM one job
# per platform, pair and K; our acceptance one per pair; vLLM's acceptance one per platform and pair.
E2E_VLLM_SLICES = e2e_vllm_slices(config)
E2E_VLLM_SLICE_RESOURCES = {s: job_resources(config, "e2e_vllm", s) for s in E2E_VLLM_SLICES}
ACCEPTANCE_SLICES = acceptance_slices(config)
ACCEPTANCE_SLICE_RESOURCES = {s: job_resources(config, "acceptance", s) for s in ACCEPTANCE_SLICES}
ACCEPTANCE_VLLM_SLICES = acceptance_vllm_slices(config)
ACCEPTANCE_VLLM_SLICE_TABLES = {
    name: f"{RUNS}/acceptance/vllm/{{platform}}/{{slice}}/{name}.csv" for name in ("summary_vllm", "backends")
}
E2E_VLLM_SLICE_TABLE = {"e2e_vllm": f"{RUNS}/latency/vllm/{{platform}}/{{slice}}/e2e_vllm.csv"}
ACCEPTANCE_VLLM_SLICE_RESOURCES = {s: job_resources(config, "acceptance_vllm", s) for s in ACCEPTANCE_VLLM_SLICES}
SPEEDUP = {
    name: f"{RUNS}/speedup/{name}.csv"
    for name in ("composed", "e2e", "bandwidth", "composed_bootstrap", "e2e_bootstrap", "missing")
}
STEP_PROFILE = f"{RUNS}/speedup/step_profile.csv"  # rule profile_step (latency.profile)
FIT = {name: f"{RUNS}/fit/{name}" for name in ("params.json", "predictions.csv", "curves.csv", "metrics.csv")}
FIT_QUALITY = {ext: f"{FIGURES}/fit_quality.{ext}" for ext in ("csv", "md")}
MEASURED_TABLES = {ext: f"{FIGURES}/tables_1_2.{ext}" for ext in ("csv", "md")}
CLAIMS = {ext: f"{FIGURES}/claims.{ext}" for ext in ("md", "csv")}
# The platforms the run measures on (moesd.config.platforms): the hardware probe runs once on
# each; env.json is the reference platform's (analysis.reference_platform), the run's record.
PLATFORMS = platform_names(config)
REFERENCE_PLATFORM = config["analysis"]["reference_platform"]
ENVS = {name: f"{RUNS}/env/{name}.json" for name in PLATFORMS}
ENV = f"{RUNS}/env.json"
ENV_RESOURCES = {name: job_resources(config, "environment", platform=name) for name in PLATFORMS}
# A CPU experiment's jobs on a platform without a Slurm partition run on this machine: one that
# cannot fit its memory stops the plan with its estimate (moesd.resources.check_host_memory).
if config["latency"]["device"] != "cuda" and not any(p["slurm"]["partition"] for p in config["platforms"]):
    try:
        check_host_memory(  # the jobs whose models' sizes are known (not a guess for an unknown hub model)
            {f"latency slice {k}": v for k, v in LATENCY_SLICE_RESOURCES.items() if estimate_known(config, "latency", k)}
            | {
                f"acceptance slice {k}": v
                for k, v in ACCEPTANCE_SLICE_RESOURCES.items()
                if estimate_known(config, "acceptance", k)
            }
            | {f"vLLM slice {k}": v for k, v in E2E_VLLM_SLICE_RESOURCES.items() if estimate_known(config, "e2e_vllm", k)}
            | ({"routing": RESOURCES["routing"]} if estimate_known(config, "routing") else {})
        )
    except ValueError as error:
        sys.exit(f"plan error: {error}")
THEORY_TABLES = ("saturation.csv", "roofline_speedup.csv", "fit_quality.csv", "fit_quality.md")
THEORY_OUTPUTS = [f"{FIGURES}/theory/{name}.{ext}" for name in (*THEORY_FIGURES, "sparsity_fit") for ext in ("png", "pdf")]
THEORY_OUTPUTS += [f"{FIGURES}/theory/{name}" for name in THEORY_TABLES]
PROMPT_FILES = [
    f"{RUNS}/prompts/{pair['name']}/{dataset_name(source)}.jsonl"
    for pair in config["pairs"]
    for source in prompt_sources(config)
]
ENGINE_CHECK = config["engine_check"]
ENGINE_CHECK_TABLES = [f"{FIGURES}/engine_check/model_{i}.csv" for i in range(len(ENGINE_CHECK["models"]))]
# one notebook per measured figure; Fig. 1's where a trained or hub pair gave routing counts
NOTEBOOK_NAMES = [name for name in NOTEBOOKS if config["pairs"] or name in MEASURED_FIGURES]

# The theory stage's simulated sweep and its fit (the `simulation` and `fit` sections)
SIM = config["simulation"]
FIT_CONFIG = config["fit"]
FIT_FLAGS = (
    f"--variant {FIT_CONFIG['variant']} --verify-tokens {FIT_CONFIG['verify_tokens']} "
    f"--dense-convention {FIT_CONFIG['dense_convention']} --bandwidth-scope {FIT_CONFIG['bandwidth_scope']} "
    f"--bytes-per-param {FIT_CONFIG['bytes_per_param']} --n-starts {FIT_CONFIG['n_starts']} --seed {FIT_CONFIG['seed']}"
)
SIM_MODELS = f"--target {SIM['target']} --draft {SIM['draft']} --hardware {SIM['platform']}"
SIM_CAPTION = (
    f"Roofline-simulated sparsity sweep (not measured): {SIM['target']} with num_experts_per_tok = K, "
    f"draft {SIM['draft']}, {SIM['platform']} datasheet peaks, sigma = {SIM['sigma']} for every K. "
    f"Line: Algorithm 1 ({FIT_CONFIG['variant']}) fitted on the stride-{FIT_CONFIG['stride']} subset (filled dots); "
    "dashed: each panel's peak / sqrt(2)."
)


def write_record(path, text, log):
    """Write TEXT to PATH atomically, and say so in LOG."""
    from moesd.io import write_text

    write_text(path, f"{text}\n")
    write_text(log, f"wrote {path}\n")


def model_env(wildcards, input):
    """A params function, the environment of a command that loads models. Where the experiment
    has hub models, the download manifest to load them by, with the hub offline; and the folder
    beside the job logs where a failed vLLM worker's whole log is kept."""
    hub = f"MOESD_HF_MANIFEST={input.hub} HF_HUB_OFFLINE=1 " if input.hub else ""
    return f"{hub}MOESD_WORKER_LOGS={LOGS}/workers"


def run_folder(wildcards, input):
    """The run's folder (RUNS) as a rule's params: inferred from its stage config, which lies in
    RUNS/config/, since Snakemake's lint asks that path prefixes come from the rule's files (for
    storage without a shared file system)."""
    return str(Path(input.config).parent.parent)


def folder_of(name):
    """A params function: the folder of the rule's named input or output NAME ("input.prompts",
    "output.stats"), inferred from the files for the same reason."""
    where, _, key = name.partition(".")

    def infer(wildcards, input, output):
        files = getattr(input if where == "input" else output, key)
        return str(Path(files if isinstance(files, str) else files[0]).parent)  # a named list: its first file

    return infer


def stem_of(name=None):
    """A params function: the rule's output NAME (its first output where None) without its
    extension: a figure's PNG + PDF stem."""

    def stem(wildcards, output):
        return str(Path(getattr(output, name) if name else output[0]).with_suffix(""))

    return stem


def option_of(flag, name):
    """A params function: FLAG and the rule's input NAME ("--routing routing.csv"), or nothing
    where that input is an empty list (the stage that writes it does not run in this experiment)."""

    def option(wildcards, input):
        files = getattr(input, name)
        return f"{flag} {files}" if files else ""

    return option


def slice_id(wildcards):
    """The slice id "<platform>/<part>" of a job's platform and slice wildcards (moesd.config.slices)."""
    return f"{wildcards.platform}/{wildcards.slice}"


def platform_key(wildcards):
    """A job's platform wildcard (the key of its per-platform resources)."""
    return wildcards.platform


def slice_tables(key, tables=None):
    """The tables of slice KEY ("<platform>/<part>") of a stage whose slice paths are TABLES
    (name -> path pattern; the latency stage's by default)."""
    platform, _, part = key.partition("/")
    return [path.format(platform=platform, slice=part) for path in (tables or LATENCY_SLICE_TABLES).values()]


def failed_slice_tries(tables=None):
    """A params function: how many tries of the slice's points have failed so far (its tables as
    they stand; moesd.latency.tables.failed_tries). A param, so that the next `snakemake` runs a
    slice that left failed points again, and only until they are measured. It takes the wildcards
    alone: Snakemake compares only the params not derived from a job's input or output."""

    def tries(wildcards):
        return failed_tries(slice_tables(f"{wildcards.platform}/{wildcards.slice}", tables))

    return tries


def pair_key(wildcards):
    """A job's pair wildcard (the key of our acceptance's per-pair resources)."""
    return wildcards.pair


def alternatives(names):
    """A wildcard constraint matching exactly NAMES."""
    return "|".join(re.escape(name) for name in dict.fromkeys(names)) or "^$"


def per_job(table, name, key):
    """A resources function: resource NAME of the job whose KEY(wildcards) indexes TABLE (the
    jobs' moesd.resources.job_resources: its model's memory, its grid's runtime, its platform's
    partition); 0 where the job asks for none of it (validation has checked that a platform's
    Slurm settings are set on every platform or on none)."""

    def resource(wildcards):
        return table[key(wildcards)].get(name, 0)

    return resource


def job_resource_set(table, key):
    """The resources block of a job per slice or platform: every resource any of TABLE's jobs asks for."""
    names = dict.fromkeys(name for job in table.values() for name in job)
    return {name: per_job(table, name, key) for name in names}


def platform_threads(wildcards):
    """A threads function: the CPU threads of the job's platform (platforms.N.threads)."""
    return platform_of(config, wildcards.platform)["threads"]


def latency_slice_acceptance(wildcards):
    """An input function: the acceptance summary for a slice of end-to-end points (a forced
    pair takes its alpha from there), nothing for the others, which start before acceptance ends."""
    return ACCEPTANCE_SUMMARY if LATENCY_SLICES[slice_id(wildcards)]["part"] == "e2e" else []


def slice_folders(wildcards, input):
    """A params function: the latency slices' folders, in config order, from the rule's inputs."""
    return " ".join(dict.fromkeys(str(Path(f).parent) for f in input))


def engine_check_model(wildcards):
    """A params function: the model spec of the engine check's job INDEX (engine_check.models)."""
    return ENGINE_CHECK["models"][int(wildcards.index)]


def stage_config_text(wildcards):
    """A params function: one stage's part of the validated config (STAGE_SECTIONS), as JSON."""
    part = config_part(config, STAGE_SECTIONS[wildcards.stage])
    return json.dumps({"experiment": EXP} | part, indent=2, sort_keys=True)
