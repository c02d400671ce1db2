"""Commands of the theory stage (workflow/rules/theory.smk), which needs no measurement:

moesd theory        N(t)/E, tokens per expert and the roofline speedup from the equations and
                    the real architectures (moesd.simulate tables, moesd.figures drawings)
moesd simulate      the sparsity sweep's design with roofline-simulated speedups (the theory
                    stage then fits it with `moesd fit`, moesd.cli.fit)
"""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import add_command


def cmd_theory(args) -> int:
    from moesd.config import load_config
    from moesd.figures.fig1_routing import active_experts_figure, tokens_per_expert_figure
    from moesd.figures.fig2_speedup import roofline_speedup_figure
    from moesd.io import write_csv
    from moesd.simulate import roofline_speedup, saturation_table

    config = load_config(args.config)
    theory, prediction = config["theory"], config["prediction"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sat = saturation_table(theory["architectures"], theory["sweep_architecture"], theory["k_values"], theory["tau"])
    write_csv(out / "saturation.csv", sat)
    active_experts_figure(sat, theory["max_tokens"], out / "active_experts")
    tokens_per_expert_figure(theory["tokens_per_expert_t"], out / "tokens_per_expert")
    roof = roofline_speedup(
        prediction["pairs"],
        prediction["platforms"],
        prediction["sigma"],
        prediction["gammas"],
        prediction["batch_sizes"],
        config["fit"],
    )
    write_csv(out / "roofline_speedup.csv", roof)
    roofline_speedup_figure(roof, out / "roofline_speedup")
    for path in sorted(out.iterdir()):
        print(path)
    return 0


def cmd_simulate(args) -> int:
    from moesd.config import load_config
    from moesd.io import write_csv
    from moesd.simulate import roofline_sweep

    config = load_config(args.config)
    sim, fit = config["simulation"], config["fit"]
    sweep = roofline_sweep(
        sim["target"],
        sim["draft"],
        sim["platform"],
        sim["sigma"],
        sim["k_values"],
        sim["gammas"],
        sim["batch_sizes"],
        bytes_per_param=fit["bytes_per_param"],
        bandwidth_scope=fit["bandwidth_scope"],
        verify_tokens=fit["verify_tokens"],
    )
    write_csv(args.out, sweep)
    print(f"{len(sweep)} simulated points -> {args.out}")
    return 0


def add_parsers(sub) -> None:
    add_command(
        sub,
        "theory",
        cmd_theory,
        "theory-stage figures and tables from a config",
        config="the theory stage's config",
        out="output folder",
    )

    add_command(
        sub,
        "simulate",
        cmd_simulate,
        "roofline-simulated sparsity sweep (the config's `simulation` section)",
        config="the simulation stage's config",
        out="CSV to write",
    )
