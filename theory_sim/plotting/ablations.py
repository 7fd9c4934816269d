"""Fig. 9: what each ingredient of the mechanism does (docs/model.md section 12): outcome
fractions per variant with Wilson intervals, and one seed's ``|c_jl|`` and head per variant."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..status import OUTCOMES
from .style import (
    FEATURE_COLORS,
    FLOW_LABEL,
    NEURON_STYLES,
    OUTCOME_COLORS,
    new_figure,
    positive_time,
    styled,
)


@styled
def ablation_figure(rows: Sequence[dict], runs: Sequence, *, note: str = ""):
    """Top: per variant (``rows[i]``: ``label``, ``fractions``, ``wilson95``) the fraction of runs
    ending in each outcome (``status.OUTCOMES``) with its interval. Below: per variant the run
    ``runs[i]``: ``|c_jl|`` (colour: feature, line style: neuron) and the off-diagonal head."""
    nv = len(rows)
    fig, axes = new_figure(3, nv, (2.0 * nv, 8.0))
    gs = axes[0, 0].get_gridspec()
    for ax in axes[0]:
        ax.remove()
    top = fig.add_subplot(gs[0, :])
    x = np.arange(nv)
    width = 0.8 / len(OUTCOMES)
    for k, name in enumerate(OUTCOMES):
        frac = np.array([r["fractions"][name] for r in rows])
        lo = np.array([r["wilson95"][name][0] for r in rows])
        hi = np.array([r["wilson95"][name][1] for r in rows])
        pos = x + (k - (len(OUTCOMES) - 1) / 2) * width
        top.bar(pos, frac, width, color=OUTCOME_COLORS[name], label=name.replace("_", " "))
        shown = frac > 0  # no interval on a bar of height zero: it reads as a bar that is there
        if shown.any():
            top.errorbar(pos[shown], frac[shown], yerr=[(frac - lo)[shown], (hi - frac)[shown]], fmt="none",
                         ecolor="k", elinewidth=0.8, capsize=1.5)
    top.set_xticks(x, [r["label"].replace(", ", "\n") for r in rows], fontsize=7.5)
    top.set_ylim(0, 1.05)
    top.set_ylabel("fraction of runs")
    top.legend(ncols=len(OUTCOMES), loc="upper center", bbox_to_anchor=(0.5, 1.18), frameon=False)
    if note:
        top.set_title(note, fontsize=7.5, pad=24)
    for i, run in enumerate(runs):
        ax, axh = axes[1, i], axes[2, i]
        t = positive_time(run)
        c = np.abs(run.alignment)
        for j in range(c.shape[1]):
            for l in range(c.shape[2]):
                ax.plot(t, c[:, j, l], color=FEATURE_COLORS[l % len(FEATURE_COLORS)],
                        ls=NEURON_STYLES[j % len(NEURON_STYLES)], lw=1.1)
            for r in range(run.E.shape[1]):
                if r != j:
                    axh.plot(t, run.E[:, j, r], ls=NEURON_STYLES[j % len(NEURON_STYLES)], lw=1.1,
                             label=f"$E_{{{j + 1}{r + 1}}}$")
        for a in (ax, axh):
            a.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{run.status}", fontsize=8)
        axh.set_xlabel(FLOW_LABEL, fontsize=7)
        if i == 0:
            seed = run.config["train"]["seed"]
            ax.set_ylabel(rf"$|c_{{jl}}|$ (seed {seed})")
            axh.set_ylabel("head off-diagonal")
            axh.legend(fontsize=7)
    return fig
