ROUTING = [rules.measure_routing.output[0]] if config["pairs"] else []


rule speedup:
    """Speedups composed from the measured T_T, T_D, T_reject and sigma (Eq. 4), the measured
    end-to-end speedups, and the AR step's achieved fraction of the copy bandwidth, as tidy tables."""
    input:
        config=f"{RUNS}/config/analysis.json",
        latency=rules.measure_latency.output,
        acceptance=ACCEPTANCE_SUMMARY,
        env=f"{RUNS}/env.json",
    output:
        composed=f"{RUNS}/speedup/composed.csv",
        e2e=f"{RUNS}/speedup/e2e.csv",
        bandwidth=f"{RUNS}/speedup/bandwidth.csv",
    params:
        latency=lambda wildcards, input: Path(input.latency[0]).parent,
        out=lambda wildcards, output: Path(output.composed).parent,
        acceptance=lambda wildcards, input: f"--acceptance {input.acceptance}" if input.acceptance else "",
    log:
        f"{LOGS}/speedup.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd speedup --config {input.config} --latency {params.latency} {params.acceptance} --env {input.env} "
        "--out {params.out} > {log} 2>&1"


rule fit_run:
    """Algorithm 1 (each configured variant) fitted on the run's composed speedups per model family,
    on the analysis.fit_stride subset, and the Table 3 analog (fit quality against m)."""
    input:
        config=f"{RUNS}/config/analysis.json",
        composed=rules.speedup.output.composed,
        env=f"{RUNS}/env.json",
    output:
        params=f"{RUNS}/fit/params.json",
        predictions=f"{RUNS}/fit/predictions.csv",
        curves=f"{RUNS}/fit/curves.csv",
        metrics=f"{RUNS}/fit/metrics.csv",
        quality=f"{FIGURES}/fit_quality.csv",
        markdown=report(f"{FIGURES}/fit_quality.md", caption="../report/fit_run.rst", category="Fit"),
    params:
        out=lambda wildcards, output: Path(output.params).parent,
        tables=lambda wildcards, output: Path(output.quality).parent,
    log:
        f"{LOGS}/fit_run.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd fit-run --config {input.config} --speedup {input.composed} --env {input.env} --out {params.out} "
        "--tables {params.tables} > {log} 2>&1"


rule fit:
    input:
        rules.fit_run.output,
