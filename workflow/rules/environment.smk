# The run's record: each stage's config, the whole resolved config, and the environment it ran in.

rule stage_config:
    """One stage's part of the validated config (defaults filled in)."""
    output:
        f"{RUNS}/config/{{stage}}.json",
    params:
        text=lambda wildcards: json.dumps(
            {"experiment": EXP} | config_part(config, STAGE_SECTIONS[wildcards.stage]), indent=2, sort_keys=True
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
        **RESOURCES["environment"],
    log:
        f"{LOGS}/environment.log",
    conda:
        MEASURE_ENV
    shell:
        "moesd probe-hardware --device {params.device} --dtype {params.dtype} --out {output} > {log} 2>&1"
