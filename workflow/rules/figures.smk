MEASURED_FIGURES = ["fig2_speedup", "fig3_target_efficiency", "fig4_sparsity_fit", "fig6_e2e"]


rule measured_figures:
    """Figs. 2, 3, 4 and 6 and the Tables 1-2 analog from the run's speedup and fit tables."""
    input:
        config=f"{RUNS}/config/analysis.json",
        speedup=rules.speedup.output,
        fit=rules.fit_run.output.predictions,
        env=f"{RUNS}/env.json",
    output:
        figures=[
            report(f"{FIGURES}/{name}.{ext}", caption=f"../report/{name}.rst", category="Figures", subcategory=name)
            for name in MEASURED_FIGURES
            for ext in ("png", "pdf")
        ],
        table=f"{FIGURES}/tables_1_2.csv",
        markdown=report(f"{FIGURES}/tables_1_2.md", caption="../report/tables_1_2.rst", category="Tables"),
    params:
        speedup=lambda wildcards, input: Path(input.speedup[0]).parent,
        fit=lambda wildcards, input: Path(input.fit).parent,
        out=lambda wildcards, output: Path(output.table).parent,
    log:
        f"{LOGS}/measured_figures.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd figures --config {input.config} --speedup {params.speedup} --fit {params.fit} --env {input.env} "
        "--out {params.out} > {log} 2>&1"


rule figures:
    input:
        rules.theory.input,
        rules.measured_figures.output,
        rules.plot_routing.output if config["pairs"] else [],
