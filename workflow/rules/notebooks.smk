NOTEBOOKS = ["fig2_speedup", "fig3_target_efficiency", "fig4_sparsity_fit", "fig6_e2e"]
NOTEBOOKS += ["fig1_routing"] if config["pairs"] else []  # routing counts come with a trained or hub pair


rule notebook:
    """One figure's notebook executed against this run's tables (papermill, experiment as parameter)."""
    input:
        notebook="notebooks/{notebook}.ipynb",
        tables=[rules.measured_figures.output, rules.fit_run.output, f"{RUNS}/config.json", ROUTING],
    output:
        f"{FIGURES}/notebooks/{{notebook}}.ipynb",
    params:
        experiment=EXP,
    wildcard_constraints:
        notebook="|".join(NOTEBOOKS),
    retries: 2  # kernels started side by side can race for a port (jupyter_client); a retry is a fresh start
    log:
        f"{LOGS}/notebook_{{notebook}}.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "papermill {input.notebook} {output} -p experiment {params.experiment} -k python3 --cwd . > {log} 2>&1"


rule notebooks:
    input:
        expand(f"{FIGURES}/notebooks/{{notebook}}.ipynb", notebook=NOTEBOOKS),
