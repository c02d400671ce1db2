rule measured_figures:
    """Figs. 2, 3, 4 and 6 and the Tables 1-2 analog from the run's speedup and fit tables."""
    input:
        config=f"{RUNS}/config/analysis.json",
        speedup=list(SPEEDUP.values()),
        fit=FIT["predictions.csv"],
        curves=FIT["curves.csv"],
        env=ENV,
    output:
        figures=[
            report(f"{FIGURES}/{name}.{ext}", caption=f"../report/{name}.rst", category="Figures", subcategory=name)
            for name in MEASURED_FIGURES
            for ext in ("png", "pdf")
        ],
        table=MEASURED_TABLES["csv"],
        markdown=report(MEASURED_TABLES["md"], caption="../report/tables_1_2.rst", category="Tables"),
    params:
        speedup=folder_of("input.speedup"),
        fit=folder_of("input.fit"),
        out=folder_of("output.table"),
    log:
        f"{LOGS}/measured_figures.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd figures --config {input.config} --speedup {params.speedup} --fit {params.fit} --env {input.env} "
        "--out {params.out} > {log} 2>&1"


rule engines_figure:
    """End-to-end speedup per batch size, our engine against vLLM (latency.e2e.backends: [ours, vllm])."""
    input:
        e2e=SPEEDUP["e2e"],
        env=ENV,
    output:
        figures=[
            report(f"{FIGURES}/engines.{ext}", caption="../report/engines.rst", category="Figures", subcategory="engines")
            for ext in ("png", "pdf")
        ],
        table=f"{FIGURES}/engines.csv",
        markdown=f"{FIGURES}/engines.md",
    params:
        stem=stem_of("table"),
    log:
        f"{LOGS}/engines_figure.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd plot-engines {input.e2e} --env {input.env} --out {params.stem} > {log} 2>&1"


rule figures:
    input:
        THEORY_OUTPUTS,
        rules.measured_figures.output,
        rules.engines_figure.output if {"ours", "vllm"} <= set(config["latency"]["e2e"]["backends"]) else [],
        ROUTING_FIGURES,
