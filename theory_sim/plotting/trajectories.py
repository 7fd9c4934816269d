"""One run over time: the alignments (fig. 1), the head (fig. 2), the substitution ratio,
acceleration factor, growth rates and absolute speed ratio (fig. 3), and many neurons
sharing out the features (fig. 7).

Results in, :class:`matplotlib.figure.Figure` out; time axes in flow time ``eta * steps``
unless stated, features coloured, neurons told apart by line style, phase times marked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import analysis
from .style import (
    FLOW_LABEL,
    NEURON_STYLES,
    PHASE_COLOR,
    feature_color,
    mark_phases,
    new_figure,
    phase_note,
    positive_time,
    styled,
    time_axis,
    zoom_window,
)

# ---------------------------------------------------------------- fig 1

def _alignment_lines(ax, run, *, legend: bool = False):
    c = analysis.alignment(run)
    t = positive_time(run)
    _, m, L = c.shape
    for j in range(m):
        for l in range(L):
            ax.plot(t, c[:, j, l], color=feature_color(l), ls=NEURON_STYLES[j % len(NEURON_STYLES)],
                    label=f"neuron {j + 1}, $v_{l + 1}$")


@styled
def alignment_figure(runs: Sequence, titles: Sequence[str], *, threshold: float = 0.9):
    """Fig. 1: ``|c_jl(t)|`` of every neuron-feature pair, one panel per run (log time), phases
    marked, plus a linear-time zoom on phases II-IV of the first run when they happened."""
    pt0 = analysis.phase_times(runs[0], threshold)
    window = zoom_window(pt0.as_dict(), runs[0].eta, runs[0].flow_time[-1])
    ncols = len(runs) + (window is not None)
    fig, axes = new_figure(1, ncols, (5.2 * ncols, 4.4), sharey=True)
    for ax, run, title in zip(axes[0], runs, titles, strict=False):
        _alignment_lines(ax, run)
        pt = analysis.phase_times(run, threshold)
        mark_phases(ax, pt.as_dict(), run.eta)
        time_axis(ax, run)
        ax.set_title(f"{title}: {analysis.outcome(run, threshold)}")
        ax.text(0.01, 0.45, phase_note(pt.as_dict(), run.eta), transform=ax.transAxes, fontsize=8,
                color=PHASE_COLOR)
    if window is not None:
        ax = axes[0, -1]
        _alignment_lines(ax, runs[0])
        mark_phases(ax, pt0.as_dict(), runs[0].eta)
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

@styled
def head_figure(run, *, threshold: float = 0.9, head_tol: float = analysis.DEFAULT_HEAD_TOL):
    """Fig. 2: off-diagonal entries of ``E`` and ``|E - I|_F`` over (linear) time, with a zoom
    on phases II-IV."""
    pt = analysis.phase_times(run, threshold)
    window = zoom_window(pt.as_dict(), run.eta, run.flow_time[-1])
    fig, axes = new_figure(1, 3, (15.0, 4.4))
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
        mark_phases(ax, pt.as_dict(), run.eta)
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
    mark_phases(ax2, pt.as_dict(), run.eta)
    return fig


# ---------------------------------------------------------------- fig 3

@styled
def substitution_acceleration_figure(run, sub: np.ndarray, acc: np.ndarray, acc_v1: np.ndarray | None = None,
                                     *, rates: np.ndarray | None = None,
                                     rates_identity: np.ndarray | None = None,
                                     abs_ratio: np.ndarray | None = None, abs_pred: np.ndarray | None = None,
                                     threshold: float = 0.9):
    """Fig. 3 (docs/model.md section 9), four panels over (log) time, phases marked: the
    substitution ratio; the acceleration factor ``Acc`` (the follower's per-unit weight of
    ``v_2``, and of ``v_1`` with ``acc_v1``, in units of its weight at ``E = I``); the
    follower's growth rates ``d ln|<w_f, v_j>|/dt`` (``rates``, (T, L)) with the head and with
    ``E`` reset to ``I`` (``rates_identity``); the absolute speed ratio along ``v_2``
    (``abs_ratio``) with its prediction ``Acc (DF(I)/DF)^{3/2}`` (``abs_pred``). A panel
    whose inputs are not given says so."""
    fig, axes = new_figure(2, 2, (12.5, 8.8))
    (ax1, ax2), (ax3, ax4) = axes
    t = positive_time(run)
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
    ax2.plot(t, acc, color="#d62728", label=r"along $v_2$: Acc")
    if acc_v1 is not None:
        ax2.plot(t, acc_v1, color="#1f77b4", ls="--", label=r"along $v_1$")
    ax2.axhline(1.0, color="k", lw=0.7)
    ax2.set_yscale("symlog", linthresh=1.0)
    fin = acc[np.isfinite(acc)]
    # the v_1 weight diverges as a_1 -> 0 near T3: keep the scale on Acc
    ax2.set_ylim(-30.0, 3.0 * max(float(fin.max()) if fin.size else 1.0, 1.0))
    ax2.set_ylabel(f"{name}'s per-unit learning weight,\nin units of its weight at $E = I$")
    ax2.set_title("acceleration factor Acc (relative: > 1 favours the feature)")
    ax2.legend(loc="upper left")
    if rates is not None:
        for j in range(rates.shape[1]):
            c = feature_color(j)
            ax3.plot(t, rates[:, j], color=c, label=f"along $v_{j + 1}$, head $E(t)$")
            if rates_identity is not None:
                ax3.plot(t, rates_identity[:, j], color=c, ls=":",
                         label=f"along $v_{j + 1}$, $E$ reset to $I$")
        finite = np.abs(rates[np.isfinite(rates)])
        ax3.set_yscale("symlog", linthresh=float(np.percentile(finite, 10)) if finite.size else 1e-6)
        ax3.legend(loc="lower left", fontsize=8)
    else:
        ax3.text(0.5, 0.5, "growth rates not given", transform=ax3.transAxes, ha="center")
    ax3.axhline(0.0, color="k", lw=0.6)
    ax3.set_ylabel(r"$d \ln|\langle w_f, v_j\rangle| / dt$")
    ax3.set_title(f"{name}'s growth rates (< 0 along $v_1$: pushed off it)")
    if abs_ratio is not None:
        ax4.plot(t, abs_ratio, color="k", label="measured (full gradient)")
        if abs_pred is not None:
            ax4.plot(t, abs_pred, color="#7f7f7f", ls="--", label=r"Acc $(DF_f(I)/DF_f)^{3/2}$")
        ax4.set_yscale("symlog", linthresh=0.1)
        ax4.set_ylim(-2.0, 2.0)
        ax4.legend(loc="lower left")
    else:
        ax4.text(0.5, 0.5, "absolute speed ratio not given", transform=ax4.transAxes, ha="center")
    ax4.axhline(1.0, color="k", lw=0.7)
    ax4.set_ylabel("growth rate along $v_2$:\nwith head / with $E$ reset to $I$")
    ax4.set_title("absolute speed ratio along $v_2$ (< 1: slower in absolute terms)")
    for ax in (ax1, ax2, ax3, ax4):
        mark_phases(ax, pt.as_dict(), run.eta)
        time_axis(ax, run)
    return fig


# ---------------------------------------------------------------- fig 7

@styled
def many_neurons_figure(runs: Sequence, titles: Sequence[str], head_run, snapshot_idx: Sequence[int], *,
                        threshold: float = 0.9):
    """Fig. 7: ``m`` neurons, ``L`` features: neurons per feature over time for each run,
    and ``|E - I|`` heatmaps of ``head_run`` at the recorded points ``snapshot_idx``."""
    from matplotlib.colors import LogNorm

    k = len(snapshot_idx)
    ncols = max(len(runs) + 2, k)
    fig, axes = new_figure(2, ncols, (4.2 * ncols, 8.4))
    top = axes[0]
    L = runs[0].alignment.shape[2]
    m = runs[0].alignment.shape[1]
    for ax, run, title in zip(top, runs, titles, strict=False):
        a = analysis.feature_assignment(run, threshold)
        t = positive_time(run)
        for l in range(L):
            ax.plot(t, (a == l).sum(axis=1), color=feature_color(l),
                    label=f"$v_{l + 1}$ ($\\alpha$={run.config['model']['alpha'][l]:g})")
        ax.plot(t, (a == analysis.NO_FEATURE).sum(axis=1), color="#7f7f7f", ls=":", label="no feature yet")
        time_axis(ax, run)
        ax.set_ylabel("neurons holding the feature")
        ax.set_ylim(-0.3, m + 0.3)
        ax.set_title(title)
        ax.legend(loc="upper left", ncol=1)
    ax_n, ax_r = top[len(runs)], top[len(runs) + 1]
    for run, title, ls in zip(runs, titles, ("-", "--", ":"), strict=False):
        t = positive_time(run)
        ax_n.plot(t, analysis.n_features_learned(run, threshold), color="k", ls=ls, label=title)
        ax_r.plot(t, analysis.alignment_rank(run), color="k", ls=ls, label=title)
    for ax in (ax_n, ax_r):
        time_axis(ax, runs[0])
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
