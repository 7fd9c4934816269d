"""Figures of the paper's statements: results in, :class:`matplotlib.figure.Figure` out.

Nothing here runs a simulation, prints or writes a file (``theory_sim.cli.figures``
does). matplotlib is imported lazily inside the functions and only through its
object API (``Figure`` on the Agg canvas): no pyplot, so no global figure state
leaks into the caller. Every function draws in the same style (:data:`STYLE`):
time axes in flow time ``eta * steps`` unless stated, features coloured, neurons
told apart by line style, phase times as labelled vertical lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import analysis

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
OUTCOME_COLORS = {"diverse": "#2ca02c", "collapsed": "#d62728", "incomplete": "#7f7f7f"}
FLOW_LABEL = r"flow time $\eta\,\cdot$ steps"


def _new_figure(nrows: int, ncols: int, size, **kw):
    """A Figure with an Agg canvas and a grid of axes, built under :data:`STYLE`."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _styled(func):
    """Run a drawing function under :data:`STYLE` (fonts and line widths are set at creation)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def _feature_color(l: int) -> str:
    return FEATURE_COLORS[l % len(FEATURE_COLORS)]


def _mark_phases(ax, times: Mapping, eta: float):
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


def _positive_time(run):
    t = run.flow_time
    return np.where(t > 0, t, np.nan)


def _time_axis(ax, run, *, log: bool = True):
    t = run.flow_time
    if log:
        ax.set_xscale("log")
        pos = t[t > 0]
        if pos.size:
            ax.set_xlim(max(pos[0], 1e-3 * pos[-1]), pos[-1] * 1.05)
    ax.set_xlabel(FLOW_LABEL)


def _phase_note(times: Mapping, eta: float) -> str:
    parts = []
    for key in ("T1", "T2", "T3", "T4"):
        v = times.get(key)
        parts.append(f"{key} = {'—' if v is None else f'{v * eta:.4g}'}")
    return ", ".join(parts)


# ---------------------------------------------------------------- fig 1

def _alignment_lines(ax, run, *, legend: bool = False):
    c = analysis.alignment(run)
    t = _positive_time(run)
    _, m, L = c.shape
    for j in range(m):
        for l in range(L):
            ax.plot(t, c[:, j, l], color=_feature_color(l), ls=NEURON_STYLES[j % len(NEURON_STYLES)],
                    label=f"neuron {j + 1}, $v_{l + 1}$")


@_styled
def alignment_figure(runs: Sequence, titles: Sequence[str], *, threshold: float = 0.9):
    """Fig. 1: ``|c_jl(t)|`` of every neuron-feature pair, one panel per run (log time), phases
    marked, plus a linear-time zoom on phases II-IV of the first run when they happened."""
    pt0 = analysis.phase_times(runs[0], threshold)
    window = zoom_window(pt0.as_dict(), runs[0].eta, runs[0].flow_time[-1])
    ncols = len(runs) + (window is not None)
    fig, axes = _new_figure(1, ncols, (5.2 * ncols, 4.4), sharey=True)
    for ax, run, title in zip(axes[0], runs, titles, strict=False):
        _alignment_lines(ax, run)
        pt = analysis.phase_times(run, threshold)
        _mark_phases(ax, pt.as_dict(), run.eta)
        _time_axis(ax, run)
        ax.set_title(f"{title}: {analysis.outcome(run, threshold)}")
        ax.text(0.01, 0.45, _phase_note(pt.as_dict(), run.eta), transform=ax.transAxes, fontsize=8,
                color=PHASE_COLOR)
    if window is not None:
        ax = axes[0, -1]
        _alignment_lines(ax, runs[0])
        _mark_phases(ax, pt0.as_dict(), runs[0].eta)
        ax.set_xlim(*window)
        ax.set_xlabel(FLOW_LABEL + " (linear)")
        ax.set_title(f"{titles[0]}: zoom on T2-T4")
    for ax in axes[0]:
        ax.axhline(threshold, color="k", lw=0.7, alpha=0.5)
        ax.set_ylim(-0.02, 1.1)
    axes[0, 0].text(0.01, threshold, f"learned ({threshold:g})", transform=axes[0, 0].get_yaxis_transform(),
                    fontsize=8, va="bottom", alpha=0.7)
    axes[0, 0].set_ylabel(r"alignment $|c_{jl}| = |\langle w_j, v_l\rangle| / \|w_j\|$")
    axes[0, 0].legend(loc="center left", bbox_to_anchor=(0.0, 0.68), frameon=True)
    return fig


# ---------------------------------------------------------------- fig 2

@_styled
def head_figure(run, *, threshold: float = 0.9, head_tol: float = analysis.DEFAULT_HEAD_TOL):
    """Fig. 2: off-diagonal entries of ``E`` and ``|E - I|_F`` over (linear) time, with a zoom
    on phases II-IV."""
    pt = analysis.phase_times(run, threshold)
    window = zoom_window(pt.as_dict(), run.eta, run.flow_time[-1])
    fig, axes = _new_figure(1, 3, (15.0, 4.4))
    ax1, axz, ax2 = axes[0]
    t = run.flow_time
    m = run.E.shape[1]
    for ax in (ax1, axz):
        for j in range(m):
            for r in range(m):
                if j == r:
                    continue
                main = (j, r) == (pt.follower, pt.leader)
                ax.plot(t, run.E[:, j, r], lw=2.0 if main else 1.2,
                        label=f"$E_{{{j + 1}{r + 1}}}$" + (" (follower, leader)" if main else ""))
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel("off-diagonal head entry")
        ax.set_xlabel(FLOW_LABEL)
        _mark_phases(ax, pt.as_dict(), run.eta)
    ax1.set_title("the head's off-diagonal entries rise, then fall")
    ax1.legend(loc="center left")
    if window is not None:
        axz.set_xlim(*window)
        axz.set_title("zoom on T2-T4: the fall back to I")
    else:
        axz.set_xscale("log")
        axz.set_title("same, log time")
    hd = analysis.head_distance(run)
    ax2.plot(t, np.where(hd > 0, hd, np.nan), color="k")
    ax2.axhline(head_tol, color=PHASE_COLOR, lw=0.8, ls=":")
    ax2.text(0.01, head_tol, f" tolerance {head_tol:g} (T4)", transform=ax2.get_yaxis_transform(),
             fontsize=8, va="bottom", color=PHASE_COLOR)
    ax2.set_yscale("log")
    ax2.set_ylabel(r"$\|E - I\|_F$")
    ax2.set_xlabel(FLOW_LABEL)
    ax2.set_title("distance of the head from I")
    _mark_phases(ax2, pt.as_dict(), run.eta)
    return fig


# ---------------------------------------------------------------- fig 3

@_styled
def substitution_acceleration_figure(run, sub: np.ndarray, acc: np.ndarray, acc_v1: np.ndarray | None = None,
                                     *, threshold: float = 0.9):
    """Fig. 3: substitution ratio and acceleration factor over (log) time, phases marked."""
    fig, axes = _new_figure(1, 2, (12.0, 4.5))
    ax1, ax2 = axes[0]
    t = _positive_time(run)
    pt = analysis.phase_times(run, threshold)
    f, l = pt.follower, pt.leader
    pos = np.where(sub > 0, sub, np.nan)
    ax1.plot(t, pos, color="#9467bd")
    ax1.axhline(1.0, color="k", lw=0.7)
    ax1.set_yscale("log")
    if np.isfinite(pos).any():
        top = np.nanmax(pos)
        ax1.set_ylim(max(np.nanmin(pos), top * 1e-4), top * 3)
    name = "follower" if f is None else f"neuron {f + 1}"
    lname = "leader" if l is None else f"neuron {l + 1}"
    ax1.set_ylabel(r"RMS$(E_{fl} f_l(X^{(1)}))$ / RMS$(f_f(X^{(1)}))$" + "\n" + r"on samples carrying $v_1$")
    ax1.set_title(f"substitution ratio ({lname} through the head vs {name})")
    ax2.plot(t, acc, color="#d62728", label=r"along $v_2$: the acceleration factor")
    if acc_v1 is not None:
        ax2.plot(t, acc_v1, color="#1f77b4", ls="--", label=r"along $v_1$: the same ratio")
    ax2.axhline(1.0, color="k", lw=0.7)
    ax2.axhline(0.0, color="k", lw=0.5, alpha=0.5)
    ax2.set_yscale("symlog", linthresh=0.1)
    ax2.set_ylim(-3, 3)
    ax2.set_ylabel(f"{name}'s descent component:\nwith head $E(t)$ / with head reset to $I$")
    ax2.set_title("acceleration factor (> 1: the head speeds the follower up)")
    ax2.legend(loc="lower left")
    for ax in (ax1, ax2):
        _mark_phases(ax, pt.as_dict(), run.eta)
        _time_axis(ax, run)
    return fig


# ---------------------------------------------------------------- fig 4

def _slope_label(name: str, fit: Mapping) -> str:
    return f"{name}: slope {fit['slope']:.3f} [{fit['ci_low']:.3f}, {fit['ci_high']:.3f}]"


@_styled
def scaling_figure(panels: Sequence[Mapping]):
    """Fig. 4: log-log scaling panels.

    Each panel: ``x``, ``y`` (per point), ``seed``, ``fit`` (an ``analysis.PowerLaw`` dict),
    ``theory`` (slope), ``xlabel``, ``ylabel``, ``title``; optional ``censored`` (bool per
    point: drawn hollow, not fitted), ``alt`` (bool per point: drawn as orange squares),
    ``extra_fits`` (``(label, fit, colour)`` drawn dash-dotted), ``fit_label``,
    ``fit_x_min``, ``point_label`` / ``alt_label`` / ``censored_label`` and ``verdict``
    (a sentence on agreement; ``verdict_top`` puts it in the upper corner).
    """
    fig, axes = _new_figure(1, len(panels), (5.2 * len(panels), 6.0))
    for ax, p in zip(axes[0], panels, strict=False):
        x = np.asarray(p["x"], float)
        y = np.asarray(p["y"], float)
        cens = np.asarray(p.get("censored", np.zeros(x.shape, bool)), bool)
        alt = np.asarray(p.get("alt", np.zeros(x.shape, bool)), bool)
        ok = np.isfinite(y) & (y > 0)
        ax.scatter(x[ok & ~cens], y[ok & ~cens], s=14, color="#1f77b4", alpha=0.55,
                   label=p.get("point_label", "one seed"))
        if np.any(ok & alt):
            ax.scatter(x[ok & alt], y[ok & alt], s=22, marker="s", facecolors="none", edgecolors="#ff7f0e",
                       label=p.get("alt_label", "alternative"))
        for label, extra, color in p.get("extra_fits", ()):
            if np.isfinite(extra["slope"]):
                g = np.geomspace(x[ok].min(), x[ok].max(), 50)
                ax.plot(g, extra["prefactor"] * g ** extra["slope"], color=color, lw=1.2, ls="-.",
                        label=_slope_label(label, extra))
        if np.any(ok & cens & ~alt):
            other = ok & cens & ~alt
            ax.scatter(x[other], y[other], s=18, facecolors="none", edgecolors="#7f7f7f",
                       label=p.get("censored_label", "not fitted"))
        xs = np.unique(x[ok & ~cens])
        if xs.size:
            gm = [np.exp(np.mean(np.log(y[ok & ~cens & (x == v)]))) for v in xs]
            ax.plot(xs, gm, "o", color="#1f77b4", ms=7, mec="k", label="geometric mean")
        fit = p["fit"]
        if np.isfinite(fit["slope"]) and xs.size:
            lo = max(xs.min(), p.get("fit_x_min", xs.min()))
            grid = np.geomspace(lo, xs.max(), 50)
            ax.plot(grid, fit["prefactor"] * grid ** fit["slope"], color="#d62728", lw=2.0,
                    label=_slope_label(p.get("fit_label", "fit"), fit))
            anchor = np.exp(np.mean(np.log(gm)))
            xm = np.exp(np.mean(np.log(xs)))
            ax.plot(grid, anchor * (grid / xm) ** p["theory"], color="k", ls="--", lw=1.1,
                    label=f"theory: slope {p['theory']:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(p["xlabel"])
        ax.set_ylabel(p["ylabel"])
        ax.set_title(p["title"])
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
        if p.get("verdict"):
            top = p.get("verdict_top", False)
            ax.text(0.98, 0.98 if top else 0.02, p["verdict"], transform=ax.transAxes, ha="right",
                    va="top" if top else "bottom", fontsize=8,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9})
    return fig


# ---------------------------------------------------------------- fig 5

@_styled
def phase_diagram_figure(ratios_alpha: Sequence[float], ratios_eta: Sequence[float], counts: Mapping,
                         frozen_counts: Mapping, n_seeds: int, *, default_counts: Mapping | None = None,
                         note: str = ""):
    """Fig. 5: fraction of runs ending ``diverse`` / ``collapsed`` / ``incomplete``.

    ``counts[outcome]``: (len(ratios_eta), len(ratios_alpha)) integer array of runs
    with the trainable head; ``frozen_counts[outcome]``: (len(ratios_alpha),) with the
    head frozen at I, drawn as a separate bottom row. ``default_counts``: optional
    ``{"trainable": {outcome: n}, "frozen": {...}}`` drawn as a bar panel.
    """
    from matplotlib.colors import Normalize

    outcomes = ("diverse", "collapsed", "incomplete")
    ncols = 3 + (default_counts is not None)
    fig, axes = _new_figure(1, ncols, (4.3 * ncols, 4.8))
    na, ne = len(ratios_alpha), len(ratios_eta)
    cmap = {"diverse": "Greens", "collapsed": "Reds", "incomplete": "Greys"}
    for ax, oc in zip(axes[0], outcomes, strict=False):
        grid = np.full((ne + 2, na), np.nan)
        grid[:ne] = np.asarray(counts[oc], float) / n_seeds
        grid[ne + 1] = np.asarray(frozen_counts[oc], float) / n_seeds
        im = ax.imshow(grid, origin="lower", cmap=cmap[oc], norm=Normalize(0, 1), aspect="auto")
        for i in range(ne + 2):
            for k in range(na):
                v = grid[i, k]
                if np.isfinite(v):
                    ax.text(k, i, f"{v:.2f}", ha="center", va="center", fontsize=7.5,
                            color="white" if v > 0.6 else "black")
        ax.set_xticks(range(na), [f"{r:g}" for r in ratios_alpha])
        ax.set_yticks(list(range(ne)) + [ne + 1], [f"{r:g}" for r in ratios_eta] + ["frozen"])
        ax.axhline(ne, color="white", lw=6)
        ax.set_xlabel(r"$\alpha_1 / \alpha_2$  ($\alpha_1 = 6$)")
        ax.set_ylabel(r"$\eta_E / \eta$")
        ax.set_title(f"fraction {oc}")
        ax.grid(False)
        fig.colorbar(im, ax=ax, shrink=0.8)
    if default_counts is not None:
        ax = axes[0, 3]
        labels = list(default_counts)
        bottom = np.zeros(len(labels))
        for oc in outcomes:
            tot = np.array([sum(default_counts[h].values()) for h in labels], float)
            v = np.array([default_counts[h].get(oc, 0) for h in labels], float) / tot
            ax.bar(labels, v, bottom=bottom, color=OUTCOME_COLORS[oc], label=oc, width=0.6)
            for i, (b, h) in enumerate(zip(bottom, v, strict=False)):
                if h > 0.04:
                    ax.text(i, b + h / 2, f"{h:.2f}", ha="center", va="center", fontsize=8.5, color="white")
            bottom += v
        n = int(sum(default_counts[labels[0]].values()))
        ax.set_ylim(0, 1)
        ax.set_ylabel("fraction of runs")
        ax.set_title(f"default parameters, {n} seeds")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
        ax.grid(False)
    if note:
        fig.suptitle(note, fontsize=9)
    return fig


# ---------------------------------------------------------------- fig 6

@_styled
def sgd_figure(population, sgd: Mapping[int, Sequence], *, leader: int, follower: int, note: str = "",
               threshold: float = 0.9):
    """Fig. 6: SGD at several batch sizes (mean and min-max band over seeds) against the
    population engine from the same ``W(0)``: leader on ``v_1``, follower on ``v_2``, ``E_fl``,
    and the phase times T1, T3 of every SGD run against the batch size.

    ``sgd``: batch size -> runs (recorded at the same steps as each other).
    """
    fig, axes = _new_figure(1, 4, (19.0, 4.5))
    series = [
        (lambda r: analysis.alignment(r)[:, leader, 0], f"leader (neuron {leader + 1}) on $v_1$",
         r"$|c_{l1}|$"),
        (lambda r: analysis.alignment(r)[:, follower, 1], f"follower (neuron {follower + 1}) on $v_2$",
         r"$|c_{f2}|$"),
        (lambda r: r.E[:, follower, leader], f"head entry $E_{{{follower + 1}{leader + 1}}}$",
         f"$E_{{{follower + 1}{leader + 1}}}$"),
    ]
    colors = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
    t_end = population.flow_time[-1]
    for ax, (get, title, ylabel) in zip(axes[0], series, strict=False):
        for i, (batch, runs) in enumerate(sorted(sgd.items())):
            n = min(r.n_points for r in runs)
            vals = np.array([get(r)[:n] for r in runs])
            t = runs[0].flow_time[:n]
            col = colors[i % len(colors)]
            ax.fill_between(t, vals.min(axis=0), vals.max(axis=0), color=col, alpha=0.2, lw=0)
            ax.plot(t, vals.mean(axis=0), color=col, label=f"SGD, batch {batch} (mean of {len(runs)})")
        ax.plot(population.flow_time, get(population), color="k", lw=2.0, ls="--", label="population (exact)")
        ax.set_xlim(0, t_end)
        ax.set_xlabel(FLOW_LABEL)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    axes[0, 0].legend(loc="lower right")
    ax = axes[0, 3]
    pop_t = analysis.phase_times(population, threshold).as_dict()
    for key, col, mk in (("T1", "#1f77b4", "o"), ("T3", "#d62728", "s")):
        xs, ys, miss = [], [], []
        for batch, runs in sorted(sgd.items()):
            for i, r in enumerate(runs):
                v = analysis.phase_times(r, threshold).as_dict()[key]
                x = batch * 2 ** (0.12 * (i - (len(runs) - 1) / 2))   # seeds side by side
                (xs if v is not None else miss).append(x)
                if v is not None:
                    ys.append(v * r.eta)
        if xs:
            ax.scatter(xs, ys, color=col, marker=mk, alpha=0.7, label=f"SGD {key}")
        if miss:
            ax.scatter(miss, [t_end] * len(miss), color=col, marker="^", facecolors="none",
                       label=f"SGD: no {key} by t = {t_end:g}")
        if pop_t[key] is not None:
            ax.axhline(pop_t[key] * population.eta, color=col, ls="--", lw=1.2, label=f"population {key}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size N")
    ax.set_ylabel(FLOW_LABEL)
    ax.set_ylim(0, t_end * 1.08)
    ax.set_title("phase times against the batch size")
    ax.legend(loc="lower right", fontsize=7.5)
    if note:
        fig.suptitle(note, fontsize=9)
    return fig


# ---------------------------------------------------------------- fig 7

@_styled
def many_neurons_figure(runs: Sequence, titles: Sequence[str], head_run, snapshot_idx: Sequence[int], *,
                        threshold: float = 0.9):
    """Fig. 7: ``m`` neurons, ``L`` features: neurons per feature over time for each run,
    and ``|E - I|`` heatmaps of ``head_run`` at the recorded points ``snapshot_idx``."""
    from matplotlib.colors import LogNorm

    k = len(snapshot_idx)
    ncols = max(len(runs) + 2, k)
    fig, axes = _new_figure(2, ncols, (4.2 * ncols, 8.4))
    top = axes[0]
    L = runs[0].alignment.shape[2]
    m = runs[0].alignment.shape[1]
    for ax, run, title in zip(top, runs, titles, strict=False):
        a = analysis.feature_assignment(run, threshold)
        t = _positive_time(run)
        for l in range(L):
            ax.plot(t, (a == l).sum(axis=1), color=_feature_color(l),
                    label=f"$v_{l + 1}$ ($\\alpha$={run.config['model']['alpha'][l]:g})")
        ax.plot(t, (a == analysis.NO_FEATURE).sum(axis=1), color="#7f7f7f", ls=":", label="no feature yet")
        _time_axis(ax, run)
        ax.set_ylabel("neurons holding the feature")
        ax.set_ylim(-0.3, m + 0.3)
        ax.set_title(title)
        ax.legend(loc="upper left", ncol=1)
    ax_n, ax_r = top[len(runs)], top[len(runs) + 1]
    for run, title, ls in zip(runs, titles, ("-", "--", ":"), strict=False):
        t = _positive_time(run)
        ax_n.plot(t, analysis.n_features_learned(run, threshold), color="k", ls=ls, label=title)
        ax_r.plot(t, analysis.alignment_rank(run), color="k", ls=ls, label=title)
    for ax in (ax_n, ax_r):
        _time_axis(ax, runs[0])
        ax.legend(loc="upper left")
    ax_n.set_ylabel("distinct features learned")
    ax_n.set_ylim(-0.2, L + 0.3)
    ax_n.set_title("features learned (diversity)")
    ax_r.set_ylabel(r"effective rank of $|c|$ ($m \times L$)")
    ax_r.set_ylim(0.8, min(m, L) + 0.2)
    ax_r.set_title("effective rank of the alignment matrix")
    for extra in top[len(runs) + 2:]:
        extra.set_visible(False)
    eye = np.eye(m)
    dev = np.abs(head_run.E - eye)
    vmax = max(float(dev[list(snapshot_idx)].max()), 1e-3)
    norm = LogNorm(vmin=vmax * 1e-3, vmax=vmax)
    im = None
    assign = analysis.feature_assignment(head_run, threshold)
    for ax, i in zip(axes[1], snapshot_idx, strict=False):
        im = ax.imshow(np.maximum(dev[i], vmax * 1e-3), cmap="magma", norm=norm)
        ax.set_title(f"$|E - I|$ at t = {head_run.flow_time[i]:.4g}")
        names = [f"{q + 1}" + (f":v{assign[i, q] + 1}" if assign[i, q] >= 0 else "") for q in range(m)]
        ax.set_xticks(range(m), names, rotation=90, fontsize=8)
        ax.set_yticks(range(m), names, fontsize=8)
        ax.set_xlabel("column r (source neuron: feature held)")
        ax.set_ylabel("row j (receiving neuron)")
        ax.grid(False)
    for extra in axes[1][k:]:
        extra.set_visible(False)
    if im is not None:
        fig.colorbar(im, ax=list(axes[1][:k]), shrink=0.85, label=r"$|E_{jr} - \delta_{jr}|$")
    return fig
