import json


rule resolved_config:
    """The validated config with every default filled in, for the command-line stages to read;
    it changes (and downstream rules rerun) only when the science in the config changes."""
    output:
        f"{RUNS}/config.json",
    params:
        text=json.dumps(config, indent=2, sort_keys=True),
    log:
        f"{LOGS}/resolved_config.log",
    run:
        from moesd.io import write_text

        write_text(output[0], f"{params.text}\n")
        write_text(log[0], f"wrote {output[0]}\n")


rule environment:
    """The run's env.json: package versions, git commit, and this machine's measured memory
    bandwidth and matmul throughput (`moesd probe-hardware`)."""
    output:
        f"{RUNS}/env.json",
    threads: 2  # the probe's thread count is recorded; the CPU experiments run with 2
    log:
        f"{LOGS}/environment.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd probe-hardware --device cpu --copy-mib 256 --matmul-n 1024 --out {output} > {log} 2>&1"
