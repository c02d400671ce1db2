"""Shared figure conventions: seaborn style, PNG and PDF side by side, written atomically,
and a caption file next to them (device, models and the source of every number)."""

from __future__ import annotations

import weakref
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

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


CLIPPED = (
    "Intervals are clipped at the axes, which the point estimates scale; a triangle marks where one reaches beyond."
)
_INTERVALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # axes -> the intervals drawn on them


def _interval(ax, rows, x: str, y: str, color) -> tuple[str, str] | None:
    """Y's interval columns where ROWS has them, remembered for scale_to_points."""
    low, high = f"{y}_ci_low", f"{y}_ci_high"
    if low not in rows or high not in rows or not rows[low].notna().any():
        return None
    values = (rows[x].to_numpy(float), rows[low].to_numpy(float), rows[high].to_numpy(float), color)
    _INTERVALS.setdefault(ax, []).append(values)
    return low, high


def band(ax, rows, x: str, y: str, **style) -> None:
    """Shade Y's interval (Y_ci_low to Y_ci_high, from the resampled raw repeats) where the table has one."""
    columns = _interval(ax, rows, x, y, style.get("color"))
    if columns:
        ax.fill_between(rows[x], rows[columns[0]], rows[columns[1]], alpha=0.2, lw=0, **style)


def error_bars(ax, rows, x: str, y: str, **style) -> None:
    """Y's interval as error bars at each X where the table has one."""
    columns = _interval(ax, rows, x, y, style.get("color"))
    if columns:
        low, high = (rows[c] for c in columns)
        ax.errorbar(rows[x], rows[y], yerr=[rows[y] - low, high - rows[y]], fmt="none", lw=0.8, **style)


def point_values(ax) -> np.ndarray:
    """The y values of the point estimates drawn on AX: its lines and scattered markers (not the
    bands or error bars)."""
    parts = [np.asarray(line.get_ydata(), float) for line in ax.lines]
    parts += [np.asarray(c.get_offsets(), float)[:, 1] for c in ax.collections if isinstance(c, PathCollection)]
    values = np.concatenate(parts) if parts else np.array([])
    return values[np.isfinite(values)]


def scale_to_points(axes, bottom: float | None = None, top: float | None = None) -> tuple[float, float] | None:
    """Y limits of AXES (one, or several sharing y) from the point estimates, not the intervals:
    one disturbed point's interval once reached 30x and flattened every curve. BOTTOM fixes the
    lower limit, TOP is the least upper one. Intervals beyond the limits are clipped, with a
    triangle at the edge above (or below) each point where one is. Returns the limits."""
    axes = list(np.ravel([axes]))
    values = np.concatenate([point_values(ax) for ax in axes])
    if not len(values):
        return None
    lowest, highest = float(values.min()), float(values.max())
    pad = max(0.15 * (highest - lowest), 0.05 * abs(highest)) or 0.1  # room for ordinary intervals
    limits = (lowest - pad if bottom is None else bottom, max(highest + pad, top if top is not None else -np.inf))
    for ax in axes:
        ax.set_ylim(*limits)
        for x, low, high, color in _INTERVALS.get(ax, []):
            for beyond, edge, marker in ((high > limits[1], limits[1], "^"), (low < limits[0], limits[0], "v")):
                if beyond.any():
                    ax.plot(x[beyond], np.full(int(beyond.sum()), edge), ls="none", marker=marker, ms=5, color=color,
                            clip_on=False, zorder=6)  # fmt: skip
    return limits


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
