rule measure_acceptance:
    """Batched speculative decoding of real prompts: per-round accepted counts, alpha and sigma."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/acceptance.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
    output:
        rounds=f"{RUNS}/acceptance/rounds.csv",
        summary=report(f"{RUNS}/acceptance/summary.csv", caption="../report/acceptance.rst", category="Acceptance"),
    params:
        hub=hub_env,
        run=run_folder,
        prompts=folder_of("input.prompts"),
        out=folder_of("output.summary"),
    threads: THREADS["acceptance"]
    resources:
        **RESOURCES["acceptance"],
    log:
        f"{LOGS}/acceptance.log",
    conda:
        MEASURE_ENV
    shell:
        "{params.hub} moesd acceptance --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "--out {params.out} > {log} 2>&1"


rule measure_acceptance_vllm:
    """The same pairs and settings through vLLM's speculative decoding (acceptance.vllm): sigma,
    alpha and per-position acceptance from its counters, ours beside it."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/acceptance.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
        summary=f"{RUNS}/acceptance/summary.csv",
    output:
        summary=f"{RUNS}/acceptance/summary_vllm.csv",
        backends=f"{RUNS}/acceptance/backends.csv",
    params:
        hub=hub_env,
        run=run_folder,
        prompts=folder_of("input.prompts"),
        out=folder_of("output.summary"),
    threads: THREADS["acceptance_vllm"]
    resources:
        **RESOURCES["acceptance_vllm"],
    log:
        f"{LOGS}/acceptance_vllm.log",
    conda:
        MEASURE_ENV  # moesd; vLLM runs in its own environment (MOESD_VLLM_PYTHON, .venv-vllm)
    shell:
        "{params.hub} moesd acceptance-vllm --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "--summary {input.summary} --out {params.out} > {log} 2>&1"


rule measure_routing:
    """Distinct experts per layer against tokens per forward, real prompts and random ids (Fig. 1)."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/routing.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
    output:
        f"{RUNS}/acceptance/routing.csv",
    params:
        hub=hub_env,
        run=run_folder,
        prompts=folder_of("input.prompts"),
    threads: THREADS["routing"]
    resources:
        **RESOURCES["routing"],
    log:
        f"{LOGS}/routing.log",
    conda:
        MEASURE_ENV
    shell:
        "{params.hub} moesd routing --config {input.config} --run-dir {params.run} --prompts {params.prompts} --out {output} > {log} 2>&1"


rule plot_routing:
    """Fig. 1 (a/b) from the run: measured distinct experts against Eq. 8."""
    input:
        f"{RUNS}/acceptance/routing.csv",
    output:
        [
            report(f"{FIGURES}/acceptance/routing.{ext}", caption="../report/routing.rst", category="Acceptance")
            for ext in ("png", "pdf")
        ],
    params:
        stem=stem_of(),
    log:
        f"{LOGS}/plot_routing.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd plot-routing {input} --out {params.stem} > {log} 2>&1"


rule acceptance:
    input:
        [rules.measure_acceptance.output, rules.plot_routing.output] if config["pairs"] else [],
        rules.measure_acceptance_vllm.output if config["pairs"] and config["acceptance"]["vllm"] else [],
