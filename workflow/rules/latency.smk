rule measure_latency:
    """T_T(B, s), T_D(B, 1) and T_reject(B) sweeps and end-to-end T_AR / T_SD (resumable)."""
    input:
        config=f"{RUNS}/config/latency.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
        acceptance=ACCEPTANCE_SUMMARY,
    output:
        **LATENCY,
    params:
        run=run_folder,
        prompts=folder_of("input.prompts"),
        out=folder_of("output.forward"),
        acceptance=lambda wildcards, input: f"--acceptance {input.acceptance}" if input.acceptance else "",
    threads: 2
    resources:
        gpu=GPU,
    log:
        f"{LOGS}/latency.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd latency --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "{params.acceptance} --out {params.out} > {log} 2>&1"


rule latency:
    input:
        rules.measure_latency.output,
