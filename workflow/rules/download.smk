# The download stage: every hf: spec of the experiment resolved to a commit (checked against the
# lock file kept with the config) and fetched into the Hugging Face cache, where the internet is.


rule download:
    """Resolve and fetch the experiment's hub models (a local rule: the login node, not a GPU
    job); the manifest is what every later rule loads by, offline."""
    output:
        HUB_MANIFEST,
    params:
        specs=HUB_SPECS,
        lock=HUB_LOCK,
        update_lock="--update-lock" if config["download"]["update_lock"] else "",
    log:
        f"{LOGS}/download.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd download {params.specs:q} --manifest {output} --lock {params.lock:q} {params.update_lock} > {log} 2>&1"
