rule measure_acceptance:
    """One pair's batched speculative decoding of real prompts (moesd.config.acceptance_slices):
    per-round accepted counts, alpha and sigma; one job per pair, rerun alone when it fails."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/acceptance.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
    output:
        rounds=f"{RUNS}/acceptance/pairs/{{pair}}/rounds.csv",
        summary=f"{RUNS}/acceptance/pairs/{{pair}}/summary.csv",
    params:
        env=model_env,
        run=run_folder,
        prompts=folder_of("input.prompts"),
        out=folder_of("output.summary"),
    wildcard_constraints:
        pair=alternatives(ACCEPTANCE_SLICES),
    threads: THREADS["acceptance"]
    resources:
        **job_resource_set(ACCEPTANCE_SLICE_RESOURCES, pair_key),
    log:
        f"{LOGS}/acceptance_{{pair}}.log",
    conda:
        MEASURE_ENV
    shell:
        "{params.env} moesd acceptance --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "--slice {wildcards.pair} --out {params.out} > {log} 2>&1"


rule gather_acceptance:
    """The pairs' acceptance tables concatenated, in config order, into the stage's."""
    input:
        [f"{RUNS}/acceptance/pairs/{pair}/{name}.csv" for pair in ACCEPTANCE_SLICES for name in ("rounds", "summary")],
    output:
        rounds=f"{RUNS}/acceptance/rounds.csv",
        summary=report(f"{RUNS}/acceptance/summary.csv", caption="../report/acceptance.rst", category="Acceptance"),
    params:
        slices=slice_folders,
        out=folder_of("output.summary"),
    log:
        f"{LOGS}/gather_acceptance.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd gather {params.slices} --tables rounds summary --out {params.out} > {log} 2>&1"


rule measure_acceptance_vllm:
    """One pair's acceptance through vLLM's speculative decoding on one platform (acceptance.vllm;
    moesd.config.acceptance_vllm_slices): sigma, alpha and per-position acceptance from its
    counters, ours beside it; the target split over the platform's GPUs."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/acceptance.json",
        models=MODELS_MANIFEST,
        prompts=PROMPTS_STATS,
        summary=f"{RUNS}/acceptance/summary.csv",
    output:
        summary=f"{RUNS}/acceptance/vllm/{{platform}}/{{slice}}/summary_vllm.csv",
        backends=f"{RUNS}/acceptance/vllm/{{platform}}/{{slice}}/backends.csv",
    params:
        env=model_env,
        run=run_folder,
        prompts=folder_of("input.prompts"),
        out=folder_of("output.summary"),
    wildcard_constraints:
        platform=alternatives(PLATFORMS),
        slice=alternatives(part["local"] for part in ACCEPTANCE_VLLM_SLICES.values()),
    threads: THREADS["acceptance_vllm"]
    resources:
        **job_resource_set(ACCEPTANCE_VLLM_SLICE_RESOURCES, slice_id),
    log:
        f"{LOGS}/acceptance_vllm_{{platform}}_{{slice}}.log",
    conda:
        MEASURE_ENV  # moesd; vLLM runs in its own environment (MOESD_VLLM_PYTHON, .venv-vllm)
    shell:
        "{params.env} moesd acceptance-vllm --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "--summary {input.summary} --slice {wildcards.platform}/{wildcards.slice} --out {params.out} > {log} 2>&1"


rule gather_acceptance_vllm:
    """vLLM's acceptance slices concatenated, in config order, each row with its platform."""
    input:
        [table for key in ACCEPTANCE_VLLM_SLICES for table in slice_tables(key, ACCEPTANCE_VLLM_SLICE_TABLES)],
    output:
        summary=f"{RUNS}/acceptance/summary_vllm.csv",
        backends=f"{RUNS}/acceptance/backends.csv",
    params:
        slices=slice_folders,
        out=folder_of("output.summary"),
    log:
        f"{LOGS}/gather_acceptance_vllm.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd gather {params.slices} --tables summary_vllm backends --out {params.out} > {log} 2>&1"


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
        env=model_env,
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
        "{params.env} moesd routing --config {input.config} --run-dir {params.run} --prompts {params.prompts} --out {output} > {log} 2>&1"


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
        [rules.gather_acceptance.output, rules.plot_routing.output] if config["pairs"] else [],
        rules.gather_acceptance_vllm.output if config["pairs"] and config["acceptance"]["vllm"] else [],
