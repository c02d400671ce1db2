rule speedup:
    """Speedups composed from the measured T_T, T_D, T_reject and sigma (Eq. 4), the measured
    end-to-end speedups, and the AR step's achieved fraction of the copy bandwidth, as tidy tables."""
    input:
        config=f"{RUNS}/config/analysis.json",
        latency=list(LATENCY.values()),
        acceptance=ACCEPTANCE_SUMMARY,
        rounds=ACCEPTANCE_ROUNDS,
        e2e_vllm=E2E_VLLM_TABLE,
        env=list(ENVS.values()),  # each platform's device (C9 reads their ridge points)
    output:
        **SPEEDUP,
    params:
        latency=folder_of("input.latency"),
        out=folder_of("output.composed"),
        acceptance=option_of("--acceptance", "acceptance"),
        rounds=option_of("--rounds", "rounds"),
        e2e_vllm=option_of("--e2e-vllm", "e2e_vllm"),
    log:
        f"{LOGS}/speedup.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd speedup --config {input.config} --latency {params.latency} {params.acceptance} {params.rounds} "
        "{params.e2e_vllm} "
        "--env {input.env} "
        "--out {params.out} > {log} 2>&1"


rule fit_run:
    """Algorithm 1 (each configured variant) fitted on the run's composed speedups per model family
    (and on the real-weight end-to-end K sweep where the run has one), on the analysis.fit_stride
    subset, and the Table 3 analog (fit quality against m)."""
    input:
        config=f"{RUNS}/config/analysis.json",
        composed=SPEEDUP["composed"],
        e2e=SPEEDUP["e2e"],  # its real-weight K sweep, where the run has one, is fitted too (Fig. 4)
        env=ENV,
        envs=list(ENVS.values()),
    output:
        params=FIT["params.json"],
        predictions=FIT["predictions.csv"],
        curves=FIT["curves.csv"],
        metrics=FIT["metrics.csv"],
        quality=FIT_QUALITY["csv"],
        markdown=report(FIT_QUALITY["md"], caption="../report/fit_run.rst", category="Fit"),
    params:
        out=folder_of("output.params"),
        tables=folder_of("output.quality"),
    log:
        f"{LOGS}/fit_run.log",
    conda:
        "../../envs/cpu.yaml"
    shell:
        "moesd fit-run --config {input.config} --speedup {input.composed} --env {input.env} --e2e {input.e2e} "
        "--platform-envs {input.envs} --out {params.out} --tables {params.tables} > {log} 2>&1"


rule profile_step:
    """Where the decode step's time goes (weights, attention, routing, copies, allocation,
    elementwise, dispatch) beside its weights' time at the reference platform's read bandwidth,
    per latency model at its native K (latency.profile; a benchmark of the instrument)."""
    input:
        hub=HUB,
        config=f"{RUNS}/config/latency.json",
        env=ENV,
    output:
        STEP_PROFILE,
    params:
        env=model_env,
    threads: THREADS["engine_check"]
    resources:
        **RESOURCES["engine_check"],
    log:
        f"{LOGS}/profile_step.log",
    conda:
        "../../envs/cpu.yaml"  # the profile times the CPU (moesd.step_profile)
    shell:
        "{params.env} moesd profile-step --config {input.config} --env {input.env} --threads {threads} "
        "--out {output} > {log} 2>&1"


rule fit:
    input:
        rules.speedup.output,
        rules.fit_run.output,
        [STEP_PROFILE] if config["latency"]["profile"]["enabled"] else [],
