"""Where the prediction head prevents collapse: the fraction of runs ending in each outcome
(``status.OUTCOMES``: ``diverse``, ``collapsed``, ``incomplete``, ``vanishing``) over a grid of parameters.

One heatmap, :func:`outcome_heatmaps`, draws both fig. 5 (:func:`phase_diagram_figure`)
and the phase diagram of a sweep (:func:`phase_diagram`, ``theory-sim plot-sweep``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..status import BN_OUTCOMES
from .style import OUTCOME_CMAPS, OUTCOME_COLORS, new_figure, styled

GRID_OUTCOMES = BN_OUTCOMES
"""The outcomes of the grids (fig. 5, sweeps): those of ``simulate_many``, which runs the
paper's model only; with BN the row norms never shrink (the gradient is orthogonal to
``w_j``), so ``complete_collapse`` (docs/model.md section 12, fig. 9) cannot occur there."""

LABELS = {"alpha1": r"$\alpha_1$", "alpha2": r"$\alpha_2$", "eta_E_ratio": r"$\eta_E / \eta$",
          "eta": r"$\eta$", "eta_E": r"$\eta_E$", "d": "$d$", "m": "$m$", "k": "$k$", "P": "$P$",
          "sigma": r"$\sigma$"}
"""Axis labels of the sweep keys (the key's name otherwise)."""
MAX_ANNOTATED_CELLS = 225
"""Heatmaps with more cells than this are not annotated with their values."""


def tick_label(v) -> str:
    return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)


def outcome_heatmaps(fig, axes, frac: np.ndarray, xticks: Sequence[str], yticks: Mapping[int, str], *,
                     xlabel: str, ylabel: str, separator: int | None = None,
                     outcomes: Sequence[str] = GRID_OUTCOMES):
    """One heatmap per outcome: ``frac[k]`` (rows y, columns x; NaN cells left blank) is the
    fraction of runs ending ``outcomes[k]`` (default ``GRID_OUTCOMES``), coloured on [0, 1]
    and annotated with its value.

    ``yticks``: row index -> label; ``separator``: a row drawn as a white band (fig. 5 puts
    the frozen-head row above it). Returns the images.
    """
    ny, nx = frac.shape[1:]
    annotate = nx * ny <= MAX_ANNOTATED_CELLS
    images = []
    for k, (ax, name) in enumerate(zip(axes, outcomes, strict=True)):
        im = ax.imshow(frac[k], origin="lower", vmin=0.0, vmax=1.0, cmap=OUTCOME_CMAPS[name],
                       aspect="auto", interpolation="nearest")
        images.append(im)
        if annotate:
            for iy in range(ny):
                for ix in range(nx):
                    v = frac[k, iy, ix]
                    if np.isfinite(v):
                        ax.text(ix, iy, f"{v:.2f}", ha="center", va="center", fontsize=7.5,
                                color="white" if v > 0.6 else "black")
        ax.set_xticks(range(nx), list(xticks), rotation=45 if nx > 6 else 0)
        ax.set_yticks(list(yticks), list(yticks.values()))
        if separator is not None:
            ax.axhline(separator, color="white", lw=6)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"fraction {name}")
        ax.grid(False)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return images


def outcome_bars(ax, counts: Mapping[str, Mapping[str, int]], outcomes: Sequence[str] = GRID_OUTCOMES):
    """Stacked bars: for each label (e.g. trainable / frozen head), the fraction of each outcome."""
    labels = list(counts)
    bottom = np.zeros(len(labels))
    tot = np.array([sum(counts[h].values()) for h in labels], float)
    for oc in outcomes:
        v = np.array([counts[h].get(oc, 0) for h in labels], float) / tot
        ax.bar(labels, v, bottom=bottom, color=OUTCOME_COLORS[oc], label=oc, width=0.6)
        for i, (b, h) in enumerate(zip(bottom, v, strict=True)):
            if h > 0.04:
                ax.text(i, b + h / 2, f"{h:.2f}", ha="center", va="center", fontsize=8.5, color="white")
        bottom += v
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of runs")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    ax.grid(False)


@styled
def phase_diagram_figure(ratios_alpha: Sequence[float], ratios_eta: Sequence[float], counts: Mapping,
                         frozen_counts: Mapping, n_seeds: int, *, default_counts: Mapping | None = None,
                         note: str = "", alpha1: float = 6.0, outcomes: Sequence[str] = GRID_OUTCOMES):
    """Fig. 5: fraction of runs ending in each of ``outcomes`` (default ``GRID_OUTCOMES``).

    ``counts[outcome]``: (len(ratios_eta), len(ratios_alpha)) integer array of runs
    with the trainable head; ``frozen_counts[outcome]``: (len(ratios_alpha),) with the
    head frozen at I, drawn as a separate top row. ``default_counts``: optional
    ``{"trainable": {outcome: n}, "frozen": {...}}`` drawn as a bar panel.
    """
    ncols = len(outcomes) + (default_counts is not None)
    fig, axes = new_figure(1, ncols, (4.3 * ncols, 4.8))
    na, ne = len(ratios_alpha), len(ratios_eta)
    frac = np.full((len(outcomes), ne + 2, na), np.nan)
    for k, oc in enumerate(outcomes):
        frac[k, :ne] = np.asarray(counts[oc], float) / n_seeds
        frac[k, ne + 1] = np.asarray(frozen_counts[oc], float) / n_seeds
    yticks = {**{i: f"{r:g}" for i, r in enumerate(ratios_eta)}, ne + 1: "frozen"}
    outcome_heatmaps(fig, axes[0, :len(outcomes)], frac, [f"{r:g}" for r in ratios_alpha], yticks,
                     xlabel=rf"$\alpha_1 / \alpha_2$  ($\alpha_1 = {alpha1:g}$)", ylabel=r"$\eta_E / \eta$",
                     separator=ne, outcomes=outcomes)
    if default_counts is not None:
        ax = axes[0, len(outcomes)]
        outcome_bars(ax, default_counts, outcomes)
        n = int(sum(default_counts[next(iter(default_counts))].values()))
        ax.set_title(f"default parameters, {n} seeds")
    if note:
        fig.suptitle(note, fontsize=9)
    return fig


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
    frac = np.full((len(GRID_OUTCOMES), len(ys), len(xs)), np.nan)
    for iy, yv in enumerate(ys):
        for ix, xv in enumerate(xs):
            sel = (xcol == xv) & (ycol == yv)
            n = int(sel.sum())
            counts[iy, ix] = n
            if n:
                for k, name in enumerate(GRID_OUTCOMES):
                    frac[k, iy, ix] = np.mean(outcome[sel] == name)
    return xs, (ys if y is not None else [None]), counts, frac


@styled
def phase_diagram(table: Mapping[str, np.ndarray], x: str, y: str | None = None, *, note: str = ""):
    """The phase diagram of a sweep: fractions of outcomes over the grid, three heatmaps
    (``y`` given) or three curves against ``x``.

    ``table``: columns of the sweep table (at least ``outcome``, ``x`` and ``y``);
    ``note``: appended to the title (e.g. how many runs, which keys were pooled).
    """
    xs, ys, counts, frac = outcome_fractions(table, x, y)
    title = "Outcome fractions over seeds" + (f" ({note})" if note else "")
    if y is None:
        fig, axes = new_figure(1, 1, (6.0, 4.0))
        ax = axes[0, 0]
        pos = np.arange(len(xs))
        for k, name in enumerate(GRID_OUTCOMES):
            ax.plot(pos, frac[k, 0], marker="o", label=name, color=OUTCOME_COLORS[name])
        ax.set_xticks(pos, [tick_label(v) for v in xs])
        ax.set_xlabel(LABELS.get(x, x))
        ax.set_ylabel("fraction of seeds")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
        ax.set_title(title, fontsize=9)
        return fig
    fig, axes = new_figure(1, len(GRID_OUTCOMES), (4.2 * len(GRID_OUTCOMES), 4.2))
    outcome_heatmaps(fig, axes[0], frac, [tick_label(v) for v in xs],
                     {i: tick_label(v) for i, v in enumerate(ys)},
                     xlabel=LABELS.get(x, x), ylabel=LABELS.get(y, y))
    fig.suptitle(title, fontsize=10)
    return fig


def sweep_axes(manifest: dict, table: Mapping, x: str | None = None, y: str | None = None):
    """``(x, y, note)`` for the phase diagram of a sweep: by default the first two grid
    keys with more than one value; ``note`` says how many runs and what is pooled.
    A bad key is a ``sweep.SweepError``."""
    from ..sweep import SweepError, canonical_key

    grid_keys = [k for k, v in manifest["spec"]["grid"] if len(v) > 1]
    x = canonical_key(x) if x else (grid_keys[0] if grid_keys else None)
    y = canonical_key(y) if y else (next((k for k in grid_keys if k != x), None))
    if x is None:
        raise SweepError("the sweep has no grid key with more than one value to plot against")
    for k in (x, y):
        if k is not None and k not in table:
            raise SweepError(f"{k} is not a column of the table")
    pooled = [k for k in grid_keys if k not in (x, y)]
    n = manifest.get("n_runs")
    done = len(table["run_id"]) if "run_id" in table else 0
    note = f"{done} of {n} runs" if n and done < n else f"{done} runs"
    if pooled:
        note += "; pooled over " + ", ".join(pooled)
    return x, y, note
