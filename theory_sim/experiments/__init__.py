"""The experiments behind the figures: one module per figure, each with its plan (the
fields of :class:`Plan` it reads), its runs, and a ``make`` that returns
``(figure, data, facts)``: the matplotlib Figure, the data it was drawn from (arrays for
an ``.npz`` or a JSON-able dict) and the numbers ``docs/figures.md`` quotes.

Nothing here parses arguments, prints or writes files (``theory_sim.cli.figures`` does).
"""

from __future__ import annotations

from ..stats import wilson_interval
from . import (
    fig1_alignment,
    fig2_head,
    fig3_substitution,
    fig4_scaling,
    fig5_phase_diagram,
    fig6_sgd,
    fig7_many_neurons,
    fig8_paper_regime,
    fig9_ablations,
)
from .fig4_scaling import BANDS, THEORY, coupled_weights, fit_scaling, substitution_kind
from .fig5_phase_diagram import grid_outcomes
from .flow_runs import FLOW_OUTCOMES, run_flow_many
from .plan import FULL, QUICK, Plan, cost
from .runs import Progress, no_progress, run_many
from .story import story_runs

MODULES = {1: fig1_alignment, 2: fig2_head, 3: fig3_substitution, 4: fig4_scaling,
           5: fig5_phase_diagram, 6: fig6_sgd, 7: fig7_many_neurons,
           8: fig8_paper_regime, 9: fig9_ablations}
FIGURES = {num: mod.NAME for num, mod in MODULES.items()}
"""Figure number -> file stem (``figN_*.png`` and its data file)."""
STORY = (1, 2, 3)
"""The figures drawn from the story runs (:func:`story_runs`)."""


def make_figure(num: int, plan: Plan, progress: Progress = no_progress, cache: dict | None = None):
    """``(figure, data, facts)`` of figure ``num``. ``cache`` (a dict kept across calls)
    lets figs 1-3 share one pair of story runs."""
    mod = MODULES[num]
    if num in STORY:
        cache = {} if cache is None else cache
        if "story" not in cache:
            cache["story"] = story_runs(plan, progress)
        return mod.make(plan, cache["story"])
    return mod.make(plan, progress)


__all__ = ["BANDS", "FIGURES", "FLOW_OUTCOMES", "FULL", "MODULES", "Plan", "Progress", "QUICK", "STORY",
           "THEORY", "cost", "coupled_weights", "fit_scaling", "grid_outcomes", "make_figure", "no_progress",
           "run_flow_many", "run_many", "story_runs", "substitution_kind", "wilson_interval"]
