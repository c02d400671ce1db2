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
    """A platform's env/<platform>.json: package versions, git commit, and that platform's measured
    memory bandwidth and matmul throughput (`moesd probe-hardware`), with its threads, on its nodes."""
    output:
        f"{RUNS}/env/{{platform}}.json",
    params:
        device=config["latency"]["device"],  # the device and dtype the latency stage times on
        dtype=config["latency"]["dtype"],
    wildcard_constraints:
        platform=alternatives(PLATFORMS),
    threads: platform_threads  # the platform's threads: the probe measures the machine as it times
    resources:
        **job_resource_set(ENV_RESOURCES, platform_key),
    log:
        f"{LOGS}/environment_{{platform}}.log",
    conda:
        MEASURE_ENV
    shell:
        "moesd probe-hardware --device {params.device} --dtype {params.dtype} --threads {threads} --out {output} > {log} 2>&1"


rule reference_environment:
    """The run's env.json: the reference platform's (analysis.reference_platform), which the
    single-platform readers (the fit, the figures, the notebooks) take."""
    input:
        ENVS[REFERENCE_PLATFORM],
    output:
        ENV,
    log:
        f"{LOGS}/reference_environment.log",
    run:
        write_record(output[0], Path(input[0]).read_text().rstrip("\n"), log[0])


rule environments:
    """Every platform's probe and the run's env.json (a target: `snakemake environments`)."""
    input:
        list(ENVS.values()),
        ENV,
