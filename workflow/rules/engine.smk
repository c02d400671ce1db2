ENGINE = config["engine"]


rule bench_forward:
    """Our decoder against transformers on the same weights: per-forward medians, side by side."""
    input:
        hub=HUB,
    output:
        f"{FIGURES}/engine/bench_forward_{{index}}.csv",
    params:
        hub=hub_env,
        model=lambda wildcards: ENGINE["bench_models"][int(wildcards.index)],
        batch_sizes=" ".join(map(str, ENGINE["bench_batch_sizes"])),
        tokens=" ".join(map(str, ENGINE["bench_tokens"])),
        repeats=ENGINE["bench_repeats"],
    threads: 2
    log:
        f"{LOGS}/bench_forward_{{index}}.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "{params.hub} moesd bench-forward --model {params.model:q} --batch-sizes {params.batch_sizes} --tokens {params.tokens} "
        "--repeats {params.repeats} --threads {threads} --out {output} > {log} 2>&1"


rule engine:
    input:
        expand(f"{FIGURES}/engine/bench_forward_{{index}}.csv", index=range(len(ENGINE["bench_models"]))),
