THEORY_FIGURES = ["active_experts", "tokens_per_expert", "roofline_speedup"]


rule theory_figures:
    """Figures and tables from the theory and the real architectures alone (no measurement)."""
    input:
        config=f"{RUNS}/config.json",
        architectures="data/architectures",
        hardware="data/hardware.yaml",
    output:
        figures=[
            report(
                f"{FIGURES}/theory/{name}.{ext}",
                caption=f"../report/{name}.rst",
                category="Theory",
                subcategory=name,
            )
            for name in THEORY_FIGURES
            for ext in ("png", "pdf")
        ],
        tables=[f"{FIGURES}/theory/saturation.csv", f"{FIGURES}/theory/roofline_speedup.csv"],
    params:
        out=lambda wildcards, output: Path(output.tables[0]).parent,
    log:
        f"{LOGS}/theory.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd theory --config {input.config} --out {params.out} > {log} 2>&1"


rule theory:
    input:
        rules.theory_figures.output,
