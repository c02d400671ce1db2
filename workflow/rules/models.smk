rule train_models:
    """The tiny MoE target and its distilled dense draft, trained on CPU from stdlib source."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/models.json",
    output:
        target=directory(f"{RUNS}/models/target"),
        draft=directory(f"{RUNS}/models/draft"),
        manifest=f"{RUNS}/models/manifest.json",
    params:
        env=model_env,
        out=folder_of("output.manifest"),
    threads: THREADS["models"]
    priority: 10  # the longest job; everything model-side waits for it
    log:
        f"{LOGS}/train_models.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "{params.env} moesd train --config {input.config} --out {params.out} > {log} 2>&1"


rule prompts:
    """Every prompt set encoded with each pair's target tokenizer, and prompt length statistics."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/prompts.json",
        models=MODELS_MANIFEST,
    output:
        files=PROMPT_FILES,
        stats=PROMPTS_STATS,
    params:
        env=model_env,
        run=run_folder,
        out=folder_of("output.stats"),
    log:
        f"{LOGS}/prompts.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "{params.env} moesd prompts --config {input.config} --run-dir {params.run} --out {params.out} > {log} 2>&1"


rule models:
    input:
        MODELS_MANIFEST,
        rules.prompts.output,
