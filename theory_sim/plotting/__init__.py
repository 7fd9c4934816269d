"""Figures of the paper's statements: results in, :class:`matplotlib.figure.Figure` out.

Nothing here runs a simulation, prints or writes a file (``theory_sim.cli`` does).
matplotlib is imported lazily, through its object API only (no pyplot).

- ``style``: rcParams, colours, the Figure factory and the phase-time marks: one style.
- ``trajectories``: one run over time (figs. 1, 2, 3, 7).
- ``scaling``: log-log scaling panels (fig. 4).
- ``outcomes``: the one outcome heatmap, for fig. 5 and for sweeps (``theory-sim plot-sweep``).
- ``sgd``: SGD against the population engine (fig. 6).
- ``ablations``: the mechanism ablations (fig. 9).
- ``regime``: outcome fractions against ``d`` in the paper's regime (fig. 8).
"""

from __future__ import annotations

from .ablations import ablation_figure
from .outcomes import (
    LABELS,
    outcome_bars,
    outcome_fractions,
    outcome_heatmaps,
    phase_diagram,
    phase_diagram_figure,
    sweep_axes,
)
from .regime import regime_figure
from .scaling import scaling_figure
from .sgd import sgd_figure
from .style import FEATURE_COLORS, FLOW_LABEL, OUTCOME_CMAPS, OUTCOME_COLORS, STYLE, zoom_window
from .trajectories import alignment_figure, head_figure, many_neurons_figure, substitution_acceleration_figure

__all__ = ["FEATURE_COLORS", "FLOW_LABEL", "LABELS", "OUTCOME_CMAPS", "OUTCOME_COLORS", "STYLE",
           "ablation_figure", "alignment_figure", "head_figure", "many_neurons_figure", "outcome_bars",
           "outcome_fractions", "outcome_heatmaps", "phase_diagram", "phase_diagram_figure", "regime_figure",
           "scaling_figure", "sgd_figure", "substitution_acceleration_figure", "sweep_axes", "zoom_window"]
