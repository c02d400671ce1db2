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


rule figures:
    input:
        THEORY_OUTPUTS,
        rules.measured_figures.output,
        ROUTING_FIGURES,
