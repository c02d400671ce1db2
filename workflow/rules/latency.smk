rule measure_latency:
    """One slice of the latency stage (moesd.config.latency_slices) on one platform: T_T(B, s) or
    T_D(B, 1) of one model at one K, T_reject(B), or our engine's end-to-end T_AR / T_SD of one
    pair; one job each, with its own resources on its platform's nodes, resumable point by point,
    rerun alone when it fails."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/latency.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
        acceptance=latency_slice_acceptance,
    output:
        **LATENCY_SLICE_TABLES,
    params:
        env=model_env,
        run=run_folder,
        prompts=folder_of("input.prompts"),
        out=folder_of("output.forward"),
        acceptance=option_of("--acceptance", "acceptance"),
        failed_tries=failed_slice_tries(),  # a slice with failed points runs again (they alone are measured)
    wildcard_constraints:
        platform=alternatives(PLATFORMS),
        slice=alternatives(LATENCY_PARTS),
    threads: platform_threads
    resources:
        **job_resource_set(LATENCY_SLICE_RESOURCES, slice_id),
    log:
        f"{LOGS}/latency_{{platform}}_{{slice}}.log",
    conda:
        MEASURE_ENV
    shell:
        "{params.env} moesd latency --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "--slice {wildcards.platform}/{wildcards.slice} {params.acceptance} --out {params.out} > {log} 2>&1"


rule gather_latency:
    """The slices' tables concatenated, in config order, into the stage's tables."""
    input:
        [table for key in LATENCY_SLICES for table in slice_tables(key)],
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
        "moesd gather {params.slices} --tables forward draft reject e2e --out {params.out} > {log} 2>&1"


rule measure_e2e_vllm:
    """End-to-end T_AR / T_SD of one real-acceptance e2e pair at one K through vLLM, the paper's
    engine (latency.e2e.backends: vllm), on one platform, the target split over its GPUs
    (moesd.config.e2e_vllm_slices); beside our engine's, resumable point by point."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/latency.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
    output:
        **E2E_VLLM_SLICE_TABLE,
    params:
        env=model_env,
        run=run_folder,
        prompts=folder_of("input.prompts"),
        out=folder_of("output.e2e_vllm"),
        failed_tries=failed_slice_tries(E2E_VLLM_SLICE_TABLE),
    wildcard_constraints:
        platform=alternatives(PLATFORMS),
        slice=alternatives(part["local"] for part in E2E_VLLM_SLICES.values()),
    threads: platform_threads
    resources:
        **job_resource_set(E2E_VLLM_SLICE_RESOURCES, slice_id),
    log:
        f"{LOGS}/e2e_vllm_{{platform}}_{{slice}}.log",
    conda:
        MEASURE_ENV  # moesd; vLLM runs in its own environment (MOESD_VLLM_PYTHON, .venv-vllm)
    shell:
        "{params.env} moesd e2e-vllm --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "--slice {wildcards.platform}/{wildcards.slice} --out {params.out} > {log} 2>&1"


rule gather_e2e_vllm:
    """vLLM's end-to-end slices concatenated, in config order, each row with its platform."""
    input:
        [table for key in E2E_VLLM_SLICES for table in slice_tables(key, E2E_VLLM_SLICE_TABLE)],
    output:
        e2e_vllm=E2E_VLLM,
    params:
        slices=slice_folders,
        out=folder_of("output.e2e_vllm"),
    log:
        f"{LOGS}/gather_e2e_vllm.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd gather {params.slices} --tables e2e_vllm --out {params.out} > {log} 2>&1"


rule latency:
    input:
        rules.gather_latency.output,
        E2E_VLLM_TABLE,
