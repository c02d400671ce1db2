# The engine check: our decoder's forward against transformers' on the same weights, one job per
# model of engine_check.models (moesd.engine_check).


rule engine_check_model:
    """Our decoder against transformers on the same weights: per-forward medians, side by side."""
    input:
        hub=HUB,
    output:
        f"{FIGURES}/engine_check/model_{{index}}.csv",
    params:
        env=model_env,
        model=engine_check_model,
        batch_sizes=" ".join(map(str, ENGINE_CHECK["batch_sizes"])),
        tokens=" ".join(map(str, ENGINE_CHECK["tokens"])),
        repeats=ENGINE_CHECK["repeats"],
    threads: THREADS["engine_check"]
    resources:
        **RESOURCES["engine_check"],
    log:
        f"{LOGS}/engine_check_{{index}}.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "{params.env} moesd engine-check --model {params.model:q} --batch-sizes {params.batch_sizes} "
        "--tokens {params.tokens} --repeats {params.repeats} --threads {threads} --out {output} > {log} 2>&1"


rule engine_check:
    input:
        ENGINE_CHECK_TABLES,
