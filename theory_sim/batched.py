"""Old path of :mod:`theory_sim.ensemble`, kept while ``sweep`` and ``cli.figures`` still import it."""

from .ensemble import OUTCOMES, STATUS_NAMES, RunSummary, simulate_many

__all__ = ["OUTCOMES", "STATUS_NAMES", "RunSummary", "simulate_many"]
