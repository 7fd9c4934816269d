"""Many population runs in one batched kernel call: the one function behind figs 4 and 5."""

from __future__ import annotations

from collections.abc import Callable

from ..ensemble import simulate_many

Progress = Callable[[float], None]
"""``progress(units)``: called by the experiments as work finishes (units of ``plan.cost``)."""


def no_progress(units: float) -> None:
    """The default ``progress``: report nothing."""


def run_many(models, trains, W0=None, *, progress: Progress | None = None) -> list[dict]:
    """Population runs ``(models[i], trains[i])`` -> one summary dict each (outcome, phase times
    in steps at every step, leader/follower, peak ``|E_jr|``), via ``simulate_many``.

    ``models`` is one :class:`ModelParams` or one per run. A run stopped by its flow-time cap
    is ``incomplete``. ``progress(n)`` is called with the number of newly finished runs.
    """
    n = len(trains)
    models = list(models) if isinstance(models, (list, tuple)) else [models] * n
    W0 = None if W0 is None or all(w is None for w in W0) else list(W0)
    seen = [0]

    def cb(done, total):
        if progress is not None and done > seen[0]:
            progress(done - seen[0])
            seen[0] = done

    out = simulate_many(models, trains, W0=W0, progress=cb)
    if progress is not None and n > seen[0]:
        progress(n - seen[0])
    return out
