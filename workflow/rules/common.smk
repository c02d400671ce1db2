import json

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
        from moesd.io import write_text

        write_text(output[0], f"{params.text}\n")
        write_text(log[0], f"wrote {output[0]}\n")


rule resolved_config:
    """The whole validated config with every default filled in: the run's record."""
    output:
        f"{RUNS}/config.json",
    params:
        text=json.dumps(config, indent=2, sort_keys=True),
    log:
        f"{LOGS}/resolved_config.log",
    run:
        from moesd.io import write_text

        write_text(output[0], f"{params.text}\n")
        write_text(log[0], f"wrote {output[0]}\n")


rule environment:
    """The run's env.json: package versions, git commit, and this machine's measured memory
    bandwidth and matmul throughput (`moesd probe-hardware`)."""
    output:
        f"{RUNS}/env.json",
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
