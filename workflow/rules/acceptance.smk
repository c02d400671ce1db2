rule measure_acceptance:
    """Batched speculative decoding of real prompts: per-round accepted counts, alpha and sigma."""
    input:
        config=f"{RUNS}/config/acceptance.json",
        models=MODELS_MANIFEST,
        prompts=rules.prompts.output.stats,
    output:
        rounds=f"{RUNS}/acceptance/rounds.csv",
        summary=report(f"{RUNS}/acceptance/summary.csv", caption="../report/acceptance.rst", category="Acceptance"),
    params:
        run=lambda wildcards, input: Path(input.config).parent.parent,
        prompts=lambda wildcards, input: Path(input.prompts).parent,
        out=lambda wildcards, output: Path(output.summary).parent,
    threads: 2
    log:
        f"{LOGS}/acceptance.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd acceptance --config {input.config} --run-dir {params.run} --prompts {params.prompts} "
        "--out {params.out} > {log} 2>&1"


rule measure_routing:
    """Distinct experts per layer against tokens per forward, real prompts and random ids (Fig. 1)."""
    input:
        config=f"{RUNS}/config/routing.json",
        models=MODELS_MANIFEST,
        prompts=rules.prompts.output.stats,
    output:
        f"{RUNS}/acceptance/routing.csv",
    params:
        run=lambda wildcards, input: Path(input.config).parent.parent,
        prompts=lambda wildcards, input: Path(input.prompts).parent,
    threads: 2
    log:
        f"{LOGS}/routing.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd routing --config {input.config} --run-dir {params.run} --prompts {params.prompts} --out {output} > {log} 2>&1"


ACCEPTANCE_SUMMARY = [rules.measure_acceptance.output.summary] if config["pairs"] else []


rule acceptance:
    input:
        [rules.measure_acceptance.output, rules.measure_routing.output] if config["pairs"] else [],
