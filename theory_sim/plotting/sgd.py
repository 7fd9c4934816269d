"""Fig. 6: mini-batch SGD at several batch sizes against the population engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .. import analysis
from .style import FLOW_LABEL, new_figure, styled


@styled
def sgd_figure(population, sgd: Mapping[int, Sequence], *, leader: int, follower: int, note: str = "",
               threshold: float = 0.9):
    """Fig. 6: SGD at several batch sizes (mean and min-max band over seeds) against the
    population engine from the same ``W(0)``: leader on ``v_1``, follower on ``v_2``, ``E_fl``,
    and the phase times T1, T3 of every SGD run against the batch size.

    ``sgd``: batch size -> runs (recorded at the same steps as each other).
    """
    fig, axes = new_figure(1, 4, (19.0, 4.5))
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


