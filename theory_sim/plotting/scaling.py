"""Fig. 4: log-log scaling panels, points per seed, the fitted power law and the theory's slope."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .style import new_figure, styled


def _slope_label(name: str, fit: Mapping) -> str:
    return f"{name}: slope {fit['slope']:.3f} [{fit['ci_low']:.3f}, {fit['ci_high']:.3f}]"


def _ratio_panel(ax, p: Mapping) -> None:
    """A measured / predicted ratio against ``x`` (log x, linear y), with 1 marked."""
    x = np.asarray(p["x"], float)
    y = np.asarray(p["y"], float)
    ok = np.isfinite(y) & (y > 0)
    ax.scatter(x[ok], y[ok], s=14, color="#1f77b4", alpha=0.55, label="one seed")
    xs = np.unique(x[ok])
    gm = [np.exp(np.mean(np.log(y[ok & (x == v)]))) for v in xs]
    ax.plot(xs, gm, "o-", color="#1f77b4", ms=7, mec="k", label="geometric mean")
    ax.axhline(1.0, color="k", ls="--", lw=1.1, label="prediction")
    ax.set_xscale("log")
    ax.set_xlabel(p["xlabel"])
    ax.set_ylabel(p["ylabel"])
    ax.set_title(p["title"])
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)


@styled
def scaling_figure(panels: Sequence[Mapping]):
    """Fig. 4: log-log scaling panels.

    Each panel: ``x``, ``y`` (per point), ``seed``, ``fit`` (an ``analysis.PowerLaw`` dict),
    ``theory`` (slope), ``xlabel``, ``ylabel``, ``title``; optional ``censored`` (bool per
    point: drawn hollow, not fitted), ``alt`` (bool per point: drawn as orange squares),
    ``extra_fits`` (``(label, fit, colour)`` drawn dash-dotted), ``fit_label``,
    ``fit_x_min``, ``point_label`` / ``alt_label`` / ``censored_label`` and ``verdict``
    (a sentence on agreement; ``verdict_top`` puts it in the upper corner). A panel with
    ``ratio`` true is a measured/predicted ratio (``x``, ``y``, labels, title; linear y, 1 marked).
    """
    fig, axes = new_figure(1, len(panels), (5.2 * len(panels), 6.0))
    for ax, p in zip(axes[0], panels, strict=False):
        if p.get("ratio"):
            _ratio_panel(ax, p)
            continue
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


