rule measure_latency:
    """One slice of the latency stage (moesd.config.latency_slices): T_T(B, s) or T_D(B, 1) of one
    model at one K, T_reject(B), or our engine's end-to-end T_AR / T_SD of one pair; one job each, with its
    own resources, resumable point by point, rerun alone when it fails."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/latency.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
        acceptance=latency_slice_acceptance,
    output:
        **LATENCY_SLICE_TABLES,
    params:
        hub=hub_env,
        run=run_folder,
        prompts=folder_of("input.prompts"),
        out=folder_of("output.forward"),
        acceptance=option_of("--acceptance", "acceptance"),
    wildcard_constraints:
        slice="|".join(re.escape(s) for s in LATENCY_SLICES),
    threads: THREADS["latency"]
    resources:
        gpu=latency_slice_resource("gpu"),
        cpus_per_task=latency_slice_resource("cpus_per_task"),
        mem_mb=latency_slice_resource("mem_mb"),
        runtime=latency_slice_resource("runtime"),
        cpu_timing=latency_slice_resource("cpu_timing"),
    log:
        f"{LOGS}/latency_{{slice}}.log",
    conda:
        MEASURE_ENV
    shell:
        "{params.hub} moesd latency --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "--slice {wildcards.slice} {params.acceptance} --out {params.out} > {log} 2>&1"


rule gather_latency:
    """The slices' tables concatenated, in config order, into the stage's tables."""
    input:
        [LATENCY_SLICE_TABLES[name].format(slice=s) for s in LATENCY_SLICES for name in LATENCY_TABLES],
    output:
        **LATENCY,
    params:
        slices=slice_folders,
        out=folder_of("output.forward"),
    log:
        f"{LOGS}/gather_latency.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd latency-gather {params.slices} --out {params.out} > {log} 2>&1"


rule measure_e2e_vllm:
    """End-to-end T_AR / T_SD of the real-acceptance e2e pairs through vLLM, the paper's engine
    (latency.e2e.backends: vllm), beside our engine's (resumable)."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/latency.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
    output:
        table=E2E_VLLM,
    params:
        hub=hub_env,
        run=run_folder,
        prompts=folder_of("input.prompts"),
        out=folder_of("output.table"),
    threads: THREADS["e2e_vllm"]
    resources:
        **RESOURCES["e2e_vllm"],
    log:
        f"{LOGS}/e2e_vllm.log",
    conda:
        MEASURE_ENV  # moesd; vLLM runs in its own environment (MOESD_VLLM_PYTHON, .venv-vllm)
    shell:
        "{params.hub} moesd e2e-vllm --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "--out {params.out} > {log} 2>&1"


rule latency:
    input:
        rules.gather_latency.output,
        E2E_VLLM_TABLE,
