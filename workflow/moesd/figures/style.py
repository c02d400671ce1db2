"""Shared figure conventions: seaborn style, PNG and PDF side by side, written atomically,
and a caption file next to them (device, models and the source of every number)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from moesd.io import atomic_path, write_text  # noqa: E402

E2E_TIME = {"decode": "the decode without the prefill", "total": "the whole generation, prefill included"}


def style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def save_figure(fig, stem: str | Path | None, caption: str):
    """Write STEM.png, STEM.pdf and STEM.caption.md and close FIG; return FIG. With STEM None
    (a notebook) nothing is written and the figure stays open to be shown."""
    if stem is None:
        return fig
    stem = Path(stem)
    for suffix in (".png", ".pdf"):
        path = stem.with_suffix(suffix)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=150, bbox_inches="tight")
    write_text(stem.with_suffix(".caption.md"), caption.strip() + "\n")
    plt.close(fig)
    return fig


def band(ax, rows, x: str, y: str, **style) -> None:
    """Shade Y's interval (Y_ci_low to Y_ci_high, from the resampled raw repeats) where the table has one."""
    low, high = f"{y}_ci_low", f"{y}_ci_high"
    if low in rows and high in rows and rows[low].notna().any():
        ax.fill_between(rows[x], rows[low], rows[high], alpha=0.2, lw=0, **style)


def error_bars(ax, rows, x: str, y: str, **style) -> None:
    """Y's interval as error bars at each X where the table has one."""
    low, high = f"{y}_ci_low", f"{y}_ci_high"
    if low in rows and high in rows and rows[low].notna().any():
        ax.errorbar(rows[x], rows[y], yerr=[rows[y] - rows[low], rows[high] - rows[y]], fmt="none", lw=0.8, **style)


def models_label(table, name: str = "model", spec: str = "spec") -> str:
    """NAME = SPEC for every model of TABLE, each arch: spec marked as random weights (its router
    routes at random, not as a trained one would)."""
    from moesd.models.spec import ModelSpecError, parse_spec

    def note(text: str) -> str:
        try:
            return " (random weights: a random router)" if parse_spec(text).kind == "arch" else ""
        except ModelSpecError:
            return ""

    pairs = table.drop_duplicates(name)[[name, spec]].itertuples(index=False)
    return "; ".join(f"{m} = {s}{note(s)}" for m, s in pairs)


def device_label(env: dict) -> str:
    probe = env.get("hardware_probe", {})
    return f"{probe.get('device_name', 'unknown device')} ({probe.get('device', '?')}, {probe.get('threads', '?')} threads)"
