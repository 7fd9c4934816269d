"""Fig. 8: outcome fractions against ``d`` in the paper's regime, with Wilson intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .style import OUTCOME_COLORS, new_figure, styled


@styled
def regime_figure(rows: Sequence[Mapping], outcomes: Sequence[str], *, note: str = ""):
    """Two panels, trainable head and frozen head: the fraction of runs ending in each of
    ``outcomes`` against ``d`` (log scale) with 95 % Wilson intervals.

    ``rows``: one per ``d`` with ``d`` and, per head (``trainable``, ``frozen``), ``n``,
    ``counts`` (outcome -> runs) and ``intervals`` (outcome -> ``(low, high)``). The
    theorem's outcome is drawn thick: ``diverse`` with the head, ``collapsed`` without it.
    Rows with ``frozen_collapse_prediction`` get that curve drawn dashed on the frozen panel.
    """
    fig, axes = new_figure(1, 2, (11.0, 4.8), sharey=True)
    d = np.array([r["d"] for r in rows], float)
    for ax, head, main in zip(axes[0], ("trainable", "frozen"), ("diverse", "collapsed"), strict=True):
        n = np.array([r[head]["n"] for r in rows], float)
        for k, oc in enumerate(outcomes):
            cnt = np.array([r[head]["counts"].get(oc, 0) for r in rows], float)
            if oc != main and not np.any(cnt):
                continue
            p = cnt / n
            lo = np.array([r[head]["intervals"][oc][0] for r in rows])
            hi = np.array([r[head]["intervals"][oc][1] for r in rows])
            color = OUTCOME_COLORS[oc]
            shift = d * 10 ** (0.04 * (k - 1.5))  # keep the error bars apart
            yerr = [np.maximum(p - lo, 0), np.maximum(hi - p, 0)]
            ax.errorbar(shift, p, yerr=yerr, marker="o", ms=6 if oc == main else 4,
                        lw=2.4 if oc == main else 1.0, capsize=3, color=color,
                        label=f"{oc}" + ("  (the theorem: -> 1)" if oc == main else ""))
        if head == "frozen" and all("frozen_collapse_prediction" in r for r in rows):
            ax.plot(d, [r["frozen_collapse_prediction"] for r in rows], color="k", ls="--", lw=1.2,
                    label="collapsed: leading-order prediction")
        ax.axhline(1.0, color="k", lw=0.6, ls=":")
        ax.axhline(0.9, color="0.5", lw=0.6, ls="--")
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel("dimension $d$")
        ax.set_title("trainable head (offdiag)" if head == "trainable" else "frozen head ($E = I$)")
        ax.legend(loc="center left", fontsize=8)
    axes[0, 0].set_ylabel("fraction of runs (95 % Wilson interval)")
    if note:
        fig.suptitle(note, fontsize=9)
    return fig
