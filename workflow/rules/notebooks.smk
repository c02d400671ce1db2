rule notebook:
    """One figure's notebook executed against this run's tables (papermill, experiment as parameter)."""
    input:
        notebook="notebooks/{notebook}.ipynb",
        tables=[
            [f"{FIGURES}/{name}.png" for name in MEASURED_FIGURES],
            list(MEASURED_TABLES.values()),
            list(FIT.values()),
            list(FIT_QUALITY.values()),
            f"{RUNS}/config.json",
            ROUTING,
            CLAIMS["csv"],  # each notebook shows its claims' verdicts
        ],
    output:
        f"{FIGURES}/notebooks/{{notebook}}.ipynb",
    params:
        experiment=EXP,
    wildcard_constraints:
        notebook="|".join(NOTEBOOK_NAMES),
    retries: 2  # kernels started side by side can race for a port (jupyter_client); a retry is a fresh start
    log:
        f"{LOGS}/notebook_{{notebook}}.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "papermill {input.notebook} {output} -p experiment {params.experiment} -k python3 --cwd . > {log} 2>&1"


rule notebooks:
    input:
        expand(f"{FIGURES}/notebooks/{{notebook}}.ipynb", notebook=NOTEBOOK_NAMES),
