rule measure_latency:
    """T_T(B, s), T_D(B, 1) and T_reject(B) sweeps and end-to-end T_AR / T_SD (resumable)."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/latency.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
        acceptance=ACCEPTANCE_SUMMARY,
    output:
        **LATENCY,
    params:
        hub=hub_env,
        run=run_folder,
        prompts=folder_of("input.prompts"),
        out=folder_of("output.forward"),
        acceptance=option_of("--acceptance", "acceptance"),
    threads: THREADS["latency"]
    resources:
        **RESOURCES["latency"],
    log:
        f"{LOGS}/latency.log",
    conda:
        MEASURE_ENV
    shell:
        "{params.hub} moesd latency --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "{params.acceptance} --out {params.out} > {log} 2>&1"


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
        rules.measure_latency.output,
        E2E_VLLM_TABLE,
