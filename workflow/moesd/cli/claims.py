"""Command of the claims stage (workflow/rules/claims.smk): `moesd claims` writes claims.md and
claims.csv, each claim of the paper with a verdict computed from the run's tables (moesd.claims)."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import ANALYSIS, add_command


def _csv(path: Path | None, kind: str | None = None):
    """A table (with the columns of KIND, moesd.columns), or an empty one where the stage wrote
    an empty file (its claims are then not measurable); a file that is not there is an error: a
    missing input is no "not measurable"."""
    import pandas as pd

    from moesd.io import read_table

    if path is None:
        return pd.DataFrame()
    if not Path(path).is_file():
        raise FileNotFoundError(f"claims input {path} does not exist (run the stage that writes it first)")
    return read_table(path, kind) if Path(path).stat().st_size > 1 else pd.DataFrame()


def _compared(paths: list[Path], stem: str, kind: str | None = None):
    """Other runs' tables STEM.csv beside their composed.csv PATHS, concatenated; each row's
    platform named "<run>/<platform>" (its hardware where the run named none), so that a platform
    of another run is never taken for one of this run's."""
    import pandas as pd

    tables = []
    for path in paths:
        table = _csv(path.with_name(f"{stem}.csv"), kind)
        if len(table):
            run = path.parent.parent.name  # data/runs/<run>/speedup/composed.csv
            where = next((table[c] for c in ("platform", "hardware") if c in table), None)
            tables.append(table if where is None else table.assign(platform=run + "/" + where.astype(str)))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def cmd_claims(args) -> int:
    from dataclasses import asdict

    import pandas as pd

    from moesd.claims import Evidence, add_support, evaluate_claims, render
    from moesd.config import load_config
    from moesd.io import write_csv, write_text
    from moesd.latency.tables import missing_note

    config = load_config(args.config)
    analysis = config["analysis"]
    ev = Evidence(
        composed=_csv(args.speedup / "composed.csv", "composed"),
        e2e=_csv(args.speedup / "e2e.csv", "e2e"),
        metrics=_csv(args.fit / "metrics.csv", "metrics"),
        predictions=_csv(args.fit / "predictions.csv", "predictions"),
        routing=_csv(args.routing, "routing"),
        compare=_compared(args.compare, "composed", "composed"),
        analysis=analysis,
    )
    reps = {name: _csv(args.speedup / f"{name}_bootstrap.csv") for name in ("composed", "e2e")}
    compare_reps = _compared(args.compare, "composed_bootstrap")  # resampled with this run's
    claims = add_support(evaluate_claims(ev), ev, reps["composed"], reps["e2e"], analysis["min_support"], compare_reps)
    write_csv(args.out.with_suffix(".csv"), pd.DataFrame([asdict(c) for c in claims]))
    missing = missing_note(_csv(args.speedup / "missing.csv")) if (args.speedup / "missing.csv").is_file() else ""
    write_text(args.out, render(claims, f"experiment {config['experiment']}", missing))
    for c in claims:
        margin = "" if c.margin != c.margin else f" margin {c.margin:+.1%}"
        print(f"{c.claim:6} {c.verdict}{margin}" + ("" if c.support != c.support else f" (support {c.support:.2f})"))
    return 0


def add_parsers(sub) -> None:
    paths = {
        "speedup": "folder of `moesd speedup`",
        "fit": "folder of `moesd fit-run`",
        "out": "claims.md to write (claims.csv beside it)",
    }
    help = "claims.md: each claim of the paper with a verdict computed from the run"
    p = add_command(sub, "claims", cmd_claims, help, config=ANALYSIS, **paths)
    p.add_argument("--routing", type=Path, help="routing.csv of the acceptance stage (Eq. 8)")
    p.add_argument("--compare", type=Path, nargs="*", default=[], help="other runs' composed.csv (C9 across devices)")
