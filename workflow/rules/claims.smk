rule claims_report:
    """claims.md: each claim of the paper (C1-C10, Eq. 8) with a verdict computed from the run's tables."""
    input:
        config=f"{RUNS}/config/analysis.json",
        speedup=list(SPEEDUP.values()),
        fit=list(FIT.values()),
        routing=ROUTING,
        compare=[str(path) for path in compare_tables(config)],  # analysis.compare_runs (C9)
    output:
        markdown=report(CLAIMS["md"], caption="../report/claims.rst", category="Claims"),
        table=CLAIMS["csv"],
    params:
        speedup=folder_of("input.speedup"),
        fit=folder_of("input.fit"),
        routing=option_of("--routing", "routing"),
        compare=option_of("--compare", "compare"),
    log:
        f"{LOGS}/claims.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd claims --config {input.config} --speedup {params.speedup} --fit {params.fit} {params.routing} "
        "{params.compare} --out {output.markdown} > {log} 2>&1"


rule claims:
    input:
        rules.claims_report.output,
