# The run's record: each stage's config, the whole resolved config, and the environment it ran in.

rule stage_config:
    """One stage's part of the validated config (defaults filled in)."""
    output:
        f"{RUNS}/config/{{stage}}.json",
    params:
        text=stage_config_text,
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
    threads: THREADS["environment"]  # the latency stage's threads: the probe measures the machine as it times
    resources:
        **RESOURCES["environment"],
    log:
        f"{LOGS}/environment.log",
    conda:
        MEASURE_ENV
    shell:
        "moesd probe-hardware --device {params.device} --dtype {params.dtype} --threads {threads} --out {output} > {log} 2>&1"
