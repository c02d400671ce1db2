rule theory_figures:
    """Figures and tables from the theory and the real architectures alone (no measurement)."""
    input:
        config=f"{RUNS}/config/theory.json",
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
        out=folder_of("output.tables"),
    log:
        f"{LOGS}/theory.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd theory --config {input.config} --out {params.out} > {log} 2>&1"


rule simulate_sweep:
    """The paper's sparsity-sweep design with roofline-simulated speedups (labelled as such)."""
    input:
        config=f"{RUNS}/config/simulation.json",
    output:
        f"{RUNS}/theory/simulated_sweep.csv",
    log:
        f"{LOGS}/simulate_sweep.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd simulate --config {input.config} --out {output} > {log} 2>&1"


rule fit_simulated:
    """Algorithm 1 fitted on the config's stride subset of the simulated sweep."""
    input:
        rules.simulate_sweep.output,
    output:
        params=f"{RUNS}/theory/fit/params.json",
        predictions=f"{RUNS}/theory/fit/predictions.csv",
        metrics=f"{RUNS}/theory/fit/metrics.json",
    params:
        out=folder_of("output.params"),
        models=SIM_MODELS,
        flags=f"{FIT_FLAGS} --stride {FIT_CONFIG['stride']}",
    log:
        f"{LOGS}/fit_simulated.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd fit {input} {params.models} {params.flags} --out {params.out} > {log} 2>&1"


rule fit_quality_simulated:
    """Table 3 analog on the simulated sweep: fit quality against m for Table 3's strides."""
    input:
        rules.simulate_sweep.output,
    output:
        table=f"{FIGURES}/theory/fit_quality.csv",
        markdown=report(f"{FIGURES}/theory/fit_quality.md", caption="../report/fit_quality.rst", category="Theory"),
    params:
        out=folder_of("output.table"),
        models=SIM_MODELS,
        flags=FIT_FLAGS,
    log:
        f"{LOGS}/fit_quality_simulated.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd fit-quality {input} {params.models} {params.flags} --out {params.out} > {log} 2>&1"


rule plot_fit_simulated:
    input:
        rules.fit_simulated.output.predictions,
    output:
        [
            report(f"{FIGURES}/theory/sparsity_fit.{ext}", caption="../report/sparsity_fit.rst", category="Theory")
            for ext in ("png", "pdf")
        ],
    params:
        stem=stem_of(),
        caption=SIM_CAPTION,
    log:
        f"{LOGS}/plot_fit_simulated.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd plot-fit {input} --caption {params.caption:q} --out {params.stem} > {log} 2>&1"


rule theory:
    input:
        THEORY_OUTPUTS,
        ENV,
