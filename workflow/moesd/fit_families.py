"""Algorithm 1 fitted on a run's composed speedups, per model family (a base spec with its K
sweep) and per variant, with the Table 3 analog: fit quality against the number m of fitting
points (Sec. 3.3, Algorithm 1, App. C.2-C.3 and Table 3 of arXiv 2505.19645)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from moesd.architectures import ParamCount, count_parameters
from moesd.columns import TABLES, missing_columns
from moesd.fit import PARAM_NAMES, auto_stride, fit_quality, model_curves, run_fit
from moesd.hardware import BYTES_PER_PARAM, Hardware
from moesd.models import checkpoint
from moesd.models.spec import parse_spec
from moesd.paper import TABLE3_STRIDES
from moesd.speedup import fit_measurements


@dataclass
class FamilyFits:
    """The fit stage's outputs: params per "family/variant", and tables with family and variant columns."""

    records: dict = field(default_factory=dict)
    predictions: list = field(default_factory=list)
    curves: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    quality: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # families with fewer measurements than parameters

    def merge(self, other: FamilyFits) -> None:
        """OTHER's fits added to these (another table's families: the end-to-end K sweep)."""
        self.records |= other.records
        for name in ("predictions", "curves", "metrics", "quality", "skipped"):
            getattr(self, name).extend(getattr(other, name))

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "predictions": pd.concat(self.predictions, ignore_index=True),
            "curves": pd.concat(self.curves, ignore_index=True),
            "metrics": pd.DataFrame(self.metrics),
            "quality": pd.concat(self.quality, ignore_index=True),
        }


def family_models(family: str, draft_spec: str) -> tuple[ParamCount, ParamCount]:
    """Parameter counts of a family's target (its base spec) and of its draft, from their configs
    (the paper's architectures by name, data/architectures, before any download's)."""

    def config(spec):
        spec = parse_spec(spec)
        return spec.known_config() or checkpoint.hf_config(spec)

    return tuple(count_parameters(config(spec)) for spec in (family, draft_spec))


def fit_options(table: pd.DataFrame, analysis: dict, fit: dict) -> dict:
    """run_fit's options for TABLE: the run's verify-token reading, the config's conventions and
    the bytes per parameter of the dtype the table was measured in."""
    return {
        "verify_tokens": analysis["verify_tokens"],
        "dense_convention": fit["dense_convention"],
        "bandwidth_scope": fit["bandwidth_scope"],
        "bytes_per_param": BYTES_PER_PARAM.get(str(table["dtype"].iloc[0]), fit["bytes_per_param"]),
        "n_starts": fit["n_starts"],
        "seed": fit["seed"],
    }


def table3_strides(n: int) -> list[int]:
    """Table 3's strides, one per distinct m = ceil(n / stride) (the largest stride for each m)."""
    by_m = {math.ceil(n / s): s for s in sorted(TABLE3_STRIDES, reverse=True)}
    return sorted(by_m.values())


def fit_families(composed: pd.DataFrame, hardware: Hardware, analysis: dict, fit: dict, log=print) -> FamilyFits:
    """Every model family of COMPOSED at analysis.fit_dataset / fit_temperature, on its
    sigma-adjusted speedups (Fig. 4), in every configured variant, plus its Table 3 analog."""
    missing = missing_columns(composed.columns, "composed")
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)} ({TABLES['composed'][0]})")
    measurements = fit_measurements(composed, analysis["fit_dataset"], analysis["fit_temperature"])
    if not measurements:
        raise ValueError(
            f"no composed speedup at analysis.fit_dataset={analysis['fit_dataset']!r}, "
            f"fit_temperature={analysis['fit_temperature']}"
        )
    fits = FamilyFits()
    for family, table in measurements.items():
        table = table.assign(speedup=table["speedup_sigma_adjusted"])  # Fig. 4: sigma-adjusted speedups
        name = "+".join(sorted(set(table["model"])))
        if len(table) < len(PARAM_NAMES):
            fits.skipped.append(name)
            log(f"{name}: {len(table)} measurements, fewer than {len(PARAM_NAMES)} parameters: not fitted")
            continue
        stride = auto_stride(len(table)) if analysis["fit_stride"] == "auto" else analysis["fit_stride"]
        draft_spec = table["draft_spec"].iloc[0]
        target, draft = family_models(family, draft_spec)
        options = fit_options(table, analysis, fit)
        label = {"family": name, "target": family, "draft": draft_spec, "hardware": hardware.name}
        for variant in analysis["variants"]:
            record, predicted, metric = run_fit(
                table, target, draft, hardware, stride=stride, variant=variant, **options
            )
            fits.records[f"{name}/{variant}"] = record | label
            fits.predictions.append(predicted.assign(family=name, variant=variant))
            fits.curves.append(model_curves(table, record).assign(family=name, variant=variant))
            fits.metrics.append(label | {"variant": variant} | metric)
            log(
                f"{name} {variant}: m={metric['m']} of {metric['n']}, mse_fit={metric['mse_fit']:.4g}, "
                f"mape_heldout={metric['mape_heldout']:.3g}%, {record['seconds']:.3f} s"
            )
            per_m = fit_quality(
                table, target, draft, hardware, strides=table3_strides(len(table)), variant=variant, **options
            )
            fits.quality.append(per_m.assign(variant=variant, **label))
    if not fits.records:
        raise ValueError("no model family has enough measurements to fit Algorithm 1")
    return fits
