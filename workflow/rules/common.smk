import json

from moesd.figures import MEASURED_FIGURES, NOTEBOOKS, THEORY_FIGURES
from moesd.prompts import dataset_name

# GPU rules (acceptance and latency on the experiment's device) ask the executor for one GPU.
GPU = int(config["latency"]["device"] == "cuda")

# The config sections each command-line stage reads: a stage reruns when its sections change,
# not when another stage's do.
STAGE_SECTIONS = {
    "theory": ["theory", "prediction", "fit"],
    "simulation": ["simulation", "fit"],
    "models": ["models", "pairs", "acceptance"],  # acceptance: its prompt sets are checked before training
    "prompts": ["pairs", "acceptance", "routing"],
    "acceptance": ["pairs", "acceptance"],
    "routing": ["pairs", "routing"],
    "latency": ["pairs", "latency"],
    "analysis": ["pairs", "analysis", "fit"],
}


# Files one stage writes and another reads, named here so that no rule file depends on another's
# rules (the include order does not matter).
USES_TRAINED = any(p[r].startswith("trained:") for p in config["pairs"] for r in ("target", "draft"))
MODELS_MANIFEST = [f"{RUNS}/models/manifest.json"] if USES_TRAINED else []
PROMPTS_STATS = f"{RUNS}/prompts/stats.csv"
ACCEPTANCE_SUMMARY = [f"{RUNS}/acceptance/summary.csv"] if config["pairs"] else []
ROUTING = [f"{RUNS}/acceptance/routing.csv"] if config["pairs"] else []
ROUTING_FIGURES = [f"{FIGURES}/acceptance/routing.{ext}" for ext in ("png", "pdf")] if config["pairs"] else []
LATENCY = {name: f"{RUNS}/latency/{name}.csv" for name in ("forward", "draft", "reject", "e2e")}
SPEEDUP = {name: f"{RUNS}/speedup/{name}.csv" for name in ("composed", "e2e", "bandwidth")}
FIT = {name: f"{RUNS}/fit/{name}" for name in ("params.json", "predictions.csv", "curves.csv", "metrics.csv")}
FIT_QUALITY = {ext: f"{FIGURES}/fit_quality.{ext}" for ext in ("csv", "md")}
MEASURED_TABLES = {ext: f"{FIGURES}/tables_1_2.{ext}" for ext in ("csv", "md")}
ENV = f"{RUNS}/env.json"
THEORY_OUTPUTS = [f"{FIGURES}/theory/{name}.{ext}" for name in THEORY_FIGURES for ext in ("png", "pdf")] + [
    f"{FIGURES}/theory/{name}"
    for name in ("saturation.csv", "roofline_speedup.csv", "fit_quality.csv", "fit_quality.md")
    + ("sparsity_fit.png", "sparsity_fit.pdf")
]


def write_record(path, text, log):
    """Write TEXT to PATH atomically, and say so in LOG."""
    from moesd.io import write_text

    write_text(path, f"{text}\n")
    write_text(log, f"wrote {path}\n")


rule stage_config:
    """One stage's part of the validated config (defaults filled in)."""
    output:
        f"{RUNS}/config/{{stage}}.json",
    params:
        text=lambda wildcards: json.dumps(
            {"experiment": EXP} | {k: config[k] for k in STAGE_SECTIONS[wildcards.stage]}, indent=2, sort_keys=True
        ),
    wildcard_constraints:
        stage="|".join(STAGE_SECTIONS),
    log:
        f"{LOGS}/stage_config_{{stage}}.log",
    run:
        write_record(output[0], params.text, log[0])


rule resolved_config:
    """The whole validated config with every default filled in: the run's record."""
    output:
        f"{RUNS}/config.json",
    params:
        text=json.dumps(config, indent=2, sort_keys=True),
    log:
        f"{LOGS}/resolved_config.log",
    run:
        write_record(output[0], params.text, log[0])


rule environment:
    """The run's env.json: package versions, git commit, and this machine's measured memory
    bandwidth and matmul throughput (`moesd probe-hardware`)."""
    output:
        ENV,
    params:
        device=config["latency"]["device"],  # the device and dtype the latency stage times on
        dtype=config["latency"]["dtype"],
    threads: 2  # the probe's thread count is recorded; the CPU experiments run with 2
    resources:
        gpu=GPU,
    log:
        f"{LOGS}/environment.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd probe-hardware --device {params.device} --dtype {params.dtype} --out {output} > {log} 2>&1"
