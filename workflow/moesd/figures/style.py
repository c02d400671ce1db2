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
