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

        write_text(output[0], params.text + "\n")
        write_text(log[0], f"wrote {output[0]}\n")
