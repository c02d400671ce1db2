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
    resources:
        gpu=GPU,
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
    resources:
        gpu=GPU,
    log:
        f"{LOGS}/routing.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd routing --config {input.config} --run-dir {params.run} --prompts {params.prompts} --out {output} > {log} 2>&1"


rule plot_routing:
    """Fig. 1 (a/b) from the run: measured distinct experts against Eq. 8."""
    input:
        rules.measure_routing.output,
    output:
        [
            report(f"{FIGURES}/acceptance/routing.{ext}", caption="../report/routing.rst", category="Acceptance")
            for ext in ("png", "pdf")
        ],
    params:
        stem=lambda wildcards, output: Path(output[0]).with_suffix(""),
    log:
        f"{LOGS}/plot_routing.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd plot-routing {input} --out {params.stem} > {log} 2>&1"


ACCEPTANCE_SUMMARY = [rules.measure_acceptance.output.summary] if config["pairs"] else []


rule acceptance:
    input:
        [rules.measure_acceptance.output, rules.plot_routing.output] if config["pairs"] else [],
