# moesd: regenerate the MoESD paper's figures and claims from raw runs.
# `snakemake --cores 2` runs the default experiment (config/config.yaml); another experiment:
# `snakemake --cores 2 --configfile config/<name>.yaml`. The package must be installed
# (`pip install -e ".[test]"`): the rules call `moesd`, and the parse imports moesd.config.
import os
import sys

from snakemake.utils import min_version

from moesd.config import (
    ConfigError,
    check_unique_keys,
    compare_tables,
    config_part,
    prompt_sources,
    uses_trained_pair,
    validate_config,
)


min_version("9.0")

os.environ.setdefault("MOESD_CHECKOUT", workflow.basedir)  # where envs/*.post-deploy.sh installs it from


# The default experiment, unless the command line names an experiment's own files: those replace
# it rather than being merged over it, so a key an experiment leaves out takes the schema's
# default, never the default experiment's choice (`--config key=value` alone still overrides it).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


try:
    check_unique_keys(workflow.config_settings.configfiles or ["config/config.yaml"])  # a key given twice
    validate_config(config)  # fills defaults in place; one line naming the key on error
except ConfigError as error:
    sys.exit(str(error))


# common.smk first: the paths, globals and input functions every rule file shares; the rest in
# any order


include: "workflow/rules/common.smk"
include: "workflow/rules/environment.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/engine_check.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/acceptance.smk"
include: "workflow/rules/latency.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/notebooks.smk"


rule all:
    default_target: True
    input:
        f"{RUNS}/config.json",
        rules.theory.input,
        rules.environments.input,
        rules.engine_check.input,
        rules.acceptance.input,
        rules.latency.input,
        rules.fit.input,
        rules.figures.input,
        rules.claims.input,
        rules.notebooks.input,


onsuccess:
    print(f"moesd: experiment {EXP} done; wall time of this invocation {(time.time() - START) / 60:.1f} min")
