"""The one style of every figure: rcParams, colours, and the helpers that build a Figure
and mark time axes and phase times.

matplotlib is imported lazily inside the functions and only through its object API
(``Figure`` on the Agg canvas): no pyplot, so no global figure state leaks into the caller.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np

from ..status import OUTCOMES

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "figure.dpi": 100,
    "savefig.dpi": 150,
}
"""rcParams in force while a figure is built (matplotlib's defaults otherwise)."""

FEATURE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
NEURON_STYLES = ("-", "--", ":", "-.")
PHASE_COLOR = "#555555"
OUTCOME_COLORS = dict(zip(OUTCOMES, ("#2ca02c", "#d62728", "#7f7f7f", "#ff7f0e", "#000000"), strict=True))
"""Line and bar colour of each outcome (``status.OUTCOMES``)."""
OUTCOME_CMAPS = dict(zip(OUTCOMES, ("Greens", "Reds", "Greys", "Oranges", "Purples"), strict=True))
"""Colour map of each outcome's fraction in the phase diagrams."""
FLOW_LABEL = r"flow time $\eta\,\cdot$ steps"


def new_figure(nrows: int, ncols: int, size, **kw):
    """A Figure with an Agg canvas and a grid of axes (``squeeze=False``), built under :data:`STYLE`."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def styled(func):
    """Run a drawing function under :data:`STYLE` (fonts and line widths are set at creation)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def feature_color(l: int) -> str:
    return FEATURE_COLORS[l % len(FEATURE_COLORS)]


def mark_phases(ax, times: Mapping, eta: float):
    """Vertical lines at the phase times (steps in ``times``) that happened, labels staggered
    in height so that close events stay readable."""
    from matplotlib.transforms import blended_transform_factory

    tr = blended_transform_factory(ax.transData, ax.transAxes)
    for i, key in enumerate(("T1", "T2", "T3", "T4")):
        v = times.get(key)
        if v is None:
            continue
        x = v * eta
        ax.axvline(x, color=PHASE_COLOR, lw=0.9, ls=(0, (4, 3)), zorder=1)
        label = ax.text(x, 0.985 - 0.065 * i, f" {key}", transform=tr, color=PHASE_COLOR, fontsize=8.5,
                        va="top", ha="left", clip_on=True,
                        bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.5})
        label.set_in_layout(False)  # a label outside a zoomed window must not reserve space


def zoom_window(times: Mapping, eta: float, t_end: float):
    """A linear time window around T2..T4 (flow time), or None when T2 or T3 is missing."""
    t2, t3 = times.get("T2"), times.get("T3")
    if t2 is None or t3 is None:
        return None
    t2, t3 = t2 * eta, t3 * eta
    delta = max(abs(t3 - t2), 0.01 * t3)
    return max(0.0, min(t2, t3) - 4 * delta), min(t_end, max(t2, t3) + 2 * delta)


def positive_time(run):
    """The run's flow time with ``t = 0`` as NaN (for log time axes)."""
    t = run.flow_time
    return np.where(t > 0, t, np.nan)


def time_axis(ax, run, *, log: bool = True):
    t = run.flow_time
    if log:
        ax.set_xscale("log")
        pos = t[t > 0]
        if pos.size:
            ax.set_xlim(max(pos[0], 1e-3 * pos[-1]), pos[-1] * 1.05)
    ax.set_xlabel(FLOW_LABEL)


def phase_note(times: Mapping, eta: float) -> str:
    parts = []
    for key in ("T1", "T2", "T3", "T4"):
        v = times.get(key)
        parts.append(f"{key} = {'—' if v is None else f'{v * eta:.4g}'}")
    return ", ".join(parts)
