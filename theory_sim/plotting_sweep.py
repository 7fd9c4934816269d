"""The phase diagram of a sweep: where the prediction head prevents collapse.

Input is the sweep table as columns (``theory_sim.sweep.table_columns``); output a
matplotlib ``Figure`` (matplotlib is imported only when a figure is drawn). Each
panel shows, for every grid point, the fraction of seeds with one outcome:
``diverse`` (the neurons learned different features), ``collapsed`` (all learned the
same one), ``incomplete`` (some neuron learned nothing by the cap, or diverged).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

OUTCOMES = ("diverse", "collapsed", "incomplete")
_CMAPS = {"diverse": "Greens", "collapsed": "Reds", "incomplete": "Greys"}
LABELS = {"alpha1": r"$\alpha_1$", "alpha2": r"$\alpha_2$", "eta_E_ratio": r"$\eta_E / \eta$",
          "eta": r"$\eta$", "eta_E": r"$\eta_E$", "d": "$d$", "m": "$m$", "k": "$k$", "P": "$P$",
          "sigma": r"$\sigma$"}


def _levels(col: np.ndarray) -> list:
    vals = [v for v in col if not (isinstance(v, float) and np.isnan(v))]
    return sorted(set(vals))


def outcome_fractions(table: Mapping[str, np.ndarray], x: str, y: str | None = None):
    """``(xs, ys, counts, frac)``: the levels of ``x`` (and ``y``), the runs per point
    (len(ys) x len(xs)) and the fraction of each outcome (3 x len(ys) x len(xs))."""
    outcome = np.asarray(table["outcome"], dtype=str)
    xcol = np.asarray(table[x])
    ycol = np.asarray(table[y]) if y is not None else np.zeros(len(outcome))
    xs, ys = _levels(xcol), _levels(ycol)
    counts = np.zeros((len(ys), len(xs)), dtype=int)
    frac = np.full((len(OUTCOMES), len(ys), len(xs)), np.nan)
    for iy, yv in enumerate(ys):
        for ix, xv in enumerate(xs):
            sel = (xcol == xv) & (ycol == yv)
            n = int(sel.sum())
            counts[iy, ix] = n
            if n:
                for k, name in enumerate(OUTCOMES):
                    frac[k, iy, ix] = np.mean(outcome[sel] == name)
    return xs, (ys if y is not None else [None]), counts, frac


def _ticklabel(v) -> str:
    return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)


def phase_diagram(table: Mapping[str, np.ndarray], x: str, y: str | None = None, *,
                  note: str = ""):
    """Fractions of outcomes over the grid: three heat maps (``y`` given) or three curves.

    ``table``: columns of the sweep table (at least ``outcome``, ``x`` and ``y``);
    ``note``: appended to the title (e.g. how many runs, which keys were pooled).
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    xs, ys, counts, frac = outcome_fractions(table, x, y)
    title = "Outcome fractions over seeds" + (f" ({note})" if note else "")
    if y is None:
        fig = Figure(figsize=(6.0, 4.0), layout="constrained")
        ax = fig.add_subplot()
        pos = np.arange(len(xs))
        for k, name in enumerate(OUTCOMES):
            ax.plot(pos, frac[k, 0], marker="o", label=name,
                    color={"diverse": "tab:green", "collapsed": "tab:red",
                           "incomplete": "0.5"}[name])
        ax.set_xticks(pos, [_ticklabel(v) for v in xs])
        ax.set_xlabel(LABELS.get(x, x))
        ax.set_ylabel("fraction of seeds")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
        ax.set_title(title, fontsize=9)
        return fig
    fig = Figure(figsize=(4.2 * len(OUTCOMES), 4.2), layout="constrained")
    axes = fig.subplots(1, len(OUTCOMES), sharey=True)
    annotate = len(xs) * len(ys) <= 225
    for k, (ax, name) in enumerate(zip(axes, OUTCOMES, strict=True)):
        im = ax.imshow(frac[k], origin="lower", vmin=0.0, vmax=1.0, cmap=_CMAPS[name],
                       aspect="auto", interpolation="nearest")
        ax.set_xticks(np.arange(len(xs)), [_ticklabel(v) for v in xs], rotation=45)
        ax.set_yticks(np.arange(len(ys)), [_ticklabel(v) for v in ys])
        ax.set_xlabel(LABELS.get(x, x))
        if k == 0:
            ax.set_ylabel(LABELS.get(y, y))
        ax.set_title(name)
        if annotate:
            for iy in range(len(ys)):
                for ix in range(len(xs)):
                    f = frac[k, iy, ix]
                    if np.isfinite(f):
                        ax.text(ix, iy, f"{f:.2f}".lstrip("0") if f < 1 else "1",
                                ha="center", va="center", fontsize=7,
                                color="white" if f > 0.6 else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=10)
    return fig
